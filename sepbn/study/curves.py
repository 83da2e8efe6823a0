"""Learning curves of a study (``curves.png`` beside the table): is each run converged?

For every started run, its stages' ``train.csv`` (training loss every ``log_every`` steps) and
``val.csv`` (mean validation NME every ``val_every`` epochs) are read from the stage folders that
``run.json`` names; stages follow each other on one step axis. The left panel is the training loss
(a running mean over 5 logged rows), the right one the validation NME, one line per run, one colour
per variant. Runs trained without validation have only the left panel's line; a study where no run
validated gets the left panel alone.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ..evaluation.metrics import save_png
from .table import collect_runs

__all__ = ["read_curves", "plot_learning_curves"]


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if all(v not in (None, "") for v in r.values())]


def stage_log(name: str, k: int, stages: int) -> str:
    """The name stage ``k`` (from 1) of ``stages``' log ``name`` (train.csv, val.csv) has in an archived run."""
    return name if stages == 1 else name.replace(".csv", f"_stage{k}.csv")


def _log(run_folder: Path, stage: dict, name: str, k: int, stages: int) -> Path:
    """A stage's log where the run wrote it, else in an archived copy of the run (`sepbn study archive`)."""
    path = Path(stage["out"]) / name
    return path if path.is_file() else run_folder / stage_log(name, k, stages)


def read_curves(run_folder: str | Path) -> dict[str, np.ndarray]:
    """``{"loss": (n, 2) [step, loss], "nme": (m, 2) [step, nme]}`` over the run's stages in order."""
    run_folder = Path(run_folder)
    spec = json.loads((run_folder / "run.json").read_text())
    loss, nme, offset, stages = [], [], 0, len(spec["stages"])
    for k, stage in enumerate(spec["stages"], start=1):
        train = _rows(_log(run_folder, stage, "train.csv", k, stages))
        loss += [(offset + int(r["step"]), float(r["loss"])) for r in train]
        val = _rows(_log(run_folder, stage, "val.csv", k, stages))
        nme += [(offset + int(r["step"]), float(r["nme"])) for r in val]
        offset += max((int(r["step"]) for r in train), default=0)
    return {"loss": np.array(loss, dtype=np.float64).reshape(-1, 2),
            "nme": np.array(nme, dtype=np.float64).reshape(-1, 2)}


def _started_curves(out: str | Path) -> list[tuple[str, str | None, dict[str, np.ndarray]]]:
    """``(colour, label, curves)`` of every started run, one colour per variant, the label on its first seed."""
    _, runs = collect_runs(out)
    found = []
    for k, (variant, seeds) in enumerate(runs.items()):
        for i, run in enumerate(seeds.values()):
            if run["status"] != "missing" and (Path(run["folder"]) / "run.json").is_file():
                found.append((f"C{k % 10}", variant if i == 0 else None, read_curves(run["folder"])))
    return found


def plot_learning_curves(out: str | Path, path: str | Path) -> Path | None:
    """Write ``path`` (PNG) with every started run's curves; None when no run has logged a step.
    The validation panel is drawn only when some run has validated."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    runs = [r for r in _started_curves(out) if len(r[2]["loss"])]
    if not runs:
        return None
    with_val = any(len(c["nme"]) for _, _, c in runs)
    fig = Figure(figsize=(10, 4) if with_val else (5.5, 4), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if with_val else 1, squeeze=False)[0]
    for colour, label, c in runs:
        smooth = np.convolve(c["loss"][:, 1], np.ones(5) / 5, mode="valid") if len(c["loss"]) >= 5 else c["loss"][:, 1]
        axes[0].plot(c["loss"][len(c["loss"]) - len(smooth):, 0], smooth, color=colour, lw=0.8, label=label)
        if with_val and len(c["nme"]):
            axes[1].plot(c["nme"][:, 0], 100 * c["nme"][:, 1], color=colour, marker=".", lw=0.8, label=label)
    axes[0].set(xlabel="step", ylabel="training loss (running mean of 5 rows)", yscale="log")
    if with_val:
        axes[1].set(xlabel="step", ylabel="validation NME % (the protocol's normaliser)")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return save_png(fig, path)
