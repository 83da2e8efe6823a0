"""The training DataLoader and the pre-flight check from a :class:`~sepbn.config.DataConfig` (paper IV, V-A).

Single-dataset training and CNT stage 1 use the same path: the training datasets, keyed by
their names, go into one ``MultiProtocolDataset`` drawn by a ``ProportionalSampler`` (each face
with probability proportional to its dataset's size; a single dataset is simply shuffled), and
``collate_landmarks`` groups every batch per protocol.

Before the first step, :func:`preflight` checks every training and validation image
(:mod:`sepbn.data.preflight`): all problems are listed together and the run stops, or, for a
dataset with ``options = {skip_invalid = true}``, those faces are left out, counted and listed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from ..assembly import build_datasets, dataset_name, dataset_names, read_dataset_records, resolve
from ..config import Config, DataConfig
from ..data.multi import MultiProtocolDataset, ProportionalSampler, collate_landmarks
from ..data.preflight import check_records, probe_images
from ..io import atomic_write_text
from .preempt import ignore_stop_signals

# dataset_name ... build_datasets live in sepbn.assembly (evaluation and studies use them too); re-exported
__all__ = ["dataset_name", "dataset_names", "resolve", "read_dataset_records", "build_datasets", "train_loader",
           "Checked", "check_data", "preflight", "PreflightError"]


def train_loader(
    datasets: dict, *, batch_size: int, epoch_size: int | None, workers: int, seed: int,
    rank: int = 0, world_size: int = 1, pin_memory: bool = False,
):
    """``(loader, sampler, mixed)``: batches of ``batch_size`` per rank, last partial batch dropped."""
    mixed = MultiProtocolDataset(datasets)
    sampler = ProportionalSampler(mixed.sizes, epoch_size, seed=seed, rank=rank, world_size=world_size)
    if len(sampler) < batch_size:
        raise ValueError(f"an epoch of {len(sampler)} samples per rank is smaller than batch_size {batch_size}")
    loader = torch.utils.data.DataLoader(
        mixed, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_landmarks,
        drop_last=True, pin_memory=pin_memory, persistent_workers=False,
        worker_init_fn=ignore_stop_signals if workers else None,  # the main process handles stop signals
    )
    return loader, sampler, mixed


# --- the pre-flight check ----------------------------------------------------------------------

class PreflightError(ValueError):
    """Images or annotations that cannot be trained on, in a dataset that does not skip them."""


@dataclass
class Checked:
    """The checked faces per role (``"train"``, ``"val"``) and dataset name, and one report per dataset."""

    records: dict[str, dict[str, list]] = field(default_factory=dict)
    reports: list = field(default_factory=list)  # sepbn.data.preflight.DatasetReport

    def skipped_counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """``{role: {dataset: {cause: faces}}}`` of the faces left out (datasets with skip_invalid)."""
        out: dict = {}
        for r in self.reports:
            if r.problems and r.skip_invalid:
                out.setdefault(r.role, {})[r.name] = r.causes()
        return out

    def blocking(self) -> list:
        """Problems in datasets that do not skip them: they stop the run."""
        return [(r, p) for r in self.reports if not r.skip_invalid for p in r.problems]

    def error(self) -> PreflightError | None:
        bad = self.blocking()
        if not bad:
            return None
        names = sorted({f"{r.role} {r.name}" for r, _ in bad})
        lines = [f"{len(bad)} face(s) cannot be used ({', '.join(names)}); fix them, or leave them out with "
                 f"options = {{skip_invalid = true}} in the dataset's table:"]
        return PreflightError("\n".join(lines + [f"  {p}" for _, p in bad]))


def check_data(data: DataConfig, *, cache: str | Path | None = None, workers: int = 0, write_cache: bool = True,
               roles: Sequence[str] = ("train", "val"), tolerance: float = 0.5) -> Checked:
    """Read every configured dataset and check its images (:mod:`sepbn.data.preflight`) in one parallel pass."""
    read = []
    for role in roles:
        entries = data.train if role == "train" else data.val
        for name, d in zip(dataset_names(entries), entries):
            read.append((role, name, d, read_dataset_records(data, d)))
    paths = [str(r.image_path) for *_, recs in read for r in recs if r.image is None]
    images = probe_images(paths, workers=max(workers, 1), cache=cache, write=write_cache)
    out = Checked(records={role: {} for role in roles})
    for role, name, d, recs in read:
        kept, report = check_records(recs, images, name=name, role=role, tolerance=tolerance,
                                     skip_invalid=bool(d.options.get("skip_invalid", False)), skipped=recs.skipped)
        out.records[role][name] = kept
        out.reports.append(report)
    return out


def preflight(cfg: Config, out: Path, dist) -> Checked:
    """:func:`check_data` before training: rank 0 decodes and writes the cache ``out/preflight.json``, the
    other ranks then read it. Raises :class:`PreflightError` listing every problem; left-out faces are
    listed on stdout (the first 20, all of them in ``out/skipped.txt``)."""
    cache = out / "preflight.json"
    if dist.is_main:
        checked = check_data(cfg.data, cache=cache, workers=cfg.data.workers)
    dist.barrier("the pre-flight check of the images (rank 0 decodes them)")
    if not dist.is_main:
        checked = check_data(cfg.data, cache=cache, workers=cfg.data.workers, write_cache=False)
    error = checked.error()
    if error is not None:
        raise error
    skipped = [(r, p) for r in checked.reports if r.skip_invalid for p in r.problems]
    if skipped and dist.is_main:
        atomic_write_text(out / "skipped.txt", "".join(f"{r.role} {r.name}: {p}\n" for r, p in skipped))
        for r in checked.reports:
            if r.skip_invalid and r.problems:
                causes = ", ".join(f"{n} {c}" for c, n in r.causes().items())
                print(f"{r.role} {r.name}: left out {len(r.problems)} face(s) ({causes}); kept {r.faces}")
        for r, p in skipped[:20]:
            print(f"  skipped {p}")
        more = f"; {len(skipped) - 20} more" if len(skipped) > 20 else ""
        print(f"  (all {len(skipped)} listed in {out / 'skipped.txt'}{more})", file=sys.stdout)
    for role, names in checked.records.items():
        for name, recs in names.items():
            if not recs:
                raise PreflightError(f"{role} dataset {name!r}: no face is left after the pre-flight check")
    return checked
