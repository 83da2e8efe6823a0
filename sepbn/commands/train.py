"""``sepbn train CONFIG [--set key=value ...] [--out DIR] [--resume]``: single-dataset or CNT training.

The config file (TOML or JSON, see ``configs/``) is read by :func:`sepbn.config.load_config`;
``--set`` overrides any key (``--set optim.lr=2e-3 --set data.root=/data``). The resolved config
is printed, written to ``OUT/config.toml`` and stored in every checkpoint.
"""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config (.toml or .json)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set optim.lr=2e-3 (repeatable)")
    parser.add_argument("--out", default=None, help="run folder (default: runs/<config name>)")
    parser.add_argument("--data-root", default=None, help="shorthand for --set data.root=DIR")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                        help="continue from OUT/last.pt (or the given checkpoint)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..config import ConfigError, load_config
    from ..train.loop import train
    from ..train.nonfinite import NonFiniteLossError

    overrides = list(args.overrides) + ([f"data.root={args.data_root}"] if args.data_root else [])
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as e:
        print(f"sepbn train: {e}", file=sys.stderr)
        return 2
    if not cfg.data.train:
        print("sepbn train: the config lists no training dataset ([[data.train]])", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    try:
        result = train(cfg, out, resume=args.resume)
    except NonFiniteLossError as e:
        print(f"sepbn train: {e}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as e:
        print(f"sepbn train: {e}", file=sys.stderr)
        return 1
    best = "" if result.best_nme is None else f", best validation NME {100 * result.best_nme:.2f}%"
    print(f"done: {result.step} steps, {result.epoch} epochs{best}; checkpoints in {out}")
    return 0
