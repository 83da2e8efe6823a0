"""Evaluate one finished study run (``sepbn study eval FOLDER``): ``result.json`` and ``errors.npz``.

The run's last stage folder holds the resolved training config (``config.toml``) and its weights
(``final/`` or ``best/``, the study's ``eval.checkpoint``). The evaluation sets are the study's
``eval.sets`` or else that config's ``data.val``, read with its ``data.root`` (relative to the
directory the study was started in).

``result.json``: variant, seed, weights, train seconds (wall and CPU, summed over the stages and
over resumed attempts), one summary per evaluation set (and per set again with flip averaging,
named ``<set>+flip``, when the study's ``eval.flip`` is true) (``sepbn.evaluation.evaluate``: NME, FR
and AUC at every threshold, per sub-domain NME). ``errors.npz``: per set ``<name>:errors``
(per-face NME), ``<name>:face_ids`` (index of the face in the set) and ``<name>:domains``
(sub-domain id, -1 unknown), ``<name>:domain_labels`` (its name) and, on WFLW, ``<name>:subset=<attribute>``
(the face's flag), the input of the per-face paired test (read by ``sepbn.study.table.load_errors``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..assembly import build_datasets, resolve_device
from ..checkpoint import load_model
from ..config import load_config
from ..evaluation.evaluate import evaluate
from ..io import atomic_write, atomic_write_text

__all__ = ["evaluate_run"]


def _train_seconds(folder: Path) -> dict:
    path = folder / "time.json"
    if not path.is_file():  # trained outside the study runner (adopted folder): time unknown
        return {"wall": None, "cpu": None, "stages": {}}
    stages = json.loads(path.read_text())
    return {"wall": sum(s["wall"] for s in stages.values()), "cpu": sum(s["cpu"] for s in stages.values()),
            "stages": stages}


def _domain_labels(ds, res) -> list[str]:
    """Each face's sub-domain name, as the summary's ``domains`` keys name them."""
    names = {int(r.attributes["domain_id"]): str(r.attributes.get("domain", r.attributes["domain_id"]))
             for r in ds.records if "domain_id" in r.attributes}
    return [names.get(int(d), "unknown" if d < 0 else f"domain {d}") for d in res.domains]


def flip_name(name: str) -> str:
    """The result name of a set scored with flip averaging."""
    return f"{name}+flip"


def evaluate_run(folder: str | Path) -> dict:
    """Evaluate the run in ``folder`` (which holds ``run.json``) and write its result files."""
    folder = Path(folder)
    spec_path = folder / "run.json"
    if not spec_path.is_file():
        raise FileNotFoundError(f"{spec_path} not found: not a study run folder")
    spec = json.loads(spec_path.read_text())
    ev = spec["eval"]
    last = Path(spec["stages"][-1]["out"])
    overrides = [f"data.val={json.dumps(ev['sets'])}"] if ev["sets"] else []
    cfg = load_config(last / "config.toml", overrides)
    if not cfg.data.val:
        raise ValueError(f"{last / 'config.toml'}: no evaluation data; give the study [eval] sets "
                         "or the base config [[data.val]]")
    weights = last / ev["checkpoint"]
    if not weights.is_dir():
        raise FileNotFoundError(f"{weights} not found (eval.checkpoint = {ev['checkpoint']!r}; 'best' needs "
                                "validation during training)")
    t0 = time.perf_counter()
    model, meta = load_model(weights)
    device = resolve_device(cfg.train.device)
    model.to(device)
    datasets = build_datasets(cfg.data, cfg.data.val, train=False, image_size=cfg.model.input_size)
    results, arrays = [], {}
    scored = [(name, ds, False) for name, ds in datasets.items()]
    if ev.get("flip", False):  # run.json files written before eval.flip existed have no key
        scored += [(flip_name(name), ds, True) for name, ds in datasets.items()]
    for name, ds, flip in scored:
        res = evaluate(model, ds, normalizer=ev["normalizer"], thresholds=tuple(ev["fr_thresholds"]),
                       device=device, name=name, flip=flip)
        summary = dict(res.summary)
        if not ev["domains"]:
            summary.pop("domains", None)
        results.append(summary)
        arrays[f"{name}:errors"] = res.errors.astype(np.float64)
        arrays[f"{name}:face_ids"] = res.indices.astype(np.int64)
        arrays[f"{name}:domains"] = res.domains.astype(np.int64)
        arrays[f"{name}:domain_labels"] = np.array(_domain_labels(ds, res), dtype=str)
        for subset in summary.get("subsets", {}):  # WFLW attribute flags, for the per-face test per subset
            if subset != "test":
                arrays[f"{name}:subset={subset}"] = np.array(
                    [bool(ds.records[int(i)].attributes.get(subset, 0)) for i in res.indices])
    atomic_write(folder / "errors.npz", lambda f: np.savez(f, **arrays))
    result = {
        "variant": spec["variant"], "seed": spec["seed"], "weights": str(weights),
        "epoch": meta.get("epoch"), "step": meta.get("step"),
        "train_seconds": _train_seconds(folder), "eval_seconds": time.perf_counter() - t0,
        "results": results, "errors": "errors.npz",
    }
    atomic_write_text(folder / "result.json", json.dumps(result, indent=2))  # written last: the run is done
    return result

