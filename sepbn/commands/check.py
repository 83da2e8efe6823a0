"""``sepbn check CONFIG [--set key=value ...] [--out DIR]``: what ``sepbn train`` checks, without training.

Validates the config (every key and value, the initial checkpoint, batch against epoch size), reads
every training and validation dataset and runs the pre-flight check of their images
(:mod:`sepbn.data.preflight`), then prints one summary per dataset: faces, faces skipped or unusable
by cause, image sizes, box sizes and landmark points outside the image. The image cache is
``OUT/preflight.json``, the one ``sepbn train`` with the same ``--out`` reuses.

Exit status 0 when training could start (problems only in datasets with ``skip_invalid``), 1 when
some face stops it (each listed as ``file: problem``), 2 for an invalid config.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..assembly import load_training_config
from ..checkpoint import load_checkpoint
from ..config import ConfigError
from ..train.data import check_data


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config (.toml or .json)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, as for sepbn train (repeatable)")
    parser.add_argument("--out", default=None, help="run folder whose image cache to use (default: runs/<config name>)")
    parser.add_argument("--data-root", default=None, help="shorthand for --set data.root=DIR")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: data.workers)")


def run(args: argparse.Namespace) -> int:
    cfg = load_training_config(args.config, args.overrides, args.data_root)
    if cfg.train.init_from:

        load_checkpoint(cfg.train.init_from)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    workers = cfg.data.workers if args.workers is None else args.workers
    checked = check_data(cfg.data, cache=out / "preflight.json", workers=workers)
    for report in checked.reports:
        print("\n".join(report.lines()))
        if report.skip_invalid:
            for p in report.problems:
                print(f"    skipped {p}")
    train_faces = sum(len(r) for r in checked.records["train"].values())
    error = checked.error()
    if error is not None:
        raise error
    epoch = cfg.data.epoch_size or train_faces
    if epoch < cfg.train.batch_size:
        raise ConfigError(f"{args.config}: an epoch of {epoch} faces is smaller than train.batch_size "
                          f"{cfg.train.batch_size}")
    print(f"{args.config}: ready to train ({train_faces} training faces)")
    return 0
