"""The training loop: single-dataset training is Cross-protocol Network Training with one key.

Paper section IV (CNT, Fig. 5): faces are drawn from every training dataset with probability
proportional to its size; each face goes only through its own protocol's branch; each branch
has its own L1 loss and the branch losses are summed::

    loss = sum_p  mean_{faces i of protocol p, points j}  |f_p(x_i)_j - y_ij|_1

Stage 2 is the same loop with one dataset, ``train.init_from`` pointing at a stage-1
checkpoint (heads of other protocols are dropped) and ``optim.backbone_lr`` = 1e-7.
Section V-A: the learning rate follows ``lr_at`` every step; the temperature of every SepBN
softmax follows ``tau_at`` every epoch.

Checkpoints: ``last.pt`` after every ``save_every`` epochs and when the run stops; ``best.pt``
and ``best/`` (safetensors + config.json) when the mean validation NME improves; ``final/``
weights at the end. Resuming restores model, optimiser, step, epoch and RNG states, and
re-enters an interrupted epoch by replaying its sampler up to the saved batch, so the losses
equal those of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import Config, config_to_dict, format_config
from ..io import atomic_write_text
from ..checkpoint import load_checkpoint, rng_state, save_checkpoint, save_weights, set_rng_state
from .data import build_datasets, train_loader
from .distributed import DistInfo, scaled_optim
from .losses import l1_loss, wing_loss
from .nonfinite import NonFiniteLossError, diagnose
from .optim import build_optimizer, set_lr
from .schedules import lr_at, tau_at

__all__ = ["train", "TrainResult", "branch_losses", "resolve_device", "init_from_checkpoint"]


@dataclass
class TrainResult:
    out_dir: Path
    step: int
    epoch: int
    losses: list[float] = field(default_factory=list)  # training loss of every step of this process
    best_nme: float | None = None
    val: list[dict] = field(default_factory=list)  # one entry per validation


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def branch_losses(outputs: dict, targets: dict, loss_fn) -> dict[str, torch.Tensor]:
    """One loss per protocol branch present in the batch (paper Fig. 5)."""
    return {p: loss_fn(outputs[p], t) for p, t in targets.items()}


def init_from_checkpoint(path: str | Path, protocols: list[str]) -> torch.nn.Module:
    """The network of a (stage-1) checkpoint with only ``protocols``' heads (CNT stage 2).

    The architecture is the checkpoint's (its ``model_args``), so stage 2 keeps stage 1's
    backbone and the kept branch exactly, adapter included; the other heads are dropped.
    """
    from ..models import create_model

    ckpt = load_checkpoint(path)
    have = list(ckpt["model_args"]["protocols"])
    lacking = [p for p in protocols if p not in have]
    if lacking:
        raise ValueError(f"{path}: the checkpoint has heads {have}, not {lacking}")
    full = create_model(**ckpt["model_args"])
    full.load_state_dict(ckpt["model"])
    return full.select(protocols)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _nme_of(model, datasets: dict, cfg: Config, device) -> dict[str, float]:
    from ..evaluation.evaluate import evaluate

    return {
        name: evaluate(model, ds, batch_size=max(cfg.train.batch_size, 32), device=device).summary["nme"]
        for name, ds in datasets.items()
    }


def _progress(total: int, epoch: int, epochs: int, *, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", disable=not enabled, leave=False, dynamic_ncols=True)


def train(cfg: Config, out_dir: str | Path, *, resume: bool | str | Path = False,
          dist: DistInfo | None = None) -> TrainResult:
    """Train ``cfg`` into ``out_dir``; ``resume=True`` continues from ``out_dir/last.pt`` (or a given path)."""
    from ..models import create_model
    from ..nn import BruteForceSepBN2d, domains, set_temperature

    dist = dist or DistInfo()
    out = Path(out_dir)
    tc, sc = cfg.train, cfg.schedule
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        text = format_config(cfg)
        atomic_write_text(out / "config.toml", text)
        if tc.progress:
            print(f"# resolved config (also in {out / 'config.toml'})\n{text}")
    device = resolve_device(tc.device)
    _seed_everything(tc.seed)

    # --- data and model -----------------------------------------------------------------
    size = cfg.model.input_size
    train_sets = build_datasets(cfg.data, cfg.data.train, train=True, image_size=size, seed=tc.seed)
    val_sets = build_datasets(cfg.data, cfg.data.val, train=False, image_size=size) if dist.is_main else {}
    loader, sampler, mixed = train_loader(
        train_sets, batch_size=tc.batch_size, epoch_size=cfg.data.epoch_size, workers=cfg.data.workers,
        seed=tc.seed, rank=dist.rank, world_size=dist.world_size, pin_memory=device.type == "cuda",
    )
    protocols = {p: next(d.protocol for d in train_sets.values() if d.protocol.name == p) for p in mixed.protocols}
    if tc.init_from:
        model = init_from_checkpoint(tc.init_from, list(protocols))
        if dist.is_main and tc.progress:
            print(f"initialised from {tc.init_from} (its architecture; heads kept: {list(protocols)})")
    else:
        model = create_model(
            cfg.model.arch, list(protocols.values()), norm=cfg.model.norm, norm_kwargs=dict(cfg.model.norm_kwargs) or None,
            placement=cfg.model.placement, width=cfg.model.width, input_size=size,
            pretrained=cfg.model.pretrained, adapter=cfg.model.adapter,
        )
    channels_last = tc.channels_last and device.type == "cuda"
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    # every learning rate is for optim.lr_reference_batch faces; the effective batch is batch_size * world_size
    optim_cfg, lr_factor = scaled_optim(cfg.optim, tc.batch_size, dist.world_size)
    optimizer = build_optimizer(model, optim_cfg)
    brute_force = any(isinstance(m, BruteForceSepBN2d) for m in model.modules())
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.amp) if device.type == "cuda" else None
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    if tc.loss == "wing":
        def loss_fn(p, t):
            return wing_loss(p, t, w=tc.wing_w, epsilon=tc.wing_epsilon, image_size=size)
    else:
        loss_fn = l1_loss

    steps_per_epoch = len(loader)
    total_steps = sc.epochs * steps_per_epoch
    warmup_steps = sc.warmup_epochs * steps_per_epoch

    def lr_of(step: int) -> float:
        return lr_at(step, total_steps=total_steps, warmup_steps=warmup_steps, max_lr=optim_cfg.lr,
                     min_lr=sc.min_lr * lr_factor)

    def tau_of(epoch: int) -> float:
        return tau_at(epoch, start=sc.tau_start, end=sc.tau_end, epochs=sc.tau_epochs)

    # --- resume ----------------------------------------------------------------------------
    step, start_epoch, skip, best = 0, 0, 0, math.inf
    resume_rng: dict | None = None
    if resume:
        path = Path(resume) if not isinstance(resume, bool) else out / "last.pt"
        ckpt = load_checkpoint(path, map_location=device)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"]) if ckpt.get("scaler") else None
        step, start_epoch, skip = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        if ckpt.get("world_size", 1) != dist.world_size:  # other shares, steps per epoch and LR schedule
            raise ValueError(f"{path} was written by a run of {ckpt.get('world_size', 1)} processes; "
                             f"resume it with as many (got {dist.world_size})")
        best = ckpt.get("best_nme", math.inf)
        # mid-epoch: replay the epoch's draws from its start state, then continue from the saved state
        set_rng_state(ckpt["rng_epoch"] if skip else ckpt["rng"])
        resume_rng = ckpt["rng"]
        if dist.is_main and tc.progress:
            print(f"resumed from {path}: epoch {start_epoch}, step {step}")

    net = dist.wrap(model)
    from .logger import RunLogger

    logger = RunLogger(out, enabled=dist.is_main, tensorboard=tc.tensorboard,
                       resume_step=step if resume else None)
    result = TrainResult(out_dir=out, step=step, epoch=start_epoch, best_nme=None if best == math.inf else best)

    def checkpoint(epoch: int, batch_in_epoch: int, epoch_rng: dict, metrics: dict, tau: float,
                   name: str = "last.pt") -> None:
        save_checkpoint(out / name, {
            "model": model.state_dict(),
            "model_args": model.model_args,
            "protocols": {p: proto.to_dict() for p, proto in protocols.items()},
            "config": config_to_dict(cfg),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "scheduler": {"kind": "warmup-cosine", "step": step, "total_steps": total_steps,
                          "warmup_steps": warmup_steps, "lr": lr_of(min(step, total_steps - 1))},
            "epoch": epoch, "batch_in_epoch": batch_in_epoch, "step": step, "world_size": dist.world_size,
            "rng": rng_state(), "rng_epoch": epoch_rng,
            "temperature": tau, "best_nme": best, "metrics": metrics,
        })

    def export(folder: str, metrics: dict, epoch: int, tau: float) -> None:
        save_weights(out / folder, model.state_dict(), {
            "model_args": model.model_args,
            "protocols": {p: proto.to_dict() for p, proto in protocols.items()},
            "config": config_to_dict(cfg), "epoch": epoch, "step": step,
            "temperature": tau, "metrics": metrics,
        })

    # --- the loop ----------------------------------------------------------------------------
    stop = tc.max_steps is not None and step >= tc.max_steps
    epoch = start_epoch
    for epoch in range(start_epoch, sc.epochs):
        if stop:
            break
        tau = tau_of(epoch)
        set_temperature(model, tau)
        sampler.set_epoch(epoch)
        mixed.set_epoch(epoch)
        epoch_rng = rng_state()  # a resumed epoch starts from the restored epoch-start state
        model.train()
        bar = _progress(steps_per_epoch, epoch, sc.epochs, enabled=dist.is_main and tc.progress)
        bar.update(skip)
        t0, seen = time.perf_counter(), 0
        batch_in_epoch = 0
        for batch_in_epoch, batch in enumerate(loader):
            if batch_in_epoch < skip:
                continue  # replayed draws of an interrupted epoch
            if skip:
                set_rng_state(resume_rng)
                skip = 0
            lr = lr_of(step)
            set_lr(optimizer, lr)
            images = batch["image"].to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            targets = {p: t.to(device, non_blocking=True) for p, t in batch["target"].items()}
            # brute-force SepBN routes each face by its domain label (paper III-A); others ignore it
            routing = domains(batch["domain"]) if brute_force else contextlib.nullcontext()
            with routing, torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                outputs = net(images, protocols=batch["protocol"])
            losses = branch_losses(outputs, targets, loss_fn)
            # one mean per protocol over the global batch (several ranks: see DistInfo.branch_weights)
            weights = dist.branch_weights({p: len(t) for p, t in targets.items()}, list(protocols), device)
            loss = sum(losses[p] * weights[p] for p in losses)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                def rerun(probe, images=images, protos=batch["protocol"]):
                    return probe(images, protocols=protos)
                # with synchronised BN a re-run would wait for ranks that are elsewhere: statistics only
                raise NonFiniteLossError(diagnose(model, step, loss_value, None if dist.forward_syncs else rerun))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.optim.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            seen += images.shape[0]
            result.losses.append(loss_value)
            ips = seen * dist.world_size / max(time.perf_counter() - t0, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", tau=f"{tau:.1f}", img_s=f"{ips:.0f}")
            if step % tc.log_every == 0:
                logger.log("train", {
                    "step": step, "epoch": epoch,  # losses over the global batch (all ranks)
                    **dist.global_losses(loss_value, losses, weights, list(protocols), device),
                    "lr": lr, "tau": tau, "images_per_s": ips,
                }, step)
            if tc.max_steps is not None and step >= tc.max_steps:
                stop = True
                break
        bar.close()
        finished = not stop or batch_in_epoch + 1 == steps_per_epoch
        done_epochs = epoch + 1 if finished else epoch
        metrics = {}
        if finished and val_sets and ((epoch + 1) % tc.val_every == 0 or epoch + 1 == sc.epochs):
            metrics = _nme_of(model, val_sets, cfg, device)
            model.train()
            mean_nme = float(np.mean(list(metrics.values())))
            row = {"epoch": epoch + 1, "step": step, "nme": mean_nme, **{f"nme/{k}": v for k, v in metrics.items()}}
            result.val.append(row)
            logger.log("val", row, step)
            if dist.is_main and tc.progress:
                print(f"epoch {epoch + 1}: val NME " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in metrics.items()))
            if mean_nme < best:
                best = mean_nme
                if dist.is_main:
                    checkpoint(done_epochs, 0, epoch_rng, metrics, tau, name="best.pt")
                    export("best", metrics, done_epochs, tau)
        if dist.is_main and (stop or not finished or done_epochs % tc.save_every == 0 or done_epochs == sc.epochs):
            checkpoint(done_epochs, 0 if finished else batch_in_epoch + 1, epoch_rng, metrics, tau)
        dist.barrier(f"the end of epoch {epoch + 1} (rank 0 validates and saves)")
        result.epoch = done_epochs
    result.step = step
    result.best_nme = None if best == math.inf else best
    if dist.is_main:
        export("final", result.val[-1] if result.val else {}, result.epoch, tau_of(max(result.epoch - 1, 0)))
        atomic_write_text(out / "summary.json", json.dumps({
            "step": step, "epochs": sc.epochs, "best_nme": result.best_nme, "val": result.val,
        }, indent=2))
    logger.close()
    return result
