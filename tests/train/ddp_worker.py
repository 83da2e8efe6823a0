"""A worker process for tests/train/test_distributed.py (run by torchrun, or started by hand with
RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT in its environment).

``ddp_worker.py session CONFIG.json OUT``: one process group, four ``train()`` runs of the config:
``OUT/sync`` (dist.sync_bn), ``OUT/nosync``, and ``OUT/resume`` (one step, then ``resume=True``);
each rank writes its step losses to ``OUT/rank<r>.json``.

``ddp_worker.py preempt CONFIG.json OUT``: a run stopped by SIGTERM on rank 1 only, then resumed (see preempt()).

``ddp_worker.py die|hang|nan|slow0 CONFIG.toml OUT``: ``sepbn train`` where rank 1 raises (die),
sleeps (hang) or gets a NaN loss (nan) at its second step, or rank 0 sleeps before its first
checkpoint (slow0). Extra arguments are passed to ``sepbn train``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path


def session(config: str, out: str) -> None:
    from sepbn.config import config_from_dict
    from sepbn.train.distributed import init_from_env, shutdown
    from sepbn.train.loop import train

    cfg = config_from_dict(json.loads(Path(config).read_text()))
    info = init_from_env(cfg.dist)
    synced, plain = dataclasses.replace(info, sync_bn=True), dataclasses.replace(info, sync_bn=False)
    first = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=1))
    losses = {
        "sync": train(cfg, Path(out) / "sync", dist=synced).losses,
        "nosync": train(cfg, Path(out) / "nosync", dist=plain).losses,
        "resume": train(first, Path(out) / "resume", dist=synced).losses
        + train(cfg, Path(out) / "resume", resume=True, dist=synced).losses,
    }
    Path(out, f"rank{info.rank}.json").write_text(json.dumps(losses))
    shutdown(info)


def preempt(config: str, out: str) -> None:
    """``OUT/full`` uninterrupted; ``OUT/cut``: rank 1 alone gets SIGTERM in step 1, then ``resume=True``.
    Each rank writes ``OUT/preempt<r>.json``: its losses, the step the cut run stopped at, the resumed losses."""
    import signal

    import sepbn.train.loop as loop
    from sepbn.config import config_from_dict
    from sepbn.train.distributed import init_from_env, shutdown
    from sepbn.train.preempt import Preempted

    cfg = config_from_dict(json.loads(Path(config).read_text()))
    info = init_from_env(cfg.dist)
    full = loop.train(cfg, Path(out) / "full", dist=info).losses
    real, calls = loop.branch_losses, [0]

    def branch_losses(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 1 and info.rank == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    loop.branch_losses = branch_losses
    try:
        loop.train(cfg, Path(out) / "cut", dist=info)
        stopped = None
    except Preempted as e:
        stopped = [e.step, e.signal_name]
    loop.branch_losses = real
    rest = loop.train(cfg, Path(out) / "cut", resume=True, dist=info).losses
    Path(out, f"preempt{info.rank}.json").write_text(json.dumps({"full": full, "stopped": stopped, "rest": rest}))
    shutdown(info)


def failing(mode: str, config: str, out: str, *extra: str) -> int:
    import sepbn.train.loop as loop
    from sepbn.cli import main

    if mode == "slow0" and os.environ["RANK"] == "0":
        save = loop.save_checkpoint

        def slow_save(*args, **kwargs):
            time.sleep(120)
            return save(*args, **kwargs)

        loop.save_checkpoint = slow_save
    elif mode != "slow0" and os.environ["RANK"] == "1":
        calls = [0]
        original = loop.branch_losses

        def branch_losses(*args, **kwargs):
            calls[0] += 1
            if calls[0] == 2:
                if mode == "hang":
                    time.sleep(120)
                if mode == "nan":
                    return {p: loss * float("nan") for p, loss in original(*args, **kwargs).items()}
                raise RuntimeError("injected failure on rank 1 at step 1")
            return original(*args, **kwargs)

        loop.branch_losses = branch_losses
    return main(["train", config, "--out", out, *extra])


if __name__ == "__main__":
    if sys.argv[1] == "session":
        session(*sys.argv[2:])
    elif sys.argv[1] == "preempt":
        preempt(*sys.argv[2:])
    else:
        sys.exit(failing(*sys.argv[1:]))
