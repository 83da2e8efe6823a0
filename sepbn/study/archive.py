"""Archive a study's results for the repository: what its table, its learning curves and `adopt` read.

``runs/`` is not versioned, so a study's numbers live on as a committed copy (``docs/science/<study>/``).
``archive_study`` writes that copy: per finished job ``<variant>/seed<k>/`` with result.json, errors.npz,
time.json, its logs (``train.csv`` and ``val.csv``, or ``train_stageK.csv`` and ``val_stageK.csv`` for a
staged variant; the learning curves read them there) and its run.json and result.json with every path under
the checkout made relative to it, so `adopt` can check a later study's job against the configs and overrides
the run was trained with; at the top the table files (table.md, table.json, the CED and curve plots) and study.json.
The weights stay behind. Unfinished jobs are not copied and are listed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..io import atomic_write_text
from .adopt import RESULT_FILES, relative_paths
from .curves import stage_log
from .spec import StudyError

TABLE_FILES = ("table.md", "table.json", "study.json")


def _logs(spec: dict) -> list[tuple[Path, str]]:
    """(train and validation log of each stage, its name in the archive) for the logs that exist."""
    stages = spec["stages"]
    pairs = [(Path(st["out"]) / name, stage_log(name, k, len(stages)))
             for k, st in enumerate(stages, start=1) for name in ("train.csv", "val.csv")]
    return [(src, name) for src, name in pairs if src.is_file()]


def archive_job(job_folder: Path, dest: Path) -> Path:
    """Copy one finished job (its folder holds run.json and result.json) to ``dest``; returns its checkout."""
    spec = json.loads((job_folder / "run.json").read_text())
    dest.mkdir(parents=True, exist_ok=True)
    for src, name in _logs(spec):
        shutil.copyfile(src, dest / name)
    for name in RESULT_FILES:
        if (job_folder / name).is_file():
            shutil.copyfile(job_folder / name, dest / name)
    root = Path(spec["cwd"])
    atomic_write_text(dest / "run.json", json.dumps(relative_paths(spec, root), indent=2))
    # result.json last: in a copy, as in a run folder, it marks the job done
    result = json.loads((job_folder / "result.json").read_text())
    atomic_write_text(dest / "result.json", json.dumps(relative_paths(result, root), indent=2))
    return root


def archive_study(folder: str | Path, dest: str | Path) -> tuple[list[str], list[str]]:
    """Copy the finished jobs and table files of study folder ``folder`` into ``dest``.

    Returns (archived job ids, unfinished job ids).
    """
    folder, dest = Path(folder), Path(dest)
    if not (folder / "study.json").is_file():
        raise StudyError(f"{folder}: not a study folder (no study.json; run `sepbn study run` or `adopt` first)")
    done, unfinished, checkouts = [], [], []
    for spec_path in sorted(folder.glob("*/seed*/run.json")):
        job_folder = spec_path.parent
        job_id = f"{job_folder.parent.name}/{job_folder.name}"
        if not (job_folder / "result.json").is_file():
            unfinished.append(job_id)
            continue
        checkouts.append(archive_job(job_folder, dest / job_id))
        done.append(job_id)
    # the checkout the runner worked in; a run copied in from an archive says only "."
    root = next((c for c in checkouts if c.is_absolute()), Path.cwd())
    for name in TABLE_FILES:
        if (folder / name).is_file():
            text = (folder / name).read_text()
            if name == "study.json":  # the study file's and its configs' paths, relative to the checkout
                text = json.dumps(relative_paths(json.loads(text), root), indent=2)
            atomic_write_text(dest / name, text)
    for plot in sorted(folder.glob("*.png")):
        shutil.copyfile(plot, dest / plot.name)
    return done, unfinished
