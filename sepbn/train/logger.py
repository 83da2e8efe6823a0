"""Run logs: CSV files (always) and TensorBoard (when installed and enabled); rank 0 only.

``train.csv``: one row every ``log_every`` steps (step, epoch, loss, loss per protocol, lr, tau,
images/s, seconds). ``val.csv``: one row per validation (NME per validation dataset).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping

__all__ = ["RunLogger"]


class RunLogger:
    """Appends rows to ``<out>/<name>.csv`` (header from the first row) and mirrors scalars to TensorBoard."""

    def __init__(self, out_dir: str | Path, *, enabled: bool = True, tensorboard: bool = False,
                 append: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.append = append  # a resumed run continues its CSV files; a new run starts them afresh
        self._fields: dict[str, list[str]] = {}
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # optional dependency: pip install sepbn[tensorboard]
                print("tensorboard is not installed; logging to CSV only")
            else:
                self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))

    def log(self, name: str, row: Mapping[str, object], step: int) -> None:
        if not self.enabled:
            return
        path = self.out_dir / f"{name}.csv"
        fields = self._fields.get(name)
        if fields is None:
            if self.append and path.is_file() and path.stat().st_size:  # keep the existing header
                with open(path, newline="") as f:
                    fields = next(csv.reader(f), None) or list(row)
            else:
                fields = list(row)
                with open(path, "w", newline="") as f:
                    csv.writer(f).writerow(fields)
            self._fields[name] = fields
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=fields, extrasaction="ignore").writerow(row)
        if self.writer is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.writer.add_scalar(f"{name}/{k}", v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
