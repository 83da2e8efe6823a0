"""The training loop: single-dataset training is Cross-protocol Network Training with one key.

Paper section IV (CNT, Fig. 5): faces are drawn from every training dataset with probability
proportional to its size; each face goes only through its own protocol's branch; each branch
has its own L1 loss and the branch losses are summed::

    loss = sum_p  mean_{faces i of protocol p, points j}  |f_p(x_i)_j - y_ij|_1

Stage 2 is the same loop with one dataset, ``train.init_from`` pointing at a stage-1
checkpoint (heads of other protocols are dropped) and ``optim.backbone_lr`` = 1e-7.
Section V-A: the learning rate follows ``lr_at`` every step; the temperature of every SepBN
softmax follows ``tau_at`` every epoch.

Checkpoints: ``last.pt`` after every ``save_every`` epochs, every ``save_every_minutes`` of wall
time (mid-epoch) and when the run stops; ``best.pt`` and ``best/`` (safetensors + config.json)
when the mean validation NME improves; ``final/`` weights at the end. Resuming restores model,
optimiser, step, epoch and RNG states, and re-enters an interrupted epoch by replaying its sampler
up to the saved batch, so the losses equal those of an uninterrupted run. A stop signal ends the
run after the current step with a mid-epoch ``last.pt`` (:mod:`sepbn.train.preempt`).

Reading order: :func:`train` (the run), :func:`_epoch` (one epoch: steps, validation, checkpoint),
:func:`_train_step` (one optimiser step); the setup is :func:`sepbn.train.setup.setup`.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..checkpoint import rng_state, save_checkpoint, save_weights, set_rng_state
from ..config import Config, config_to_dict
from ..data.records import ImageReadError
from ..evaluation.evaluate import evaluate
from ..io import WriteError, atomic_write_text
from ..nn import domains, set_temperature
from .distributed import DistInfo
from .logger import RunLogger
from .nonfinite import NonFiniteLossError, diagnose
from .optim import set_lr
from .preempt import Preempted, SaveClock, StopSignals, checkpoint_write_failed
from .resume import check_resume_config, resume_checkpoint
from .runlock import RunLock
from .setup import Run, init_from_checkpoint, resolve_device, seed_everything, setup, write_config

__all__ = ["train", "TrainResult", "branch_losses", "resolve_device", "init_from_checkpoint"]


@dataclass
class TrainResult:
    out_dir: Path
    step: int
    epoch: int
    losses: list[float] = field(default_factory=list)  # training loss of every step of this process
    best_nme: float | None = None
    val: list[dict] = field(default_factory=list)  # one entry per validation
    skipped: dict = field(default_factory=dict)  # faces left out by the pre-flight check: {role: {dataset: {cause: n}}}


_clock = time.monotonic  # the wall clock of train.save_every_minutes (tests replace it)


def branch_losses(outputs: dict, targets: dict, loss_fn) -> dict[str, torch.Tensor]:
    """One loss per protocol branch present in the batch (paper Fig. 5)."""
    return {p: loss_fn(outputs[p], t) for p, t in targets.items()}


def _nme_of(model, datasets: dict, cfg: Config, device) -> dict[str, float]:

    return {
        name: evaluate(model, ds, batch_size=max(cfg.train.batch_size, 32), device=device).summary["nme"]
        for name, ds in datasets.items()
    }


def _progress(total: int, epoch: int, epochs: int, *, enabled: bool):

    return tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", disable=not enabled, leave=False, dynamic_ncols=True)


@dataclass
class _Position:
    """Where the run stands: ``skip`` batches of ``epoch`` are done (a resumed mid-epoch checkpoint)."""

    step: int = 0
    epoch: int = 0
    skip: int = 0
    best: float = math.inf
    rng: dict | None = None  # the state to continue from once the ``skip`` replayed draws are done


def _resume(run: Run, path: Path, ckpt: dict) -> _Position:
    """Model, optimiser, scaler, position and RNG states of the checkpoint ``ckpt`` read from ``path``."""
    if ckpt.get("world_size", 1) != run.dist.world_size:  # other shares, steps per epoch and LR schedule
        raise ValueError(f"{path} was written by a run of {ckpt.get('world_size', 1)} processes; "
                         f"resume it with as many (got {run.dist.world_size})")
    try:
        run.model.load_state_dict(ckpt["model"])
    except RuntimeError as e:  # torch lists every mismatched tensor on many lines
        raise ValueError(f"{path}: its weights do not fit this config's network "
                         f"({str(e).strip().splitlines()[-1].strip()[:160]})") from None
    run.optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    pos = _Position(step=ckpt["step"], epoch=ckpt["epoch"], skip=ckpt["batch_in_epoch"],
                    best=ckpt.get("best_nme", math.inf), rng=ckpt["rng"])
    # mid-epoch: replay the epoch's draws from its start state, then continue from the saved state
    set_rng_state(ckpt["rng_epoch"] if pos.skip else ckpt["rng"])
    if run.dist.is_main and run.cfg.train.progress:
        print(f"resumed from {path}: epoch {pos.epoch}, step {pos.step}")
    return pos


def _save(run: Run, pos: _Position, epoch: int, batch_in_epoch: int, epoch_rng: dict, metrics: dict,
          tau: float, name: str = "last.pt") -> None:
    """Write a training checkpoint (rank 0); a failed write (a full disk) stops the run, previous file intact."""
    state = {
        "model": run.model.state_dict(),
        "model_args": run.model.model_args,
        "protocols": {p: proto.to_dict() for p, proto in run.protocols.items()},
        "config": config_to_dict(run.cfg),
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
        "scheduler": {"kind": "warmup-cosine", "step": pos.step, "total_steps": run.total_steps,
                      "warmup_steps": run.warmup_steps, "lr": run.lr_of(min(pos.step, run.total_steps - 1))},
        "epoch": epoch, "batch_in_epoch": batch_in_epoch, "step": pos.step, "world_size": run.dist.world_size,
        "rng": rng_state(), "rng_epoch": epoch_rng,
        "temperature": tau, "best_nme": pos.best, "metrics": metrics,
    }
    try:
        save_checkpoint(run.out / name, state)
    except WriteError as e:
        raise checkpoint_write_failed(e, run.out) from e


def _export(run: Run, folder: str, metrics: dict, epoch: int, step: int, tau: float) -> None:
    """Deployment weights (safetensors + config.json) into ``out/folder``."""
    state = run.model.state_dict()
    try:
        save_weights(run.out / folder, state, {
            "model_args": run.model.model_args,
            "protocols": {p: proto.to_dict() for p, proto in run.protocols.items()},
            "config": config_to_dict(run.cfg), "epoch": epoch, "step": step,
            "temperature": tau, "metrics": metrics,
        })
    except WriteError as e:
        raise checkpoint_write_failed(e, run.out) from e


def _batches(loader):
    """The loader's batches; an image that fails to load in a worker process is reported as one line.

    Closing the generator (or an error) shuts the worker processes down at once: they ignore SIGTERM
    (`ignore_stop_signals`), so a worker left to the garbage collector would block multiprocessing's
    exit handler, which terminates and joins them, forever.
    """
    it = iter(loader)
    try:
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except ImageReadError as e:  # a worker re-raises it with its traceback in the message
                raise ImageReadError(str(e).strip().splitlines()[-1].split("ImageReadError: ")[-1]) from None
            yield batch
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)  # multi-process iterators only
        if shutdown is not None:
            shutdown()


def _train_step(run: Run, batch: dict, step: int, tau: float) -> tuple[float, dict, dict]:
    """One optimiser step on ``batch``: ``(loss, branch losses, branch weights)``."""
    lr = run.lr_of(step)
    set_lr(run.optimizer, lr)
    images = batch["image"].to(run.device, non_blocking=True)
    if run.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    targets = {p: t.to(run.device, non_blocking=True) for p, t in batch["target"].items()}
    # brute-force SepBN routes each face by its domain label (paper III-A); others ignore it
    routing = domains(batch["domain"]) if run.brute_force else contextlib.nullcontext()
    with routing, torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
        outputs = run.net(images, protocols=batch["protocol"])
    losses = branch_losses(outputs, targets, run.loss_fn)
    # one mean per protocol over the global batch (several ranks: see DistInfo.branch_weights)
    weights = run.dist.branch_weights({p: len(t) for p, t in targets.items()}, list(run.protocols), run.device)
    loss = sum(losses[p] * weights[p] for p in losses)
    loss_value = loss.item()
    if not math.isfinite(loss_value):
        def rerun(probe, images=images, protos=batch["protocol"]):
            return probe(images, protocols=protos)
        # with synchronised BN a re-run would wait for ranks that are elsewhere: statistics only
        raise NonFiniteLossError(diagnose(run.model, step, loss_value, None if run.dist.forward_syncs else rerun))
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if run.cfg.optim.grad_clip:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.optim.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return loss_value, losses, weights


def _epoch(run: Run, pos: _Position, epoch: int, stop: StopSignals, clock: SaveClock, logger,
           result: TrainResult) -> str | None:
    """Train one epoch (from batch ``pos.skip``), validate and checkpoint it. Returns why the run must
    stop now ("max_steps", or the stop signal's name) or None."""
    cfg, tc, dist = run.cfg, run.cfg.train, run.dist
    tau = run.tau_of(epoch)
    set_temperature(run.model, tau)
    run.sampler.set_epoch(epoch)
    run.mixed.set_epoch(epoch)
    epoch_rng = rng_state()  # a resumed epoch starts from the restored epoch-start state
    run.model.train()
    bar = _progress(run.steps_per_epoch, epoch, cfg.schedule.epochs, enabled=dist.is_main and tc.progress)
    bar.update(pos.skip)
    t0, seen, batch_in_epoch, halt = time.perf_counter(), 0, 0, None
    with contextlib.closing(_batches(run.loader)) as batches:  # an error mid-epoch stops the workers too
        for batch_in_epoch, batch in enumerate(batches):
            if batch_in_epoch < pos.skip:
                continue  # replayed draws of an interrupted epoch
            if pos.skip:
                set_rng_state(pos.rng)
                pos.skip = 0
            lr = run.lr_of(pos.step)
            loss_value, losses, weights = _train_step(run, batch, pos.step, tau)
            pos.step += 1
            seen += batch["image"].shape[0]
            result.losses.append(loss_value)
            ips = seen * dist.world_size / max(time.perf_counter() - t0, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", tau=f"{tau:.1f}", img_s=f"{ips:.0f}")
            if pos.step % tc.log_every == 0:
                logger.log("train", {
                    "step": pos.step, "epoch": epoch,  # losses over the global batch (all ranks)
                    **dist.global_losses(loss_value, losses, weights, list(run.protocols), run.device),
                    "lr": lr, "tau": tau, "images_per_s": ips,
                }, pos.step)
            if tc.max_steps is not None and pos.step >= tc.max_steps:
                halt = "max_steps"
            else:
                halt = stop.agreed(dist, run.device)  # every rank stops at the same step
            if halt:
                break
            if dist.is_main and clock.due() and batch_in_epoch + 1 < run.steps_per_epoch:
                _save(run, pos, epoch, batch_in_epoch + 1, epoch_rng, {}, tau)  # bounded loss on a kill -9
                clock.reset()
    bar.close()
    finished = halt is None or batch_in_epoch + 1 == run.steps_per_epoch
    done_epochs = epoch + 1 if finished else epoch
    preempted = halt not in (None, "max_steps")
    metrics = {}
    # a preempted run saves at once (its grace time is short); the resumed run goes on with the next epoch
    if (finished and not preempted and run.val_sets
            and ((epoch + 1) % tc.val_every == 0 or epoch + 1 == cfg.schedule.epochs)):
        metrics = _validate(run, pos, epoch, done_epochs, epoch_rng, tau, logger, result)
    if dist.is_main and (halt or not finished or done_epochs % tc.save_every == 0
                         or done_epochs == cfg.schedule.epochs or clock.due()):
        _save(run, pos, done_epochs, 0 if finished else batch_in_epoch + 1, epoch_rng, metrics, tau)
        clock.reset()
    dist.barrier(f"the end of epoch {epoch + 1} (rank 0 validates and saves)")
    result.epoch = done_epochs
    if preempted:
        raise Preempted(halt, run.out / "last.pt", pos.step, epoch, batch_in_epoch + 1)
    return halt


def _validate(run: Run, pos: _Position, epoch: int, done_epochs: int, epoch_rng: dict, tau: float, logger,
              result: TrainResult) -> dict:
    """NME on every validation set (rank 0); ``best.pt`` and ``best/`` when the mean improves."""
    metrics = _nme_of(run.model, run.val_sets, run.cfg, run.device)
    run.model.train()
    mean_nme = float(np.mean(list(metrics.values())))
    row = {"epoch": epoch + 1, "step": pos.step, "nme": mean_nme, **{f"nme/{k}": v for k, v in metrics.items()}}
    result.val.append(row)
    logger.log("val", row, pos.step)
    if run.dist.is_main and run.cfg.train.progress:
        print(f"epoch {epoch + 1}: val NME " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in metrics.items()))
    if mean_nme < pos.best:
        pos.best = mean_nme
        if run.dist.is_main:
            _save(run, pos, done_epochs, 0, epoch_rng, metrics, tau, name="best.pt")
            _export(run, "best", metrics, done_epochs, pos.step, tau)
    return metrics


def train(cfg: Config, out_dir: str | Path, *, resume: bool | str | Path = False,
          dist: DistInfo | None = None, allow_changed: Sequence[str] = ()) -> TrainResult:
    """Train ``cfg`` into ``out_dir``; ``resume=True`` continues from ``out_dir/last.pt`` (or a given path)
    when the checkpoint's config equals ``cfg`` but for the keys in ``allow_changed``
    (:mod:`sepbn.train.resume`). One process writes a run folder at a time (:mod:`sepbn.train.runlock`).

    Raises :class:`~sepbn.train.preempt.Preempted` after saving ``last.pt`` when a stop signal arrives
    (SIGTERM, SIGINT, SIGUSR1; see :mod:`sepbn.train.preempt`).
    """
    dist = dist or DistInfo()
    out = Path(out_dir)
    with RunLock(out, enabled=dist.is_main):
        return _train(cfg, out, resume, dist, allow_changed)


def _train(cfg: Config, out: Path, resume: bool | str | Path, dist: DistInfo,
           allow_changed: Sequence[str]) -> TrainResult:
    changes, path, ckpt = [], None, None
    if resume:  # checked before anything is written into the folder
        path, ckpt = resume_checkpoint(out, resume)
        changes = check_resume_config(ckpt.get("config", {}), cfg, allow_changed, path)
    write_config(cfg, out, dist)
    seed_everything(cfg.train.seed)
    run = setup(cfg, out, dist)
    pos = _resume(run, path, ckpt) if resume else _Position()
    run.net = dist.wrap(run.model)
    logger = RunLogger(out, enabled=dist.is_main, tensorboard=cfg.train.tensorboard,
                       resume_step=pos.step if resume else None)
    for key, old, new in changes:  # the run's record of what --allow-changed accepted
        logger.log("resume", {"step": pos.step, "key": key, "old": repr(old), "new": repr(new)}, pos.step)
    if changes and dist.is_main:
        print(f"resumed with changed {', '.join(k for k, *_ in changes)} (recorded in {out / 'resume.csv'})")
    result = TrainResult(out_dir=out, step=pos.step, epoch=pos.epoch, best_nme=None if pos.best == math.inf else pos.best,
                         skipped=run.skipped)
    clock = SaveClock(cfg.train.save_every_minutes, _clock)
    try:
        with StopSignals(announce=dist.is_main) as stop:
            halt = cfg.train.max_steps is not None and pos.step >= cfg.train.max_steps
            for epoch in range(pos.epoch, cfg.schedule.epochs):
                if halt:
                    break
                halt = _epoch(run, pos, epoch, stop, clock, logger, result)
    finally:
        logger.close()
        result.step = pos.step
    result.best_nme = None if pos.best == math.inf else pos.best
    if dist.is_main:
        epoch = result.epoch
        _export(run, "final", result.val[-1] if result.val else {}, epoch, pos.step, run.tau_of(max(epoch - 1, 0)))
        atomic_write_text(out / "summary.json", json.dumps({
            "step": pos.step, "epochs": cfg.schedule.epochs, "best_nme": result.best_nme, "val": result.val,
            "skipped_faces": sum(n for role in run.skipped.values() for d in role.values() for n in d.values()),
            "skipped": run.skipped,
        }, indent=2))
    return result
