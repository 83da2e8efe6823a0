"""Learning-rate and temperature schedules: pure functions of the step / epoch (paper section V-A).

Learning rate: "cosine annealing ... maximum and minimum learning rate 1e-3 and 5e-6, with 120
warm-up epochs; 500 epochs". Our reading of "warm-up": a linear ramp from the minimum to the
maximum over the first ``warmup`` steps, then a half cosine from the maximum down to the minimum
over the remaining steps (the authors' public code also ramps linearly, then anneals)::

    lr(s) = min + (max - min) * s / W                                   s < W
    lr(s) = min + (max - min) * (1 + cos(pi * (s - W) / (S - W))) / 2   W <= s < S

Temperature of every SepBN softmax: "initial tau 30, reduced to 1 in the first 30 epochs". We
decrease it linearly per epoch, reaching the end value at the last annealing epoch (30 epochs
from 30 to 1 is the authors' "down by 1 per epoch")::

    tau(e) = start + (end - start) * min(e, E - 1) / (E - 1)
"""

from __future__ import annotations

import math

__all__ = ["lr_at", "tau_at"]


def lr_at(step: int, *, total_steps: int, warmup_steps: int, max_lr: float, min_lr: float) -> float:
    """Learning rate of optimiser step ``step`` (0-based) of a ``total_steps`` run.

    >>> lr_at(0, total_steps=500, warmup_steps=120, max_lr=1e-3, min_lr=5e-6)
    5e-06
    >>> lr_at(120, total_steps=500, warmup_steps=120, max_lr=1e-3, min_lr=5e-6)
    0.001
    """
    if total_steps < 1 or not 0 <= warmup_steps < total_steps:
        raise ValueError(f"need 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < warmup_steps:
        return min_lr + (max_lr - min_lr) * step / warmup_steps
    t = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


def tau_at(epoch: int, *, start: float = 30.0, end: float = 1.0, epochs: int = 30) -> float:
    """SepBN softmax temperature during ``epoch`` (0-based); ``end`` from epoch ``epochs - 1`` on.

    >>> [tau_at(e) for e in (0, 1, 29, 100)]
    [30.0, 29.0, 1.0, 1.0]
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if epochs == 1:
        return float(end)
    return float(start + (end - start) * min(epoch, epochs - 1) / (epochs - 1))
