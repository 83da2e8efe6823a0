"""The study table (``sepbn study table DIR``): mean ± sd over seeds and paired tests against the baseline.

Per evaluation set and variant: mean ± sd over the finished seeds of NME, FR at every threshold
and AUC at the last one, and the train time; against the baseline, over the seeds both finished,
the paired difference with its 95 % CI and the paired t-test's p (``sepbn.evaluation.stats``),
the seeds the t-test needs for 80 % power at the study's ``eval.effect`` (fixed in advance), and
for NME the p of a Wilcoxon signed-rank test on the faces (each face's NME averaged over those
seeds). The same per sub-domain where the evaluation data carries domain labels, and per WFLW
subset (``subset pose`` ...; FR and AUC at the last threshold). Runs missing or
failed are counted per variant. Written to ``table.json``, ``table.md`` (``format_markdown``)
and ``ced.png`` (one curve per variant, the mean over seeds of the per-seed CED curves).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..evaluation.metrics import plot_ced
from ..evaluation.stats import mean_sd, paired_t, paired_wilcoxon, seeds_for_power
from .spec import DEFAULT_EFFECT

__all__ = ["collect_runs", "build_table", "load_errors", "metric_keys", "plot_mean_ced"]


def load_errors(folder: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """``{set name: {"errors", "face_ids", "domains", "domain_labels"}}`` of a run's ``errors.npz``."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(Path(folder) / "errors.npz") as z:
        for key in z.files:
            name, _, part = key.rpartition(":")
            out.setdefault(name, {})[part] = z[key]
    return out


def metric_keys(thresholds) -> list[str]:
    """``nme``, ``fr@<t>`` for every threshold, ``auc@<last>`` (the summary keys of ``evaluate``)."""
    tags = [f"{100 * t:g}" for t in thresholds]
    return ["nme"] + [f"fr@{t}" for t in tags] + [f"auc@{tags[-1]}"]


def collect_runs(out: str | Path) -> tuple[dict, dict]:
    """``(study, runs)``: the saved study and ``runs[variant][seed]`` = status, folder, result or error.

    Status: "done" (result.json), "failed" (error.json), "unfinished" (started: running, interrupted
    or killed) or "missing" (never started).
    """
    out = Path(out)
    path = out / "study.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a study folder (sepbn study run writes it)")
    study = json.loads(path.read_text())
    runs: dict = {}
    for v in study["variants"]:
        runs[v["name"]] = {}
        for seed in study["seeds"]:
            folder = out / v["name"] / f"seed{seed}"
            entry: dict = {"folder": str(folder), "status": "missing"}
            if (folder / "result.json").is_file():
                entry.update(status="done", result=json.loads((folder / "result.json").read_text()))
            elif (folder / "error.json").is_file():
                entry.update(status="failed", error=json.loads((folder / "error.json").read_text()))
            elif (folder / "run.json").is_file():  # started: running now, interrupted, or stopped by a kill
                entry.update(status="unfinished")
            runs[v["name"]][seed] = entry
    return study, runs


def _nan_to_none(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return x


def _summary(result: dict, dataset: str) -> dict | None:
    return next((r for r in result["results"] if r["dataset"] == dataset), None)


def _group_mask(faces: dict, group: str | None) -> np.ndarray:
    """Faces of a group: a sub-domain label, or ``subset <attribute>`` (WFLW); None = every face."""
    if group is None:
        return np.ones(len(faces["errors"]), dtype=bool)
    if group.startswith("subset "):
        key = f"subset={group[len('subset '):]}"
        return faces[key].astype(bool) if key in faces else np.zeros(len(faces["errors"]), dtype=bool)
    return faces["domain_labels"] == group


def _face_means(runs: list[dict], group: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(face ids, each face's error averaged over ``runs``) for the faces every run scored."""
    ids = runs[0]["face_ids"]
    for r in runs[1:]:
        ids = np.intersect1d(ids, r["face_ids"], assume_unique=True)
    errs = []
    for r in runs:
        _, at, _ = np.intersect1d(r["face_ids"], ids, assume_unique=True, return_indices=True)
        errs.append(r["errors"][at])
    _, first, _ = np.intersect1d(runs[0]["face_ids"], ids, assume_unique=True, return_indices=True)
    keep = _group_mask(runs[0], group)[first]
    return ids[keep], np.mean(errs, axis=0)[keep]


def _compare(values: dict, base: dict, faces: dict, base_faces: dict, domain: str | None,
             effect: float | None = None) -> dict:
    seeds = sorted(set(values) & set(base))
    out = {"seeds": seeds}
    for key in next(iter(values.values()), {}):
        out[key] = paired_t([values[s][key] for s in seeds], [base[s][key] for s in seeds]).to_dict()
    if effect and "nme" in out and out["nme"]["sd"] is not None and not math.isnan(out["nme"]["sd"]):
        out["seeds_for_80"] = {"effect": effect, "seeds": seeds_for_power(effect, out["nme"]["sd"])}
    both = [s for s in seeds if s in faces and s in base_faces]
    if both:  # one pair per face: its mean over the seeds, variant against baseline
        ids_a, a = _face_means([faces[s] for s in both], domain)
        ids_b, b = _face_means([base_faces[s] for s in both], domain)
        _, ia, ib = np.intersect1d(ids_a, ids_b, assume_unique=True, return_indices=True)
        out["nme_faces"] = paired_wilcoxon(a[ia], b[ib]).to_dict()
    return out


def _describe(values: dict) -> dict:
    keys = next(iter(values.values()), {})
    out = {}
    for key in keys:
        m, sd = mean_sd([v[key] for v in values.values()])
        out[key] = {"mean": m, "sd": sd, "values": {str(s): v[key] for s, v in values.items()}}
    return out


def _variant_block(dataset: str, keys: list[str], runs: dict, faces: dict) -> dict:
    """Per-seed metrics of one variant on one set: overall and per sub-domain."""
    overall, domains, per_face = {}, {}, {}
    for seed, run in runs.items():
        if run["status"] != "done":
            continue
        s = _summary(run["result"], dataset)
        if s is None:
            continue
        overall[seed] = {k: s[k] for k in keys if k in s}
        groups = dict(s.get("domains", {}))
        groups.update({f"subset {k}": v for k, v in s.get("subsets", {}).items() if k != "test"})
        for name, d in groups.items():  # WFLW subset rows carry nme, fr and auc at the last threshold
            domains.setdefault(name, {"faces": d["faces"], "seeds": {}})["seeds"][seed] = {
                k: d[k] for k in (*keys, "fr", "auc") if k in d}
        if seed in faces and dataset in faces[seed]:
            per_face[seed] = faces[seed][dataset]
    return {"overall": overall, "domains": domains, "faces": per_face}


def build_table(out: str | Path, baseline: str | None = None) -> dict:
    """The study's table as a JSON-able dict (NaN as null); ``baseline`` overrides the study's."""
    out = Path(out)
    study, runs = collect_runs(out)
    keys = metric_keys(study["eval"]["fr_thresholds"])
    effect = study["eval"].get("effect", DEFAULT_EFFECT)  # study.json files before eval.effect have none
    baseline = baseline or study["baseline"]
    if baseline not in runs:
        raise ValueError(f"baseline {baseline!r} is not a variant of {out / 'study.json'}; variants: {list(runs)}")
    faces = {v: {seed: load_errors(r["folder"]) for seed, r in rs.items()
                 if r["status"] == "done" and (Path(r["folder"]) / "errors.npz").is_file()}
             for v, rs in runs.items()}
    datasets: list[str] = []
    for rs in runs.values():
        for r in rs.values():
            for s in r.get("result", {}).get("results", []):
                if s["dataset"] not in datasets:
                    datasets.append(s["dataset"])
    table: dict = {"study": study["name"], "baseline": baseline, "seeds": study["seeds"], "metrics": keys,
                   "eval": study["eval"], "variants": {}, "datasets": {}}
    for v, rs in runs.items():
        done = [r["result"]["train_seconds"] for r in rs.values() if r["status"] == "done"]
        wall = mean_sd([t["wall"] for t in done if t.get("wall") is not None])
        cpu = mean_sd([t["cpu"] for t in done if t.get("cpu") is not None])
        table["variants"][v] = {
            "done": [s for s, r in rs.items() if r["status"] == "done"],
            "failed": {str(s): r["error"] for s, r in rs.items() if r["status"] == "failed"},
            "unfinished": [s for s, r in rs.items() if r["status"] == "unfinished"],
            "missing": [s for s, r in rs.items() if r["status"] == "missing"],
            "train_seconds": {"wall": {"mean": wall[0], "sd": wall[1]}, "cpu": {"mean": cpu[0], "sd": cpu[1]}},
        }
    for ds in datasets:
        blocks = {v: _variant_block(ds, keys, rs, faces[v]) for v, rs in runs.items()}
        base = blocks[baseline]
        entry: dict = {"variants": {}}
        for v, b in blocks.items():
            first = next((_summary(r["result"], ds) for r in runs[v].values() if r["status"] == "done"
                          and _summary(r["result"], ds)), None)
            if first is not None:
                entry.setdefault("faces", first["faces"])
                entry.setdefault("normalizer", first["normalizer"])
            row: dict = {"n": len(b["overall"]), **_describe(b["overall"]), "domains": {}}
            if v != baseline and b["overall"]:
                row["vs_baseline"] = _compare(b["overall"], base["overall"], b["faces"], base["faces"], None, effect)
            for name, d in b["domains"].items():
                drow: dict = {"faces": d["faces"], "n": len(d["seeds"]), **_describe(d["seeds"])}
                bd = base["domains"].get(name)
                if v != baseline and bd:
                    drow["vs_baseline"] = _compare(d["seeds"], bd["seeds"], b["faces"], base["faces"], name, effect)
                row["domains"][name] = drow
            entry["variants"][v] = row
        table["datasets"][ds] = entry
    return _nan_to_none(table)


def plot_mean_ced(out: str | Path, dataset: str, path: str | Path, threshold: float, xlabel: str) -> Path | None:
    """One CED curve per variant on ``dataset``: the mean over its finished seeds of their CED curves."""
    _, runs = collect_runs(out)
    curves = {}
    for v, rs in runs.items():
        seeds = [load_errors(r["folder"]).get(dataset) for r in rs.values()
                 if r["status"] == "done" and (Path(r["folder"]) / "errors.npz").is_file()]
        seeds = [e["errors"] for e in seeds if e is not None]
        if seeds:
            curves[v] = seeds
    if not curves:
        return None
    return plot_ced(curves, threshold, path, title=dataset, xlabel=xlabel, ylabel="share of faces (mean over seeds)")
