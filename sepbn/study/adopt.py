"""Adopt finished runs into a study folder: one run counted in two studies without training it twice.

A study often pairs a new arm with runs another study has made (the same config and seed). ``adopt_run``
copies such a run's result files into ``DIR/<variant>/seed<k>/``, where the runner then skips it as done,
and writes the ``run.json`` of this study's job so that the learning curves find its logs. It refuses a run
that does not match the job: trained with other configs or overrides, or evaluated on other sets.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..assembly import dataset_names, load_run_config
from ..io import atomic_write_text
from .curves import stage_log
from .evaluate_run import flip_name
from .spec import Job, StudyError

# besides result.json, the files of a finished run that the table reads (the weights stay where they are)
RESULT_FILES = ("errors.npz", "time.json")


def relative_paths(value: Any, root: Path) -> Any:
    """``value`` (JSON data) with every path under ``root``, alone or as the value of a ``key=path`` override,
    made relative to it (``root`` itself: "."), so a run's record compares across checkouts and machines."""
    if isinstance(value, dict):
        return {k: relative_paths(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [relative_paths(v, root) for v in value]
    if not isinstance(value, str):
        return value
    key, eq, path = value.rpartition("=") if "=" in value and not os.path.isabs(value) else ("", "", value)
    if os.path.isabs(path) and Path(path).is_relative_to(root):
        return f"{key}{eq}{Path(path).relative_to(root)}"
    return value


def _training(spec: dict) -> list[tuple[str, list[str]]]:
    """Each stage's config (relative to the run's checkout) and overrides, without where the run lives."""
    root = Path(spec.get("cwd", "/"))
    return [(relative_paths(st["config"], root), [o for o in st["overrides"] if not o.startswith("train.init_from=")])
            for st in spec["stages"]]


def _eval_sets(job: Job) -> list[str]:
    """The result names `evaluate_run` gives the job's sets: the same config, the same dataset names."""
    last, ev = job.stages[-1], job.eval
    overrides = [*last["overrides"], f"data.val={json.dumps(ev['sets'])}"] if ev["sets"] else last["overrides"]
    names = dataset_names(load_run_config(last["config"], overrides).data.val)
    return names + [flip_name(n) for n in names] if ev.get("flip") else names


def check_adoptable(source: Path, job: Job) -> str:
    """How ``source`` was checked against ``job``; raises StudyError where it does not match."""
    spec_path = source / "run.json"
    if spec_path.is_file():
        spec = json.loads(spec_path.read_text())
        theirs, ours = _training(spec), _training(job.to_dict())
        if theirs != ours:
            raise StudyError(f"{spec_path}: trained with other configs or overrides than {job.id} "
                             f"({theirs} against {ours})")
        if relative_paths(spec["eval"], Path(spec.get("cwd", "/"))) != relative_paths(job.eval, Path(job.cwd)):
            raise StudyError(f"{spec_path}: evaluated otherwise than {job.id} ({spec['eval']} against {job.eval})")
        return "configs, overrides and evaluation checked against its run.json"
    result = json.loads((source / "result.json").read_text())
    sets = [r["dataset"] for r in result["results"]]
    expected = _eval_sets(job)
    if sets != expected:
        raise StudyError(f"{source / 'result.json'}: evaluated on {sets}, the study on {expected}")
    return "no run.json: only its evaluated sets checked (configs not verifiable)"


def _train_logs(source: Path, job: Job) -> list[tuple[Path, Path]]:
    """(source log, destination) for every stage's train.csv found (a run folder's or a committed copy's)."""
    pairs = []
    for k, st in enumerate(job.stages, start=1):
        archived = stage_log("train.csv", k, len(job.stages))
        for name in ((f"stage{k}/train.csv", archived) if len(job.stages) > 1 else (archived,)):
            if (source / name).is_file():
                pairs.append((source / name, Path(st["out"]) / "train.csv"))
                break
    return pairs


def adopt_run(source: str | Path, jobs: list[Job], variant: str) -> tuple[Job, str]:
    """Copy the finished run in ``source`` into its job of ``variant`` (the seed its result.json names)."""
    source = Path(source)
    if not (source / "result.json").is_file():
        raise StudyError(f"{source}: not a finished run (no result.json)")
    seed = json.loads((source / "result.json").read_text()).get("seed")
    matches = [j for j in jobs if j.variant == variant and j.seed == seed]
    if not matches:
        raise StudyError(f"{source / 'result.json'}: seed {seed} is not a seed of variant {variant!r} in this study")
    job = matches[0]
    if (job.folder / "result.json").is_file():
        raise StudyError(f"{job.folder}: {job.id} is already done; delete it to adopt another run")
    how = check_adoptable(source, job)
    job.folder.mkdir(parents=True, exist_ok=True)
    for src, dst in _train_logs(source, job):
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    atomic_write_text(job.folder / "run.json", json.dumps(job.to_dict(), indent=2))
    for name in RESULT_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, job.folder / name)
    # result.json last and whole: it marks the job done
    atomic_write_text(job.folder / "result.json", (source / "result.json").read_text())
    return job, how
