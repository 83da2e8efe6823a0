"""Cross-protocol mixing for CNT stage 1 (paper section IV, Fig. 5).

"In the training process, the probability of sampling faces from each dataset is proportional
to the size of the dataset and the sample will only select its corresponding branch for
forwarding." :class:`MultiProtocolDataset` concatenates several :class:`LandmarkDataset`,
:class:`ProportionalSampler` draws global indices so that each dataset's share of every epoch is
proportional to its size, and :func:`collate_landmarks` groups a mixed batch per protocol so each
head sees only its own rows (the models' ``forward(x, protocols=[...])`` returns them in batch
order, matching ``batch["target"][protocol]``).
"""

from __future__ import annotations

import math
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch

from .dataset import LandmarkDataset

__all__ = ["MultiProtocolDataset", "ProportionalSampler", "collate_landmarks"]


class MultiProtocolDataset:
    """Datasets side by side: global index ``i`` -> (dataset name, local index).

    Dataset ``k`` owns the global indices ``offsets[k] .. offsets[k] + sizes[k] - 1``, in the
    order of ``datasets``. Names are free (``"wflw"``, ``"mtfl"``, ...); two datasets may share a
    protocol (WIDER FACE and MTFL are both 5-point), and each sample carries its own protocol.
    """

    def __init__(self, datasets: Mapping[str, LandmarkDataset]) -> None:
        if not datasets:
            raise ValueError("MultiProtocolDataset needs at least one dataset")
        empty = [k for k, d in datasets.items() if len(d) == 0]
        if empty:
            raise ValueError(f"empty datasets: {empty}")
        if len({d.image_size for d in datasets.values()}) > 1:
            raise ValueError(f"datasets differ in image_size: { {k: d.image_size for k, d in datasets.items()} }")
        self.datasets = dict(datasets)
        self.names = list(self.datasets)
        self.sizes = [len(d) for d in self.datasets.values()]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def protocols(self) -> list[str]:
        """The protocol names of the datasets, first occurrence order, without repeats."""
        return list(dict.fromkeys(d.protocol.name for d in self.datasets.values()))

    def locate(self, index: int) -> tuple[str, int]:
        """Global index -> (dataset name, local index)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} faces")
        k = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.names[k], int(index - self.offsets[k])

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets.values():
            d.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict:
        name, local = self.locate(int(index))
        item = self.datasets[name][local]
        item["dataset"] = name
        return item


class ProportionalSampler:
    """Global indices of a :class:`MultiProtocolDataset`, each dataset's share proportional to
    its size; ``num_samples`` indices per epoch, reproducible from ``(seed, epoch)``.

    ``replacement=False`` (default): dataset ``k`` gets ``num_samples * size_k / total`` draws
    (largest remainders rounded up), taken from a fresh random permutation of its faces (cycled
    when it needs more draws than it has faces), and the epoch's list is shuffled -- every
    position is from dataset ``k`` with probability ``size_k / total`` and no face repeats before
    all its dataset's faces were drawn. ``replacement=True``: independent draws (dataset with
    probability ``size_k / total``, then a uniform face).

    Distributed training: the epoch's list is padded (by repeating its start) to a multiple of
    ``world_size`` and rank ``r`` takes positions ``r, r + world_size, ...``: disjoint shares
    that together cover the epoch. Call ``set_epoch(e)`` before each epoch, on every rank.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        num_samples: int | None = None,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        replacement: bool = False,
    ) -> None:
        self.sizes = [int(s) for s in sizes]
        if not self.sizes or any(s <= 0 for s in self.sizes):
            raise ValueError(f"sizes must be positive dataset sizes, got {list(sizes)}")
        total = sum(self.sizes)
        self.num_samples = total if num_samples is None else int(num_samples)
        if self.num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.replacement = bool(replacement)
        self.epoch = 0
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.world_size)

    def counts(self) -> np.ndarray:
        """Draws per dataset in one epoch without replacement (largest-remainder rounding)."""
        share = np.asarray(self.sizes, dtype=np.float64) * self.num_samples / sum(self.sizes)
        counts = np.floor(share).astype(np.int64)
        short = self.num_samples - int(counts.sum())
        counts[np.argsort(-(share - counts), kind="stable")[:short]] += 1
        return counts

    def epoch_indices(self) -> np.ndarray:
        """All ``num_samples`` global indices of the current epoch (every rank computes the same)."""
        rng = np.random.default_rng((self.seed, self.epoch))
        if self.replacement:
            return rng.integers(0, int(self.offsets[-1]), self.num_samples)
        parts = []
        for k, (size, n) in enumerate(zip(self.sizes, self.counts())):
            rounds = -(-int(n) // size)
            local = np.concatenate([rng.permutation(size) for _ in range(rounds)])[:n] if n else []
            parts.append(self.offsets[k] + np.asarray(local, dtype=np.int64))
        return rng.permutation(np.concatenate(parts))

    def __iter__(self) -> Iterator[int]:
        idx = self.epoch_indices()
        pad = len(self) * self.world_size - len(idx)
        if pad:
            idx = np.concatenate([idx, np.resize(idx, pad)])
        return iter(idx[self.rank::self.world_size].tolist())


def collate_landmarks(samples: Sequence[dict]) -> dict:
    """Batch items of (possibly) several protocols.

    Returns ``image`` (N, 3, S, S), ``protocol`` (list of N names), ``rows`` (protocol -> int64
    positions in the batch), per-protocol dicts for the arrays whose shape depends on the protocol
    (``target`` (n_p, L_p, 2), ``visible``, ``landmarks``) in batch order, and the rest stacked
    over the batch (``matrix``, ``inverse``, ``box``, ``domain``, ``flipped``, ``index``; string
    fields such as ``dataset`` as lists).
    """
    if not samples:
        raise ValueError("collate_landmarks got an empty batch")
    protocols = [s["protocol"] for s in samples]
    rows: dict[str, list[int]] = {}
    for i, p in enumerate(protocols):
        rows.setdefault(p, []).append(i)
    batch: dict = {"protocol": protocols, "rows": {p: torch.as_tensor(r, dtype=torch.int64) for p, r in rows.items()}}
    for key, first in samples[0].items():
        if key == "protocol":
            continue
        if key in _PER_PROTOCOL:
            batch[key] = {p: torch.from_numpy(np.stack([samples[i][key] for i in r])) for p, r in rows.items()}
        elif isinstance(first, str):
            batch[key] = [s[key] for s in samples]
        else:
            batch[key] = torch.from_numpy(np.stack([np.asarray(s[key]) for s in samples]))
    return batch


_PER_PROTOCOL = ("target", "visible", "landmarks")
