"""Model surgery for the SepBN family (paper section III; STYLE practice 8, like ``convert_sync_batchnorm``).

`convert_to_sepbn` swaps chosen ``nn.BatchNorm2d`` modules for a family layer built by its
``from_batchnorm`` (statistics and affine parameters copied into every branch, so the converted model's
eval output equals the original's at conversion time); `set_temperature` sets tau everywhere;
`sepbn_modules` lists the family layers.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from torch import nn

from .bruteforce import BranchBatchNorm2d
from .sepbn import SepBatchNorm2d, TemperatureMixin

__all__ = ["convert_to_sepbn", "set_temperature", "sepbn_modules", "FAMILY"]

FAMILY = (SepBatchNorm2d, BranchBatchNorm2d)
Where = None | str | Callable[[str, nn.Module], bool]


def _selector(where: Where) -> Callable[[str, nn.Module], bool]:
    if where is None or where == "all":
        return lambda name, module: True
    if isinstance(where, str):
        pattern = re.compile(where)
        return lambda name, module: pattern.search(name) is not None
    if callable(where):
        return where
    raise ValueError(f"where must be None, 'all', a regex string or a predicate (name, module) -> bool, got {where!r}")


def convert_to_sepbn(
    model: nn.Module, where: Where = None, *, layer: type[nn.Module] = SepBatchNorm2d, **layer_kwargs
) -> nn.Module:
    """Replace BatchNorm2d modules of ``model`` by ``layer`` (default `SepBatchNorm2d`), in place.

    Args:
        model: any module; returned converted (a bare BatchNorm2d is returned as the new layer).
        where: None or ``"all"`` (every BatchNorm2d), a regex searched in the qualified module name
            (``re.search``; anchor it to be exact, e.g. ``r"\\.bn2$"``), or a predicate (name, module) -> bool.
        layer: the family class (`SepBatchNorm2d`, `BruteForceSepBN2d`, `MixtureBatchNorm2d`).
        **layer_kwargs: constructor arguments of ``layer`` (e.g. ``num_branches=3, temperature=30.0``).

    Layers already in the family are left alone (their inner BatchNorm2d is not converted again).

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8))
        >>> net = convert_to_sepbn(net, where=r"^4$", num_branches=2)
        >>> [type(m).__name__ for m in net]
        ['Conv2d', 'BatchNorm2d', 'ReLU', 'Conv2d', 'SepBatchNorm2d']
        >>> net[4].weight.shape
        torch.Size([2, 8])
    """
    select = _selector(where)

    def convert(module: nn.Module, name: str) -> nn.Module:
        if isinstance(module, nn.BatchNorm2d) and not isinstance(module, nn.SyncBatchNorm):
            return layer.from_batchnorm(module, **layer_kwargs) if select(name, module) else module
        if isinstance(module, FAMILY):
            return module
        for child_name, child in module.named_children():
            new = convert(child, f"{name}.{child_name}" if name else child_name)
            if new is not child:
                setattr(module, child_name, new)
        return module

    return convert(model, "")


def sepbn_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(qualified name, module) of every SepBN-family layer in ``model``, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, FAMILY)]


def set_temperature(model: nn.Module, tau: float) -> int:
    """Set the softmax temperature of every attentive layer in ``model``; returns how many were set.

    Examples:
        >>> net = nn.Sequential(SepBatchNorm2d(4, num_groups=1), SepBatchNorm2d(4, num_groups=1))
        >>> set_temperature(net, 30.0), net[1].temperature
        (2, 30.0)
    """
    count = 0
    for module in model.modules():
        if isinstance(module, TemperatureMixin):
            module.temperature = tau
            count += 1
    return count
