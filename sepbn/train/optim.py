"""Optimiser and its explicit, exhaustive parameter groups (paper section V-A; CNT stage 2, section IV).

Every trainable parameter is placed in exactly one group, decided by the module that owns it
(asserted):

==================  ===================================================================
``backbone``        weights and biases of the shared backbone's convolutions and linears
``sepbn_mapping``   SepBN's (K, C) ``weight`` / ``bias`` (and brute-force SepBN's branch affines)
``sepbn_attention`` SepBN's attention branch (pool -> 1x1 conv -> MLP)
``norm``            affine parameters of plain normalisation layers (BatchNorm, GroupNorm ...)
``heads``           everything under ``model.heads`` (one regression branch per protocol)
==================  ===================================================================

Weight decay. The paper states one value, 5e-4, for the whole network, and the authors' code
passes ``model.parameters()`` to SGD. We keep that as the default for every group, including
SepBN's (K, C) mapping: decay shrinks each of the K sets towards zero independently; it does
not pull the sets towards each other. It is not negligible for a set the attention ignores: on
WFLW (938 steps per epoch, 500 epochs, mean lr about 5e-4, momentum 0.9 multiplying the step by
10) such a set decays by exp(-469k * 5e-4 * 5e-4 * 10) ~ 0.31 over the run, which reinforces the
branches the attention already prefers. ``optim.sepbn_weight_decay`` and
``optim.norm_weight_decay`` set other values (0 is the common "no decay on norms" rule).

Learning rate. Groups carry ``fixed_lr``: None follows the schedule; CNT stage 2 sets the four
backbone groups to ``optim.backbone_lr`` (paper: 1e-7) while ``heads`` follows the schedule.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from ..config import OptimConfig
from ..nn.convert import FAMILY as sep_types  # SepBN, brute-force and mixture layers

__all__ = ["GROUPS", "BACKBONE_GROUPS", "param_groups", "build_optimizer", "set_lr"]

GROUPS = ("backbone", "sepbn_mapping", "sepbn_attention", "norm", "heads")
BACKBONE_GROUPS = ("backbone", "sepbn_mapping", "sepbn_attention", "norm")

_PLAIN_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def classify_parameters(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Map each group name to its (name, parameter) pairs; every trainable parameter exactly once."""
    owner: dict[int, str] = {}

    def place(params: Iterable[tuple[str, nn.Parameter]], group: str) -> None:
        for _, p in params:
            owner.setdefault(id(p), group)  # first claim wins: SepBN before its inner modules

    for mod_name, m in model.named_modules():
        in_head = mod_name == "heads" or mod_name.startswith("heads.")
        if in_head:
            place(m.named_parameters(recurse=False), "heads")
        elif isinstance(m, sep_types):
            for sub_name, sub in m.named_modules():
                mapping = sub_name == "" or isinstance(sub, _PLAIN_NORMS)
                for pn, p in sub.named_parameters(recurse=False):
                    is_map = mapping and pn in ("weight", "bias")
                    place([(pn, p)], "sepbn_mapping" if is_map else "sepbn_attention")
        elif isinstance(m, _PLAIN_NORMS):
            place(m.named_parameters(recurse=False), "norm")
        else:
            place(m.named_parameters(recurse=False), "backbone")

    groups: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g in GROUPS}
    seen: set[int] = set()
    for name, p in model.named_parameters():  # deduplicates shared parameters like optimisers do
        if not p.requires_grad:
            continue
        assert id(p) in owner and id(p) not in seen, f"parameter {name} not placed exactly once"
        seen.add(id(p))
        groups[owner[id(p)]].append((name, p))
    placed = sum(len(v) for v in groups.values())
    trainable = len({id(p) for p in model.parameters() if p.requires_grad})
    assert placed == trainable, f"{placed} parameters placed in groups, {trainable} trainable"
    return groups


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Optimiser parameter groups: ``params``, ``name``, ``weight_decay``, ``fixed_lr``, ``lr``."""
    decay = {
        "backbone": cfg.weight_decay,
        "heads": cfg.weight_decay,
        "sepbn_mapping": cfg.weight_decay if cfg.sepbn_weight_decay is None else cfg.sepbn_weight_decay,
        "sepbn_attention": cfg.weight_decay,
        "norm": cfg.weight_decay if cfg.norm_weight_decay is None else cfg.norm_weight_decay,
    }
    out = []
    for name, params in classify_parameters(model).items():
        if not params:
            continue
        fixed = cfg.backbone_lr if name in BACKBONE_GROUPS else None
        out.append({
            "params": [p for _, p in params],
            "name": name,
            "weight_decay": decay[name],
            "fixed_lr": fixed,
            "lr": cfg.lr if fixed is None else fixed,
        })
    return out


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD (paper) or AdamW over :func:`param_groups`."""
    groups = param_groups(model, cfg)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ValueError(f"unknown optimiser {cfg.name!r}; choose 'sgd' or 'adamw'")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Scheduled ``lr`` for every group without a ``fixed_lr``."""
    for g in optimizer.param_groups:
        g["lr"] = lr if g.get("fixed_lr") is None else g["fixed_lr"]
