"""First evidence on real faces: BN vs SepBN (and optionally CNT with MTFL) on the shared 300-W faces.

``--data DIR`` holds ``300w/`` (AFW + HELEN-train faces, 68 points) and optionally ``mtfl/``
(10,000 faces, 5 points). A seeded ``--val-fraction`` of the 300-W faces is held out for
validation (never trained on; the defaults give the project's fixed split, ``real_splits.py``).
The split is written as two generic CSV annotation lists under ``--out`` (they reference the original
images; nothing is copied). Each model is trained by ``sepbn train`` (its config written next to the
run folder) and evaluated on the held-out faces with the
inter-ocular NME (outer eye corners 36, 45). With ``--cnt``, a third model is trained by CNT:
stage 1 on 300-W + MTFL (one head each, faces drawn in proportion to size), stage 2 on 300-W with
the backbone learning rate at 1e-7.

    python benchmarks/real_300w.py --data ../shared/data --epochs 40 --width 0.25 --size 64 [--cnt]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from sepbn.assembly import build_datasets
from sepbn.checkpoint import load_model
from sepbn.cli import main as sepbn_main
from sepbn.config import format_config, load_config
from sepbn.evaluation.evaluate import evaluate

from real_splits import write_split  # noqa: E402  (benchmarks/ is the script's folder)


def split_300w(data: Path, out: Path, val_fraction: float, seed: int, limit: int | None) -> dict[str, Path]:
    """The project's fixed 300-W split (``real_splits.py``): ``{"train": csv, "val": csv}`` under ``out``."""
    return write_split("300w", data, out, val_fraction, seed, limit)


def train(overrides: list[str], out: Path) -> None:
    """``sepbn train`` on the default config with ``overrides``; its config is kept as ``out``.toml."""
    config = out.with_suffix(".toml")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(format_config(load_config(None, overrides)))
    code = sepbn_main(["train", str(config), "--out", str(out)])
    if code:
        raise SystemExit(f"sepbn train {config} failed (exit {code})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with 300w/ (and mtfl/ for --cnt)")
    ap.add_argument("--out", default="runs/real_300w")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--optim", default="adamw", choices=["adamw", "sgd"],
                    help="adamw (default, converges in a short CPU run) or the paper's sgd")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--val-fraction", type=float, default=0.15)
    ap.add_argument("--limit", type=int, default=None, help="use only this many 300-W faces (quick runs)")
    ap.add_argument("--mtfl-limit", type=int, default=2000, help="MTFL faces used by --cnt")
    ap.add_argument("--cnt", action="store_true", help="also train CNT (+SepBN) with MTFL")
    ap.add_argument("--norms", nargs="+", default=["bn", "sepbn"])
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    data, out = Path(args.data).resolve(), Path(args.out)
    csv = split_300w(data, out, args.val_fraction, args.seed, args.limit)
    e = args.epochs
    base = [
        f"model.width={args.width}", f"model.input_size={args.size}", f"train.batch_size={args.batch}",
        f"optim.name={args.optim}", f"optim.lr={args.lr}", "schedule.min_lr=1e-5",
        f"optim.weight_decay={1e-4 if args.optim == 'adamw' else 5e-4}", f"schedule.epochs={e}", f"schedule.warmup_epochs={e // 10}",
        f"schedule.tau_epochs={max(e // 4, 1)}", f"data.workers={args.workers}", f"train.seed={args.seed}",
        "train.progress=false", f"train.val_every={max(e // 4, 1)}", f"train.save_every={e}",
        f'data.val=[{{"fmt": "csv", "source": "{csv["val"]}", "images": "/", "protocol": "300w68", '
        f'"box_scale": 1.25, "name": "300w-val"}}]',
    ]
    w300 = f'{{"fmt": "csv", "source": "{csv["train"]}", "images": "/", "protocol": "300w68", "box_scale": 1.25, "name": "300w"}}'
    mtfl = (f'{{"fmt": "mtfl", "source": "{data / "mtfl" / "training.txt"}", "images": "{data / "mtfl"}", '
            f'"protocol": "5pt", "limit": {args.mtfl_limit}, "name": "mtfl"}}')
    runs = {norm: base + [f"model.norm={norm}", f"data.train=[{w300}]", f"name=real-300w-{norm}"] for norm in args.norms}
    results, timings = {}, {}
    for norm, overrides in runs.items():
        t0 = time.perf_counter()
        train(overrides, out / norm)
        timings[norm] = time.perf_counter() - t0
    if args.cnt:
        t0 = time.perf_counter()
        n_train = sum(1 for _ in open(csv["train"])) - 1
        s1 = base + ["model.norm=sepbn", f"data.train=[{w300}, {mtfl}]", f"data.epoch_size={2 * n_train}",
                     "name=real-300w-cnt-stage1"]
        train(s1, out / "cnt_stage1")
        s2 = base + ["model.norm=sepbn", f"data.train=[{w300}]", "optim.backbone_lr=1e-7",
                     f"train.init_from={out / 'cnt_stage1' / 'last.pt'}", f"schedule.epochs={max(e // 4, 2)}",
                     "schedule.warmup_epochs=0", "schedule.tau_start=1.0", "schedule.tau_epochs=1",
                     "name=real-300w-cnt-stage2"]
        train(s2, out / "cnt_sepbn")
        timings["cnt_sepbn"] = time.perf_counter() - t0
    cfg = load_config(None, base)
    (val_set,) = build_datasets(cfg.data, cfg.data.val, train=False, image_size=args.size).values()
    for name in timings:
        model, _ = load_model(out / name / "final")
        results[name] = evaluate(model, val_set, name=name).summary
    info = f"{platform.machine()} CPU, {os.cpu_count()} cores"
    print(f"\n300-W held-out faces: {len(val_set)}; {results[next(iter(results))]['normalizer']}; machine: {info}")
    print(f"{'model':<12}{'NME %':>8}{'FR@10 %':>9}{'AUC@10':>8}{'train s':>9}")
    for name, s in results.items():
        print(f"{name:<12}{100 * s['nme']:>8.2f}{100 * s['fr@10']:>9.2f}{100 * s['auc@10']:>8.2f}{timings[name]:>9.0f}")
    (out / "results.json").write_text(json.dumps({"args": vars(args), "machine": info, "results": results,
                                                  "train_seconds": timings}, indent=2))


if __name__ == "__main__":
    main()
