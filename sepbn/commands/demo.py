"""``sepbn demo`` (``make demo``): BN vs SepBN vs CNT+SepBN on SynthFaces with seeds, end to end on a CPU.

1. Generates two SynthFaces sets with imbalanced head poses (15% left profile, 70% frontal,
   15% right profile): the *target* set annotated in 300w68 and an *extra* set (other faces)
   annotated in wflw98.
2. Runs the study ``configs/demo/study.toml`` (``sepbn study``): a small VanillaCNN (width 0.25,
   64 px crops) trained on the target set with BN (``bn.toml``) and with SepBN (``sepbn.toml``),
   and CNT+SepBN: stage 1 on target + extra with one head per protocol (``cnt_stage1.toml``),
   stage 2 on the target with the 300w68 head and backbone lr 1e-7 (``cnt_stage2.toml``); each
   with 3 seeds (``--seeds``), two runs side by side (``--jobs``). A finished run is kept: running
   the demo again only does what is missing.
3. Prints mean ± sd over the seeds (overall and per pose sub-domain NME, FR@10%, AUC@10%) on the
   target's test faces, and says in plain words whether each difference against BN is beyond the
   seed noise (paired t-test over seeds, ``sepbn.evaluation.stats``); writes the study's table,
   a CED plot (mean over seeds) and an overlay image.

The numbers are whatever this short run gives: a check of the pipeline and of its noise, not the paper.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from ..assembly import build_datasets
from ..checkpoint import load_model
from ..config import load_config
from ..data.synth import generate
from ..evaluation.evaluate import evaluate
from ..io import atomic_write_bytes, atomic_write_text
from ..study.report import verdict, write_table
from ..study.runner import run_jobs
from ..study.spec import load_study, study_jobs, study_to_dict
from ..study.table import plot_mean_ced


CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "demo"
NAMES = ("BN", "SepBN", "CNT+SepBN")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output folder")
    parser.add_argument("--num-target", type=int, default=500, help="faces in the 300w68 target set (80%% train)")
    parser.add_argument("--num-extra", type=int, default=1000, help="faces in the wflw98 extra set (80%% train)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per model (0, 1, ...)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of every single-stage run and of CNT stage 1 (stage 2: a third)")
    parser.add_argument("--configs", default=str(CONFIGS), help="folder of the demo configs and study.toml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key in every demo run (repeatable)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="runs side by side")
    parser.add_argument("--threads-per-job", type=int, default=None, help="threads per run (default: cores / jobs)")
    parser.add_argument("--normalizer", default="box",
                        help="NME normaliser of the 300w68 protocol (default: the landmark box, sqrt(w*h); "
                             "inter-ocular distances collapse on profile faces)")


def _overlay(result, dataset, path: Path, count: int = 6) -> Path:
    """Ground truth (green) and prediction (red) on test faces, worst domain first, side by side."""

    order = np.argsort(-result.errors)
    picks = list(order[: count // 2]) + list(np.argsort(result.errors)[: count - count // 2])
    tiles = []
    for k in picks:
        rec = dataset.records[int(result.indices[k])]
        img = rec.load_image().copy()
        for pts, colour in ((result.landmarks[k], (0, 200, 0)), (result.predictions[k], (230, 0, 0))):
            for x, y in pts:
                cv2.circle(img, (int(round(x)), int(round(y))), 1, colour, -1)
        x0, y0, x1, y1 = (int(v) for v in rec.box)
        side = int(max(x1 - x0, y1 - y0) * 1.4)
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        crop = img[max(cy - side // 2, 0): cy + side // 2, max(cx - side // 2, 0): cx + side // 2]
        crop = cv2.resize(crop, (160, 160), interpolation=cv2.INTER_AREA)
        label = f"{rec.attributes.get('domain', '?')} {100 * result.errors[k]:.1f}%"
        cv2.putText(crop, label, (4, 152), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(crop)
    sheet = np.concatenate(tiles, axis=1)
    ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    atomic_write_bytes(path, png.tobytes())
    return path


def _cell(stat: dict | None, width: int) -> str:
    if not stat or stat.get("mean") is None:
        return f"{'-':>{width}}"
    sd = "" if stat.get("sd") is None else f" ± {100 * stat['sd']:.2f}"
    return f"{100 * stat['mean']:.2f}{sd}".rjust(width)


def _table(table: dict, dataset: str) -> str:
    """Mean ± sd over seeds per model: NME, FR@10, AUC@10, NME per pose domain, train seconds."""
    entry = table["datasets"][dataset]
    rows = entry["variants"]
    domains = [d for d in next(iter(rows.values()))["domains"] if not d.startswith("subset ")]
    head = (f"{'model':<11}{'seeds':>6}{'NME %':>15}{'FR@10 %':>15}{'AUC@10 %':>15}"
            + "".join(f"{'NME ' + d:>20}" for d in domains) + f"{'train s':>10}")
    lines = [head, "-" * len(head)]
    for name, row in rows.items():
        wall = table["variants"][name]["train_seconds"]["wall"]["mean"]
        lines.append(f"{name:<11}{row['n']:>6}{_cell(row.get('nme'), 15)}{_cell(row.get('fr@10'), 15)}"
                     f"{_cell(row.get('auc@10'), 15)}"
                     + "".join(_cell(row["domains"].get(d, {}).get("nme"), 20) for d in domains)
                     + (f"{'-':>10}" if wall is None else f"{wall:>10.0f}"))
    first = next(iter(rows.values()))
    lines.append(f"{'test faces':<11}{'':>6}{entry.get('faces', 0):>15}{'':>30}"
                 + "".join(f"{first['domains'][d]['faces']:>20}" for d in domains))
    return "\n".join(lines)


def _demo_study(args: argparse.Namespace, path: Path, synth: Path):
    """configs/demo/study.toml with the demo's data root, seeds, epochs, overrides and normaliser."""

    study = load_study(path, [f"data.root={synth}", *args.overrides])

    def epochs(n: int) -> list[str]:  # a shorter run keeps the schedules' proportions
        return [f"schedule.epochs={n}", f"schedule.warmup_epochs={n // 10}", f"schedule.tau_epochs={max(n // 3, 1)}"]

    variants = []
    for v in study.variants:
        stages = []
        for k, st in enumerate(v.stages):
            extra: list[str] = []
            if args.epochs is not None:
                extra = epochs(args.epochs) if k == 0 else epochs(max(args.epochs // 3, 1)) + ["schedule.tau_epochs=1"]
            stages.append(replace(st, overrides=st.overrides + tuple(extra)))
        variants.append(replace(v, stages=tuple(stages)))
    return replace(study, seeds=tuple(range(args.seeds)), variants=tuple(variants),
                   eval=replace(study.eval, normalizer=args.normalizer))


def _run_study(study, out: Path, args: argparse.Namespace) -> list[str]:
    """Run the demo study into ``out``; the ids of the runs that failed."""

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "study.json", json.dumps(study_to_dict(study), indent=2))
    jobs = study_jobs(study, out)
    threads = args.threads_per_job or max(1, (os.cpu_count() or 1) // args.jobs)
    print(f"training {len(jobs)} runs ({len(study.variants)} models x {len(study.seeds)} seeds), "
          f"{args.jobs} at a time with {threads} thread(s) each; logs in {out}/<model>/seed<k>/", flush=True)
    failed, t0 = [], time.perf_counter()

    def report(o) -> None:
        if o.status in ("failed", "interrupted"):
            failed.append(o.job)
        note = {"failed": f"FAILED: {o.error} (log: {o.log})", "skipped": "already done",
                "interrupted": "interrupted"}.get(o.status, f"done ({time.perf_counter() - t0:.0f} s)")
        print(f"  {o.job}: {note}", flush=True)

    run_jobs(jobs, workers=args.jobs, threads=threads, report=report)
    return failed


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    configs = Path(args.configs)
    if not (configs / "study.toml").is_file():
        print(f"sepbn demo: demo study not found in {configs} (run from the repository)", file=sys.stderr)
        return 2
    if args.seeds < 1 or args.jobs < 1:
        print("sepbn demo: --seeds and --jobs must be at least 1", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    synth = (out / "synth").resolve()
    for name, protocol, num, seed in (("target", "300w68", args.num_target, 1),
                                      ("extra", "wflw98", args.num_extra, 2)):
        if not (synth / name / "synth.json").is_file():
            generate(synth / name, [protocol], num, seed=seed, size=128)
    print(f"SynthFaces in {synth} ({time.perf_counter() - t_start:.0f} s)")

    study = _demo_study(args, configs / "study.toml", synth)
    folder = out / "study"
    failed = _run_study(study, folder, args)
    write_table(folder)
    table = json.loads((folder / "table.json").read_text())
    dataset = next(iter(table["datasets"]), None)
    if dataset is None:
        print(f"sepbn demo: no run finished; see the logs under {folder}", file=sys.stderr)
        return 1
    entry = table["datasets"][dataset]
    ced = plot_mean_ced(folder, dataset, out / "ced.png", 0.10, entry.get("normalizer", "NME"))
    base = table["baseline"]
    verdicts = {v: verdict(row.get("vs_baseline"), base, v) for v, row in entry["variants"].items() if v != base}

    overlay = None

    first = study.variants[-1].name, study.seeds[0]
    job = next(j for j in study_jobs(study, folder) if (j.variant, j.seed) == first)
    weights = Path(job.stages[-1]["out"]) / "final"
    if weights.is_dir():  # ground truth and prediction of the last model, first seed, on the test faces
        model, _ = load_model(weights)
        cfg = load_config(configs / "bn.toml", [f"data.root={synth}", "data.train.0.split=test"])
        (test_set,) = build_datasets(cfg.data, cfg.data.train, train=False, image_size=cfg.model.input_size).values()
        result = evaluate(model, test_set, normalizer=args.normalizer)
        overlay = _overlay(result, test_set, out / "overlay_cnt_sepbn.png")
    atomic_write_text(out / "results.json", json.dumps({
        "seeds": list(study.seeds), "normalizer": entry.get("normalizer"), "table": str(folder / "table.json"),
        "results": {v: {"faces": entry.get("faces"), "seeds": row["n"],
                        **{k: row[k]["mean"] for k in table["metrics"] if k in row},
                        **{f"{k}_sd": row[k]["sd"] for k in table["metrics"] if k in row}}
                    for v, row in entry["variants"].items()},
        "verdicts": verdicts,
    }, indent=2))

    print(f"\nSynthFaces 300w68 test split, {entry.get('normalizer')}; mean ± sd over seeds {list(study.seeds)}")
    print(_table(table, dataset))
    print(f"\nAgainst {base} (same seed = same data order and augmentation draws; paired t-test over seeds):")
    for text in verdicts.values():
        print(f"  {text}")
    print(f"\nCED plot (mean over seeds): {ced}")
    if overlay is not None:
        print(f"overlay (green = ground truth, red = {first[0]}, seed {first[1]}): {overlay}")
    print(f"full table with CIs and per-face tests: {folder / 'table.md'}; numbers: {out / 'results.json'}; "
          f"total {time.perf_counter() - t_start:.0f} s")
    if failed:
        print(f"sepbn demo: {len(failed)} runs did not finish: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
