"""``sepbn eval --checkpoint CKPT --data FMT:SOURCE [...] [--json FILE] [--ced FILE]``.

Prints a table (NME, FR@8/10%, AUC@8/10% with the normaliser named; WFLW subsets and
per-sub-domain NME when the data has them) and optionally writes the same numbers as JSON.
``--branch`` chooses how brute-force SepBN networks are tested (default: each face's best branch).
``--data`` takes ``FMT:SOURCE`` (e.g. ``wflw:WFLW/list_98pt_rect_attr_test.txt``); ``--split``,
``--images``, ``--box-scale`` and ``--protocol`` apply to every ``--data``. ``--config`` instead
evaluates the ``[[data.val]]`` datasets of an experiment config.
"""

from __future__ import annotations

import argparse
import json

from ..assembly import build_datasets, checkpoint_entries, dataset_names, load_run_config, resolve_device
from ..checkpoint import checkpoint_protocols, load_model
from ..config import DataConfig
from ..errors import UsageError
from ..evaluation.evaluate import evaluate
from ..io import atomic_write_text


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="training checkpoint (.pt) or weights folder")
    parser.add_argument("--data", action="append", default=[], metavar="FMT:SOURCE",
                        help="annotations to evaluate on (repeatable)")
    parser.add_argument("--config", default=None, help="evaluate the [[data.val]] datasets of this config")
    parser.add_argument("--split", default=None, help="split of the format (e.g. 300-W common)")
    parser.add_argument("--images", default=None, help="image root of the annotation file")
    parser.add_argument("--protocol", default=None, help="protocol of the data (default: the checkpoint's head)")
    parser.add_argument("--box-scale", type=float, default=None, help="crop enlargement (default: training's)")
    parser.add_argument("--normalizer", default=None, help="NME normaliser name (default: the paper's)")
    parser.add_argument("--branch", default=None, metavar="best|label|K",
                        help="brute-force SepBN networks: keep each face's best branch (default, the paper's "
                             "test), route by its domain label, or use branch K for every face")
    parser.add_argument("--flip", action="store_true",
                        help="average each face's prediction with the one on its mirror image (2x the cost)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    parser.add_argument("--ced", default=None, help="write the CED plot (PNG) to this file")


def _entries(args, meta):
    if args.config:
        cfg = load_run_config(args.config)
        return cfg.data, list(cfg.data.val)
    protocols = [args.protocol] if args.protocol else []
    return DataConfig(), checkpoint_entries(args.data, protocols, checkpoint_protocols(meta), meta.get("config"),
                                            split=args.split, images=args.images, box_scale=args.box_scale)


def format_results(results: list[dict]) -> str:
    """A readable table: one row per dataset, then subsets and domains."""
    lines = []
    head = f"{'dataset':<24}{'faces':>7}{'NME %':>9}{'FR@8 %':>9}{'FR@10 %':>9}{'AUC@8':>8}{'AUC@10':>8}  normaliser"
    lines.append(head)
    for s in results:
        lines.append(_row(s["dataset"], s) + f"  {s['normalizer']}")
        for group in ("subsets", "domains"):
            for k, v in s.get(group, {}).items():
                if group == "subsets" and k == "test":
                    continue
                lines.append(_row(f"  {group[:-1] if group == 'domains' else 'subset'} {k}", v))
        if "branch" in s:
            lines.append(f"  brute-force branch: {s['branch']}; faces per branch {s['branch_counts']}")
    return "\n".join(lines)


def _row(name: str, s: dict) -> str:
    # WFLW subset rows carry FR/AUC at the largest threshold only ("fr", "auc")
    cells = [(s.get("fr@8"), 9), (s.get("fr@10", s.get("fr")), 9), (s.get("auc@8"), 8), (s.get("auc@10", s.get("auc")), 8)]
    text = "".join(f"{'-':>{w}}" if v is None else f"{100 * v:>{w}.2f}" for v, w in cells)
    return f"{name:<24}{s['faces']:>7}{100 * s['nme']:>9.2f}" + text


def run(args: argparse.Namespace) -> int:
    # torch and the data stack load when the command runs, not when the CLI builds its parser

    if not args.data and not args.config:
        raise UsageError("give --data FMT:SOURCE, or --config with [[data.val]]")
    model, meta = load_model(args.checkpoint)
    data_cfg, entries = _entries(args, meta)
    if not entries:
        raise UsageError(f"{args.config}: no [[data.val]] datasets to evaluate")
    device = resolve_device(args.device)
    model.to(device)
    size = int(meta["model_args"].get("input_size", 128))
    datasets = build_datasets(data_cfg, entries, train=False, image_size=size)
    results = []
    for name, (key, ds) in zip(dataset_names(entries), datasets.items()):
        ced = args.ced if args.ced and len(datasets) == 1 else (f"{args.ced}.{name}.png" if args.ced else None)
        res = evaluate(model, ds, normalizer=args.normalizer, batch_size=args.batch_size, device=device,
                       ced_path=ced, name=name, branch=args.branch, flip=args.flip)
        results.append(res.summary)
    print(format_results(results))
    if args.json:
        atomic_write_text(args.json, json.dumps({"checkpoint": str(args.checkpoint), "results": results}, indent=2))
        print(f"results written to {args.json}")
    return 0
