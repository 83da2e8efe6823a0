"""``sepbn train CONFIG [--set key=value ...] [--out DIR] [--resume]``: single-dataset or CNT training.

The config file (TOML or JSON, see ``configs/``) is read by :func:`sepbn.config.load_config`;
``--set`` overrides any key (``--set optim.lr=2e-3 --set data.root=/data``). The resolved config
is printed, written to ``OUT/config.toml`` and stored in every checkpoint.

Several processes: ``torchrun --nproc_per_node N -m sepbn train CONFIG`` (docs/distributed.md);
rank 0 prints and writes, every rank reports its own failure with its rank.

Resuming checks the run's config (``--allow-changed KEY,...`` accepts named differences) and one
process writes a run folder at a time (docs/training.md).

Stopping: SIGTERM, SIGINT (Ctrl-C) or SIGUSR1 finish the current step, save ``OUT/last.pt``, print
the command that resumes, and exit with status 75 (a second Ctrl-C quits at once); docs/training.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from ..assembly import load_training_config
from ..errors import EXPECTED, report
from ..train.distributed import DistributedError, collective_failure, init_from_env, scaled_optim, shutdown
from ..train.loop import train
from ..train.preempt import Preempted


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config (.toml or .json)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set optim.lr=2e-3 (repeatable)")
    parser.add_argument("--out", default=None, help="run folder (default: runs/<config name>)")
    parser.add_argument("--data-root", default=None, help="shorthand for --set data.root=DIR")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                        help="continue from OUT/last.pt (or the given checkpoint)")
    parser.add_argument("--allow-changed", default="", metavar="KEY,...",
                        help="with --resume: accept these config keys (or tables) differing from the run's; "
                             "recorded in OUT/resume.csv")


def resume_command(args: argparse.Namespace, out) -> str:
    """The command line that continues this run (under torchrun: the same launcher in front of it)."""
    words = ["sepbn", "train", args.config, "--out", str(out)]
    for o in args.overrides:
        words += ["--set", o]
    if args.data_root:
        words += ["--data-root", args.data_root]
    if args.allow_changed:
        words += ["--allow-changed", args.allow_changed]
    return " ".join(shlex.quote(w) for w in words + ["--resume"])


def leave_at_once(prog: str, exc: BaseException, debug: bool) -> NoReturn:
    """End a failing rank of a multi-process run: its message (a traceback for a bug), then
    ``os._exit`` without destroying the process group. The other ranks may still be sending to
    this one, and tearing gloo down under them can abort the process (SIGABRT, "terminate called
    without an active exception") instead of exiting 1; checkpoints and logs are closed by then."""
    code = int(getattr(exc, "exit_code", 1))
    if debug or not isinstance(exc, EXPECTED):  # a bug: its traceback, then which rank
        traceback.print_exception(exc)
        print(f"{prog}: {type(exc).__name__}: {exc}", file=sys.stderr)
    else:
        report(prog, exc)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run(args: argparse.Namespace) -> int:
    cfg = load_training_config(args.config, args.overrides, args.data_root)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    # under torchrun (WORLD_SIZE > 1): join the process group; otherwise one process, no torch.distributed
    dist = init_from_env(cfg.dist, cfg.train.device)
    prog = f"sepbn train{dist.tag}"
    if dist.world_size > 1 and dist.is_main:
        _, factor = scaled_optim(cfg.optim, cfg.train.batch_size, dist.world_size)
        print(f"distributed: {dist.world_size} processes ({dist.backend}) x batch {cfg.train.batch_size} = "
              f"effective batch {dist.world_size * cfg.train.batch_size}; learning rates x{factor:g} "
              f"(optim.lr_scaling={cfg.optim.lr_scaling!r}); sync_bn={cfg.dist.sync_bn}")
    try:
        allow = [k.strip() for k in args.allow_changed.split(",") if k.strip()]
        result = train(cfg, out, resume=args.resume, dist=dist, allow_changed=allow)
        dist.barrier("the end of training (rank 0 writes the final weights)")
    except Preempted as e:
        if dist.is_main:
            print(f"{prog}: {e}\nresume with: {resume_command(args, out)}", file=sys.stderr)
        return e.exit_code
    except Exception as e:
        if dist.world_size > 1:
            message = collective_failure(e, dist)  # a peer died or hangs: say so in one line
            leave_at_once(prog, e if message is None else DistributedError(message), getattr(args, "debug", False))
        raise
    finally:
        shutdown(dist)
    if not dist.is_main:
        return 0
    best = "" if result.best_nme is None else f", best validation NME {100 * result.best_nme:.2f}%"
    print(f"done: {result.step} steps, {result.epoch} epochs{best}; checkpoints in {out}")
    return 0
