"""Run logs: CSV files (always) and TensorBoard (when installed and enabled); rank 0 only.

``train.csv``: one row every ``log_every`` steps (step, epoch, loss, loss per protocol, lr, tau,
images/s, seconds). ``val.csv``: one row per validation (NME per validation dataset).

A resumed run continues its files from the checkpoint's step: rows logged after that step (by the
run that was stopped) and a last line cut short by a kill are dropped first, so every step appears
once; TensorBoard purges its later events the same way.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Mapping

from ..io import atomic_write_text

__all__ = ["RunLogger"]


class RunLogger:
    """Appends rows to ``<out>/<name>.csv`` (header from the first row) and mirrors scalars to TensorBoard."""

    def __init__(self, out_dir: str | Path, *, enabled: bool = True, tensorboard: bool = False,
                 resume_step: int | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.append = resume_step is not None  # a resumed run continues its CSV files; a new run starts afresh
        self._fields: dict[str, list[str]] = {}
        self.writer = None
        if enabled and resume_step is not None:
            for path in sorted(self.out_dir.glob("*.csv")):
                trim_log(path, resume_step)
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # optional dependency: pip install sepbn[tensorboard]
                print("tensorboard is not installed; logging to CSV only")
            else:
                purge = None if resume_step is None else resume_step + 1
                self.writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=purge)

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
        line = io.StringIO()
        csv.DictWriter(line, fieldnames=fields, extrasaction="ignore").writerow(row)
        with open(path, "a", newline="") as f:  # one write per row: a kill cuts at most the last line
            f.write(line.getvalue())
        if self.writer is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.writer.add_scalar(f"{name}/{k}", v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def trim_log(path: str | Path, last_step: int) -> int:
    """Keep the header and the complete rows of a CSV log with ``step <= last_step``; returns rows dropped."""
    path = Path(path)
    text = path.read_text()
    if not text:
        return 0
    lines = text.splitlines(keepends=True)
    cut = not lines[-1].endswith(("\n", "\r"))  # the last line was cut short by a kill
    if cut:
        lines = lines[:-1]
    rows = list(csv.reader(lines))
    if not rows:  # not even a whole header
        atomic_write_text(path, "")
        return 0
    header, body = rows[0], rows[1:]
    step_col = header.index("step") if "step" in header else None
    keep = []
    for row in body:
        if len(row) != len(header):
            continue
        if step_col is not None:
            try:
                if int(row[step_col]) > last_step:
                    continue
            except ValueError:
                continue
        keep.append(row)
    dropped = len(body) - len(keep) + int(cut)
    if dropped:
        out = io.StringIO()
        csv.writer(out).writerows([header, *keep])
        atomic_write_text(path, out.getvalue())
    return dropped
