"""Synchronised batch statistics for multi-process training, CPU (gloo) included.

Paper section III-B: SepBN composes a shared normalisation (eq. 1, the BN statistics) with K
mapping sets mixed by an attention (eq. 3-7). Across ranks only the statistics need sharing:
``SepBatchNorm2d.norm`` is a ``BatchNorm2d(affine=False)`` child, so replacing it by a synchronised
BN syncs the mean and variance while the (K, C) mapping sets and the attention stay ordinary
parameters that DistributedDataParallel replicates. Plain BN layers are synchronised too.

``nn.SyncBatchNorm`` refuses CPU tensors (and DistributedDataParallel refuses it in a CPU
module), so GPU runs use it and CPU runs (gloo: CI, CPU clusters) use :class:`CPUSyncBatchNorm`,
which computes the global moments with two differentiable all-reduces (sum and count, then the
centred sum of squares)::

    mean = sum_r sum(x_r) / sum_r n_r,   var = sum_r sum((x_r - mean)^2) / sum_r n_r

Autograd runs through the all-reduces (their backward is an all-reduce of the gradients), so the
gradient equals the one of BatchNorm over the concatenated global batch. The running variance is
updated with the unbiased global variance, as ``nn.SyncBatchNorm``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CPUSyncBatchNorm", "convert_sync_batchnorm", "global_moments", "all_reduce"]


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of every rank's copy is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, x: Tensor, group) -> Tensor:
        ctx.group = group
        out = x.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def all_reduce(x: Tensor, group=None) -> Tensor:
    """Differentiable sum of ``x`` over the ranks of ``group``."""
    return _AllReduceSum.apply(x, group)


def global_moments(x: Tensor, group=None) -> tuple[Tensor, Tensor, int]:
    """Per-channel (mean, biased variance, count) of ``x`` (N, C, ...) over every rank of ``group``."""
    dims = [0, *range(2, x.dim())]
    n = x.numel() // x.size(1)
    total = all_reduce(torch.cat([x.sum(dims), x.new_full((1,), float(n))]), group=group)
    count = int(total[-1].item())
    if count < 2:
        raise ValueError(f"expected more than 1 value per channel over all ranks when training, got {count}")
    mean = total[:-1] / count
    shape = (1, -1) + (1,) * (x.dim() - 2)
    var = all_reduce((x - mean.view(shape)).pow(2).sum(dims), group=group) / count
    return mean, var, count


class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch over every rank of
    ``process_group`` (default: the world), for CPU tensors (see the module docstring).

    Eval mode, and training without a process group, are exactly ``BatchNorm``. The state dict
    is BatchNorm's (same keys), so checkpoints do not depend on whether the run was synchronised.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group=None, device=None, dtype=None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.process_group = process_group

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        if not self.training or not (dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        group = self.process_group or dist.group.WORLD
        if dist.get_world_size(group) == 1:
            return F.batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                                True, factor, self.eps)
        mean, var, count = global_moments(input, group)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                unbiased = var.detach() * (count / (count - 1))
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        shape = (1, -1) + (1,) * (input.dim() - 2)
        out = (input - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.weight is not None:
            out = out * self.weight.view(shape)
        if self.bias is not None:
            out = out + self.bias.view(shape)
        return out


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Replace every BatchNorm layer of ``module`` by :class:`CPUSyncBatchNorm`, in place (a BN
    ``module`` itself is returned converted), sharing its parameters and buffers.

    As ``nn.SyncBatchNorm.convert_sync_batchnorm``: a SepBatchNorm2d keeps its class and K mapping
    sets; only its inner ``.norm`` is replaced. Parameters are the same objects, so an optimiser
    built before the conversion still holds them, and the state-dict keys do not change.
    """
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CPUSyncBatchNorm):
        sync = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats, process_group)
        if module.affine:
            sync.weight = module.weight
            sync.bias = module.bias
        sync.running_mean = module.running_mean
        sync.running_var = module.running_var
        sync.num_batches_tracked = module.num_batches_tracked
        sync.train(module.training)
        return sync
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, process_group))
    return module
