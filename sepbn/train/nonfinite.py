"""Name the layers behind a NaN/inf loss (paper Table X: some SepBN placements do not converge).

When the loss stops being finite, :func:`diagnose` reports (1) the normalisation layers whose
running statistics (``running_mean`` / ``running_var``) or parameters are no longer finite or
have blown up, and (2) the layers whose outputs are non-finite or huge on the failing batch,
found by forward hooks on a copy of the model (so the real model's statistics are untouched).
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from ..errors import UserError

__all__ = ["NonFiniteLossError", "diagnose", "BLOWUP"]

BLOWUP = 1e6  # |value| above this counts as blown up


class NonFiniteLossError(UserError, FloatingPointError):
    """The training loss became NaN or inf; the message names the step and the layers."""


def _is_norm(m: nn.Module) -> bool:
    if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
        return True
    return type(m).__module__.startswith("sepbn.nn")


def _bad(t: torch.Tensor) -> str | None:
    t = t.detach()
    if not t.is_floating_point():
        return None
    if not torch.isfinite(t).all():
        return "non-finite"
    if t.numel() and t.abs().max().item() > BLOWUP:
        return f"max |x| = {t.abs().max().item():.3g}"
    return None


def bad_statistics(model: nn.Module) -> list[str]:
    """``"name.buffer (reason)"`` for every norm layer buffer/parameter that is non-finite or huge."""
    found = []
    for name, m in model.named_modules():
        if not _is_norm(m):
            continue
        tensors = list(m.named_buffers(recurse=False)) + list(m.named_parameters(recurse=False))
        for tn, t in tensors:
            why = _bad(t)
            if why:
                found.append(f"{name or '<model>'}.{tn} ({why})")
    return found


def bad_outputs(model: nn.Module, run: Callable[[nn.Module], object]) -> list[str]:
    """Layers (in execution order) whose outputs are non-finite or huge when ``run(copy)`` executes."""
    probe = copy.deepcopy(model)
    found: list[str] = []
    hooks = []
    for name, m in probe.named_modules():
        if name == "" or list(m.children()) and not _is_norm(m):
            continue  # leaves and norm layers only: a container repeats its last child's output

        def hook(mod, args, out, name=name):
            outs = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else [out]
            for o in outs:
                why = _bad(o) if isinstance(o, torch.Tensor) else None
                if why:
                    found.append(f"{name} [{type(mod).__name__}] output {why}")
                    break

        hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            run(probe)
    except Exception as e:  # the diagnosis must not hide the original failure
        found.append(f"(probe forward failed: {type(e).__name__}: {e})")
    finally:
        for h in hooks:
            h.remove()
    return found


def diagnose(model: nn.Module, step: int, loss: float, run: Callable[[nn.Module], object] | None = None,
             limit: int = 8) -> str:
    """The message of a :class:`NonFiniteLossError`."""
    stats = bad_statistics(model)
    lines = [f"loss is {loss} at step {step}; stopping."]
    lines.append("norm layers with non-finite or exploded statistics/parameters: "
                 + (", ".join(stats[:limit]) + (f" ... ({len(stats)} in all)" if len(stats) > limit else "")
                    if stats else "none"))
    if run is not None:
        outs = bad_outputs(model, run)
        lines.append("layers whose outputs blew up on this batch (first first): "
                     + (", ".join(outs[:limit]) + (f" ... ({len(outs)} in all)" if len(outs) > limit else "")
                        if outs else "none"))
    lines.append("Try a lower optim.lr, optim.grad_clip, train.amp='none', or another SepBN placement.")
    return "\n".join(lines)
