"""Coordinate regression losses (paper section V-A: L1; Wing loss as an option).

Both take predictions and targets in normalised crop coordinates (n, L, 2) and an optional
visibility mask (n, L); they average over the selected coordinates.

Wing loss (Feng et al., CVPR 2018), on the error ``x`` measured in crop pixels
(``x = |pred - target| * S / 2``)::

    wing(x) = w * ln(1 + x / eps)    if x < w
            = x - C                  otherwise,  C = w - w * ln(1 + w / eps)
"""

from __future__ import annotations

import math

import torch

__all__ = ["l1_loss", "wing_loss", "LOSSES"]


def _masked_mean(err: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return err.mean()
    m = mask.to(err.dtype).unsqueeze(-1).expand_as(err)
    return (err * m).sum() / m.sum().clamp_min(1.0)


def l1_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute coordinate error."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    return _masked_mean((pred.float() - target.float()).abs(), mask)


def wing_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    w: float = 10.0,
    epsilon: float = 2.0,
    image_size: int = 128,
) -> torch.Tensor:
    """Wing loss with ``w`` and ``epsilon`` in pixels of an ``image_size`` crop."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if w <= 0 or epsilon <= 0:
        raise ValueError(f"wing loss needs w > 0 and epsilon > 0, got w={w}, epsilon={epsilon}")
    x = (pred.float() - target.float()).abs() * (image_size / 2)
    c = w - w * math.log1p(w / epsilon)
    err = torch.where(x < w, w * torch.log1p(x / epsilon), x - c)
    return _masked_mean(err, mask)


LOSSES = {"l1": l1_loss, "wing": wing_loss}
