"""Datasets and the training DataLoader from a :class:`~sepbn.config.DataConfig` (paper sections IV, V-A).

Single-dataset training and CNT stage 1 use the same path: the training datasets, keyed by
their names, go into one ``MultiProtocolDataset`` drawn by a ``ProportionalSampler`` (each face
with probability proportional to its dataset's size; a single dataset is simply shuffled), and
``collate_landmarks`` groups every batch per protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..config import DataConfig, DatasetConfig

__all__ = ["dataset_name", "dataset_names", "resolve", "read_dataset_records", "build_datasets", "train_loader"]


def dataset_name(d: DatasetConfig) -> str:
    """The name a dataset has in logs and results."""
    if d.name:
        return d.name
    if d.split:
        return f"{d.fmt}-{d.split}"
    # a user's protocol file names the dataset by its stem, not by its path
    return f"{d.fmt}-{Path(d.protocol).stem if d.protocol.endswith(('.json', '.toml')) else d.protocol}"


def dataset_names(entries: Sequence[DatasetConfig]) -> list[str]:
    """Names of ``entries``; repeated default names get ``-2``, ``-3`` ... (explicit names must be unique)."""
    names: list[str] = []
    for d in entries:
        name = dataset_name(d)
        if name in names:
            if d.name:
                raise ValueError(f"two datasets are named {name!r}; give them distinct 'name' keys")
            k = 2
            while f"{name}-{k}" in names:
                k += 1
            name = f"{name}-{k}"
        names.append(name)
    return names


def resolve(root: str | Path, path: str | None) -> str | None:
    """``path`` relative to the data root (absolute paths and None pass through)."""
    if path is None:
        return None
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else Path(root).expanduser() / p)


# formats whose files may hold any protocol (the official formats each hold one)
GENERIC_FORMATS = ("csv", "jsonl", "coco")


def read_dataset_records(data: DataConfig, d: DatasetConfig) -> list:
    """The records of one configured dataset (``limit`` applied).

    ``fmt = "synth"`` reads a SynthFaces folder (``sepbn.data.synth.load_synth``: the official
    reader of the protocol's format plus the sub-domain labels); other formats go to ``read_records``.
    ``pose_domains`` labels every face's pose sub-domain from its landmarks (`sepbn.data.pose_domains`).
    """
    from ..data.formats import read_records

    if d.fmt == "synth":
        from ..data.synth import load_synth

        records = load_synth(resolve(data.root, d.source), d.protocol, split=d.split or "train", **d.options)
    else:
        options = dict(d.options)
        if d.fmt in GENERIC_FORMATS:  # these carry any protocol: the config names it (a user's .json/.toml too)
            options.setdefault("protocol", d.protocol)
        records = read_records(
            d.fmt, resolve(data.root, d.source), images=resolve(data.root, d.images), split=d.split, **options
        )
    records = list(records)
    if d.limit is not None:
        records = records[: d.limit]
    if not records:
        raise ValueError(f"dataset {dataset_name(d)!r} ({d.fmt} at {d.source}) has no faces")
    if d.pose_domains is not None:  # brute-force SepBN needs a domain per face (paper III-A)
        from ..data.pose_domains import assign_pose_domains

        records = assign_pose_domains(records, d.protocol, method=d.pose_domains, threshold=d.pose_threshold)
    return records


def build_datasets(
    data: DataConfig, entries: Sequence[DatasetConfig], *, train: bool, image_size: int, seed: int = 0
) -> dict:
    """``{name: LandmarkDataset}`` for the configured entries (names must be unique)."""
    from ..data.dataset import LandmarkDataset
    from ..data.transforms import AugmentConfig

    augment = AugmentConfig.from_dict(data.augment_options) if train and data.augment else None
    out = {}
    for name, d in zip(dataset_names(entries), entries):
        kwargs = {} if d.box_scale is None else {"box_scale": d.box_scale}
        cache = resolve(data.root, data.cache) if data.cache else None
        if cache is not None:
            # one folder per role: a train and a val entry of the same name must not share (and rebuild) it
            cache = str(Path(cache) / f"{name}-{'train' if train else 'val'}")
        out[name] = LandmarkDataset(
            read_dataset_records(data, d), d.protocol, train=train and data.augment, image_size=image_size,
            augment=augment, cache=cache, seed=seed, **kwargs,
        )
    return out


def train_loader(
    datasets: dict, *, batch_size: int, epoch_size: int | None, workers: int, seed: int,
    rank: int = 0, world_size: int = 1, pin_memory: bool = False,
):
    """``(loader, sampler, mixed)``: batches of ``batch_size`` per rank, last partial batch dropped."""
    import torch

    from ..data.multi import MultiProtocolDataset, ProportionalSampler, collate_landmarks

    mixed = MultiProtocolDataset(datasets)
    sampler = ProportionalSampler(mixed.sizes, epoch_size, seed=seed, rank=rank, world_size=world_size)
    if len(sampler) < batch_size:
        raise ValueError(f"an epoch of {len(sampler)} samples per rank is smaller than batch_size {batch_size}")
    loader = torch.utils.data.DataLoader(
        mixed, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_landmarks,
        drop_last=True, pin_memory=pin_memory, persistent_workers=False,
    )
    return loader, sampler, mixed
