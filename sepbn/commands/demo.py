"""``sepbn demo`` (``make demo``): BN vs SepBN vs CNT+SepBN on SynthFaces, end to end on a CPU.

1. Generates two SynthFaces sets with imbalanced head poses (15% left profile, 70% frontal,
   15% right profile): the *target* set annotated in 300w68 and an *extra* set (other faces)
   annotated in wflw98.
2. Trains a small VanillaCNN (width 0.25, 64 px crops) on the target set with BN
   (``configs/demo/bn.toml``) and with SepBN (``sepbn.toml``), and with CNT+SepBN: stage 1 on
   target + extra with one head per protocol (``cnt_stage1.toml``), stage 2 on the target with
   the 300w68 head and backbone lr 1e-7 (``cnt_stage2.toml``).
3. Evaluates the three on the target test split and prints one table (overall and
   per-sub-domain NME, FR@10%, AUC@10%), the paths of a CED plot and of an overlay image.

The numbers are whatever this short run gives: a sanity check of the pipeline, not the paper.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..io import atomic_write_bytes, atomic_write_text

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "demo"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output folder")
    parser.add_argument("--num-target", type=int, default=500, help="faces in the 300w68 target set (80%% train)")
    parser.add_argument("--num-extra", type=int, default=1000, help="faces in the wflw98 extra set (80%% train)")
    parser.add_argument("--epochs", type=int, default=None, help="override every config's epoch count")
    parser.add_argument("--configs", default=str(CONFIGS), help="folder of the demo configs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key in every demo config (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--normalizer", default="box",
                        help="NME normaliser of the 300w68 protocol (default: the landmark box, sqrt(w*h); "
                             "inter-ocular distances collapse on profile faces)")


def _overlay(result, dataset, path: Path, count: int = 6) -> Path:
    """Ground truth (green) and prediction (red) on test faces, worst domain first, side by side."""
    import cv2
    import numpy as np

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


def _table(rows: dict[str, dict]) -> str:
    domains = list(next(iter(rows.values())).get("domains", {}))
    head = f"{'model':<16}{'NME %':>8}{'FR@10 %':>9}{'AUC@10':>8}" + "".join(f"{'NME ' + d:>20}" for d in domains)
    lines = [head, "-" * len(head)]
    for name, s in rows.items():
        line = f"{name:<16}{100 * s['nme']:>8.2f}{100 * s['fr@10']:>9.2f}{100 * s['auc@10']:>8.2f}"
        line += "".join(f"{100 * s['domains'][d]['nme']:>20.2f}" for d in domains)
        lines.append(line)
    counts = next(iter(rows.values())).get("domains", {})
    lines.append(f"{'test faces':<16}{next(iter(rows.values()))['faces']:>8}{'':>17}"
                 + "".join(f"{counts[d]['faces']:>20}" for d in domains))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..data.synth import generate
    from ..errors import UsageError
    from ..evaluation.evaluate import evaluate
    from ..evaluation.metrics import normalizer_label, plot_ced
    from ..checkpoint import load_model
    from ..train.data import build_datasets
    from ..train.loop import train

    out = Path(args.out)
    configs = Path(args.configs)
    if not (configs / "bn.toml").is_file():
        raise UsageError(f"{configs}: demo configs not found (run from the repository or give --configs)")
    t_start = time.perf_counter()
    synth = out / "synth"
    for name, protocol, num, seed in (("target", "300w68", args.num_target, args.seed + 1),
                                      ("extra", "wflw98", args.num_extra, args.seed + 2)):
        if not (synth / name / "synth.json").is_file():
            generate(synth / name, [protocol], num, seed=seed, size=128)
    t_data = time.perf_counter() - t_start
    print(f"SynthFaces generated in {synth} ({t_data:.0f} s)")

    common = [f"data.root={synth}", f"train.seed={args.seed}", *args.overrides]

    def epochs(n: int | None) -> list[str]:  # a shorter run keeps the schedules' proportions
        if n is None:
            return []
        return [f"schedule.epochs={n}", f"schedule.warmup_epochs={n // 10}", f"schedule.tau_epochs={max(n // 3, 1)}"]

    def cfg(name: str, *extra: str):
        return load_config(configs / f"{name}.toml", common + epochs(args.epochs) + list(extra))

    timings = {}
    runs = {"BN": ("bn",), "SepBN": ("sepbn",)}
    for label, (name,) in runs.items():
        t0 = time.perf_counter()
        train(cfg(name), out / name)
        timings[label] = time.perf_counter() - t0
    t0 = time.perf_counter()
    train(cfg("cnt_stage1"), out / "cnt_stage1")
    stage2 = [] if args.epochs is None else epochs(max(args.epochs // 3, 1)) + ["schedule.tau_epochs=1"]
    train(cfg("cnt_stage2", f"train.init_from={out / 'cnt_stage1' / 'last.pt'}", *stage2), out / "cnt_stage2")
    timings["CNT+SepBN"] = time.perf_counter() - t0

    test_cfg = load_config(configs / "bn.toml", [f"data.root={synth}", "data.train.0.split=test"])
    (test_set,) = build_datasets(test_cfg.data, test_cfg.data.train, train=False,
                                 image_size=test_cfg.model.input_size).values()
    results, summaries = {}, {}
    for label, folder in (("BN", "bn"), ("SepBN", "sepbn"), ("CNT+SepBN", "cnt_stage2")):
        model, _ = load_model(out / folder / "final")
        results[label] = evaluate(model, test_set, name=label, normalizer=args.normalizer)
        summaries[label] = results[label].summary
    ced = plot_ced({k: r.errors for k, r in results.items()}, 0.10, out / "ced.png",
                   title="SynthFaces 300w68 test", xlabel=normalizer_label("300w68", args.normalizer))
    overlay = _overlay(results["CNT+SepBN"], test_set, out / "overlay_cnt_sepbn.png")
    atomic_write_text(out / "results.json", json.dumps({"results": summaries, "train_seconds": timings}, indent=2))

    print(f"\nSynthFaces 300w68 test split, {normalizer_label('300w68', args.normalizer)}; "
          f"train seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    print(_table(summaries))
    print(f"\nCED plot: {ced}\noverlay (green = ground truth, red = CNT+SepBN): {overlay}\n"
          f"numbers: {out / 'results.json'}; total {time.perf_counter() - t_start:.0f} s")
    return 0
