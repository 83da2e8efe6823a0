"""``sepbn train CONFIG [--set key=value ...] [--out DIR] [--resume]``: single-dataset or CNT training.

The config file (TOML or JSON, see ``configs/``) is read by :func:`sepbn.config.load_config`;
``--set`` overrides any key (``--set optim.lr=2e-3 --set data.root=/data``). The resolved config
is printed, written to ``OUT/config.toml`` and stored in every checkpoint.

Several processes: ``torchrun --nproc_per_node N -m sepbn train CONFIG`` (docs/distributed.md);
rank 0 prints and writes, every rank reports its own failure with its rank.
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
    from ..train.distributed import (DistributedError, collective_failure, init_from_env, rank_tag, scaled_optim,
                                     shutdown)
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
    # under torchrun (WORLD_SIZE > 1): join the process group; otherwise one process, no torch.distributed
    try:
        dist = init_from_env(cfg.dist, cfg.train.device)
    except (DistributedError, ValueError) as e:
        print(f"sepbn train{rank_tag()}: {e}", file=sys.stderr)
        return 1
    prog = f"sepbn train{dist.tag}"
    if dist.world_size > 1 and dist.is_main:
        _, factor = scaled_optim(cfg.optim, cfg.train.batch_size, dist.world_size)
        print(f"distributed: {dist.world_size} processes ({dist.backend}) x batch {cfg.train.batch_size} = "
              f"effective batch {dist.world_size * cfg.train.batch_size}; learning rates x{factor:g} "
              f"(optim.lr_scaling={cfg.optim.lr_scaling!r}); sync_bn={cfg.dist.sync_bn}")
    try:
        result = train(cfg, out, resume=args.resume, dist=dist)
        dist.barrier("the end of training (rank 0 writes the final weights)")
    except NonFiniteLossError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        message = collective_failure(e, dist)
        if message is None:  # a bug or an unexpected failure: keep the traceback, say which rank
            if dist.world_size > 1:
                print(f"{prog}: {type(e).__name__}: {e}", file=sys.stderr)
            raise
        print(f"{prog}: {message}", file=sys.stderr)
        return 1
    finally:
        shutdown(dist)
    if not dist.is_main:
        return 0
    best = "" if result.best_nme is None else f", best validation NME {100 * result.best_nme:.2f}%"
    print(f"done: {result.step} steps, {result.epoch} epochs{best}; checkpoints in {out}")
    return 0
