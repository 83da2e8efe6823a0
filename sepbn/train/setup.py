"""Setting a training run up: the pre-flight check, datasets, network, optimiser, AMP and schedules.

:func:`setup` returns one :class:`Run` that the loop (:mod:`sepbn.train.loop`) carries from the first
step to the last; nothing in it is looked up again by name along the run (the protocols are the
:class:`~sepbn.protocols.Protocol` objects of the training datasets).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..assembly import build_datasets, resolve_device
from ..checkpoint import load_checkpoint
from ..config import Config, format_config
from ..protocols import Protocol
from ..io import atomic_write_text
from ..models import create_model
from ..nn import BruteForceSepBN2d
from .data import preflight, train_loader
from .distributed import DistInfo, scaled_optim
from .losses import l1_loss, wing_loss
from .optim import build_optimizer
from .schedules import lr_at, tau_at

__all__ = ["Run", "setup", "write_config", "resolve_device", "init_from_checkpoint", "seed_everything"]


def init_from_checkpoint(path: str | Path, protocols: list[str]) -> torch.nn.Module:
    """The network of a (stage-1) checkpoint with only ``protocols``' heads (CNT stage 2).

    The architecture is the checkpoint's (its ``model_args``), so stage 2 keeps stage 1's
    backbone and the kept branch exactly, adapter included; the other heads are dropped.
    """
    ckpt = load_checkpoint(path)
    have = list(ckpt["model_args"]["protocols"])
    lacking = [p for p in protocols if p not in have]
    if lacking:
        raise ValueError(f"{path}: the checkpoint has heads {have}, not {lacking}")
    full = create_model(**ckpt["model_args"])
    full.load_state_dict(ckpt["model"])
    return full.select(protocols)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Run:
    """What one run holds from setup to the end: data, network, optimiser and the schedules."""

    cfg: Config
    out: Path
    dist: DistInfo
    device: torch.device
    model: torch.nn.Module
    net: torch.nn.Module  # the module forward runs on (DDP around ``model`` with several ranks)
    protocols: dict[str, Protocol]  # one head per protocol, in head order
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loader: torch.utils.data.DataLoader
    sampler: object
    mixed: object
    val_sets: dict
    loss_fn: Callable
    lr_of: Callable[[int], float]
    tau_of: Callable[[int], float]
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    amp_dtype: torch.dtype | None
    channels_last: bool
    brute_force: bool
    skipped: dict  # faces left out by the pre-flight check: {role: {dataset: {cause: count}}}


def write_config(cfg: Config, out: Path, dist: DistInfo) -> None:
    if not dist.is_main:
        return
    out.mkdir(parents=True, exist_ok=True)
    text = format_config(cfg)
    atomic_write_text(out / "config.toml", text)
    if cfg.train.progress:
        print(f"# resolved config (also in {out / 'config.toml'})\n{text}")


def setup(cfg: Config, out: Path, dist: DistInfo) -> Run:
    """Pre-flight check, datasets, loader, network, optimiser, AMP and the LR / tau schedules."""
    tc, sc = cfg.train, cfg.schedule
    device = resolve_device(tc.device)
    size = cfg.model.input_size
    checked = preflight(cfg, out, dist)
    train_sets = build_datasets(cfg.data, cfg.data.train, train=True, image_size=size, seed=tc.seed,
                                records=checked.records["train"])
    val_sets = (build_datasets(cfg.data, cfg.data.val, train=False, image_size=size, records=checked.records["val"])
                if dist.is_main else {})
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
            pretrained=cfg.model.pretrained, adapter=cfg.model.adapter, head=cfg.model.head,
        )
    channels_last = tc.channels_last and device.type == "cuda"
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    # every learning rate is for optim.lr_reference_batch faces; the effective batch is batch_size * world_size
    optim_cfg, lr_factor = scaled_optim(cfg.optim, tc.batch_size, dist.world_size)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.amp) if device.type == "cuda" else None
    if tc.loss == "wing":
        def loss_fn(p, t):
            return wing_loss(p, t, w=tc.wing_w, epsilon=tc.wing_epsilon, image_size=size)
    else:
        loss_fn = l1_loss
    steps_per_epoch = len(loader)
    total_steps, warmup_steps = sc.epochs * steps_per_epoch, sc.warmup_epochs * steps_per_epoch

    def lr_of(step: int) -> float:
        return lr_at(step, total_steps=total_steps, warmup_steps=warmup_steps, max_lr=optim_cfg.lr,
                     min_lr=sc.min_lr * lr_factor)

    def tau_of(epoch: int) -> float:
        return tau_at(epoch, start=sc.tau_start, end=sc.tau_end, epochs=sc.tau_epochs)

    return Run(
        cfg=cfg, out=out, dist=dist, device=device, model=model, net=model, protocols=protocols,
        optimizer=build_optimizer(model, optim_cfg), scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
        loader=loader, sampler=sampler, mixed=mixed, val_sets=val_sets, loss_fn=loss_fn, lr_of=lr_of, tau_of=tau_of,
        steps_per_epoch=steps_per_epoch, total_steps=total_steps, warmup_steps=warmup_steps, amp_dtype=amp_dtype,
        channels_last=channels_last, brute_force=any(isinstance(m, BruteForceSepBN2d) for m in model.modules()),
        skipped=checked.skipped_counts(),
    )
