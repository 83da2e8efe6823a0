"""Separable Batch Normalization as pure functions (paper section III-B, eq. 4, 6 and 7).

The normalisation is BatchNorm's (eq. 1, no affine); the mapping mixes K sets of scale/shift per sample
and channel group with attention weights pi (N, G, K):

    gamma_hat[n, g] = sum_k pi[n, g, k] * gamma[k, g]        beta_hat[n, g] = sum_k pi[n, g, k] * beta[k, g]   (6)
    y[n, g] = gamma_hat[n, g] * x_hat[n, g] + beta_hat[n, g]                                                   (7)

eq. (4) (simple SepBN) is the case G = 1. Because gamma_hat and beta_hat are per (sample, channel), the
normalisation and the mixed mapping fold into one per-(n, c) affine map of the *raw* input:

    scale[n, c] = gamma_hat[n, c] / sqrt(var[c] + eps)        shift[n, c] = beta_hat[n, c] - mean[c] * scale[n, c]
    y = x * scale + shift                                      (one pass over the activation)

`sep_batch_norm` computes exactly that; during back-propagation it uses `_FoldedAffine`, an autograd
function with the analytic BatchNorm backward written for per-sample affine parameters, so the backward
makes two passes over the activation instead of the five or six that autograd would record.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["mix_affine", "batch_stats", "fast_batch_stats", "update_running_stats", "fold_affine", "apply_affine",
           "sep_batch_norm"]


def mix_affine(attention: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """Mix K sets of mapping parameters with per-sample, per-group weights (eq. 4 and 6).

    One contraction for scale and shift together: ``einsum("ngk,skgm->sngm")``.

    Args:
        attention: pi, shape (N, G, K); rows need not sum to one (this function is linear in pi).
        weight: gamma, shape (K, C) with C divisible by G.
        bias: beta, shape (K, C).

    Returns:
        gamma_hat, beta_hat, each (N, C).

    Examples:
        >>> pi = torch.tensor([[[1.0, 0.0]], [[0.25, 0.75]]])      # N=2, G=1, K=2
        >>> w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])              # K=2, C=2
        >>> gamma_hat, beta_hat = mix_affine(pi, w, torch.zeros(2, 2))
        >>> gamma_hat
        tensor([[1.0000, 2.0000],
                [2.5000, 3.5000]])
    """
    attention = attention.to(weight.dtype)
    if _use_fused(attention, weight, bias):
        return _MixAffine.apply(attention, weight, bias)
    return _mix(attention, torch.stack((weight, bias)))


def _mix(attention: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
    """(gamma_hat, beta_hat) from pi (N, G, K) and the stacked sets (2, K, C): one batched matmul over G
    (what ``einsum("ngk,skgm->sngm")`` computes, with a fifth of its small ops)."""
    g, k, m, p = _grouped(attention, params)
    n = attention.shape[0]
    mixed = torch.bmm(attention.transpose(0, 1), p)  # (G, N, 2M)
    mixed = mixed.reshape(g, n, 2, m).permute(2, 1, 0, 3).reshape(2, n, g * m)
    return mixed[0], mixed[1]


def _grouped(attention: Tensor, params: Tensor) -> tuple[int, int, int, Tensor]:
    """G, K, M = C / G and the sets as (G, K, 2M) for `torch.bmm`."""
    _, g, k = attention.shape
    m = params.shape[-1] // g
    return g, k, m, params.reshape(2, k, g, m).permute(2, 1, 0, 3).reshape(g, k, 2 * m)


class _MixAffine(torch.autograd.Function):
    """`mix_affine` with its gradient written out (eager autograd only): two batched matmuls in the
    backward, where autograd records ~150 small ops for stack, einsum and the two selects (per layer and step)."""

    @staticmethod
    def forward(ctx, attention: Tensor, weight: Tensor, bias: Tensor):  # type: ignore[override]
        params = torch.stack((weight, bias))
        ctx.save_for_backward(attention, params)
        return _mix(attention, params)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_gamma: Tensor | None, grad_beta: Tensor | None):  # type: ignore[override]
        attention, params = ctx.saved_tensors
        g, k, m, p = _grouped(attention, params)
        n = attention.shape[0]
        zeros = params.new_zeros(n, g * m)
        grad = torch.stack((zeros if grad_gamma is None else grad_gamma, zeros if grad_beta is None else grad_beta))
        grad = grad.reshape(2, n, g, m).permute(2, 1, 0, 3).reshape(g, n, 2 * m)  # (G, N, 2M)
        grad_pi = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_pi = torch.bmm(grad, p.transpose(1, 2)).transpose(0, 1)  # (N, G, K)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_p = torch.bmm(attention.permute(1, 2, 0), grad)  # (G, K, 2M)
            grad_weight, grad_bias = grad_p.reshape(g, k, 2, m).permute(2, 1, 0, 3).reshape(2, k, g * m)
        return grad_pi, grad_weight, grad_bias


def batch_stats(input: Tensor) -> tuple[Tensor, Tensor]:
    """Biased batch mean and variance over (N, H, W), as BatchNorm2d normalises with (differentiable)."""
    var, mean = torch.var_mean(input, dim=(0, 2, 3), correction=0)
    return mean, var


@torch.no_grad()
def fast_batch_stats(input: Tensor) -> tuple[Tensor, Tensor]:
    """`batch_stats` without autograd, from per-(n, c) sums and sums of squares (float32 accumulation).

    On CPU this is several times faster than ``var_mean`` over (0, 2, 3). Per-(n, c) moments are combined
    across n exactly in float64 (var = mean_n var_nc + var_n mean_nc), so cancellation in E[x^2] - E[x]^2 is
    confined to single feature maps (relative error ~1e-7 * mean^2 / var there).
    """
    acc = torch.float64 if input.dtype == torch.float64 else torch.float32
    hw = input.shape[2] * input.shape[3]
    mean_nc = input.sum(dim=(2, 3), dtype=acc).double() / hw
    sq_nc = torch.linalg.vector_norm(input, 2, dim=(2, 3), dtype=acc).double().square() / hw
    var_nc = (sq_nc - mean_nc.square()).clamp_min(0)
    mean = mean_nc.mean(0)
    var = var_nc.mean(0) + (mean_nc - mean).square().mean(0)
    return mean.to(acc), var.to(acc)


@torch.no_grad()
def update_running_stats(
    running_mean: Tensor, running_var: Tensor, mean: Tensor, var: Tensor, count: int, factor: float
) -> None:
    """In-place exponential moving average exactly as BatchNorm2d (running var is unbiased)."""
    running_mean.lerp_(mean.to(running_mean.dtype), factor)
    unbiased = var * (count / max(count - 1, 1))
    running_var.lerp_(unbiased.to(running_var.dtype), factor)


def fold_affine(
    gamma_hat: Tensor, beta_hat: Tensor, mean: Tensor, var: Tensor, eps: float
) -> tuple[Tensor, Tensor]:
    """Per-(n, c) scale and shift such that ``x * scale + shift == gamma_hat * x_hat + beta_hat``."""
    scale = gamma_hat * torch.rsqrt(var + eps)
    return scale, beta_hat - mean * scale


def apply_affine(input: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """``input * scale + shift`` with (N, C) or (1, C) scale/shift broadcast over H, W (one pass).

    Outside autograd and compilers, float32/64 inputs go through BatchNorm's eval kernel (x - 0) / sqrt(1 + 0)
    * w + b, which is exact and faster than a broadcast ``addcmul`` on CPU; per-sample parameters use the
    (1, N*C, H, W) view of a contiguous input, so that every (n, c) map is one "channel".
    """
    n, c = scale.shape
    if _eager_no_grad(input, scale, shift) and input.dtype in (torch.float32, torch.float64):
        weight, bias = scale.reshape(-1).to(input.dtype), shift.reshape(-1).to(input.dtype)
        zeros, ones = input.new_zeros(n * c), input.new_ones(n * c)
        if n == 1:
            return F.batch_norm(input, zeros, ones, weight, bias, False, 0.0, 0.0)
        if input.is_contiguous():
            # write through a (1, N*C, H, W) view of a fresh tensor: the result must not be a view itself
            # (autograd forbids in-place ops, e.g. ReLU(inplace=True), on views made inside a Function)
            out = torch.empty_like(input)
            flat_shape = (1, n * c, *input.shape[2:])
            torch.ops.aten.native_batch_norm.out(
                input.view(flat_shape), weight, bias, zeros, ones, False, 0.0, 0.0,
                out=out.view(flat_shape), save_mean=input.new_empty(0), save_invstd=input.new_empty(0))
            return out
    return torch.addcmul(shift.reshape(n, c, 1, 1).to(input.dtype), input, scale.reshape(n, c, 1, 1).to(input.dtype))


def _tracing() -> bool:
    """True under torch.compile / torch.export / jit: they get plain ops, which they fuse or export."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting()


def _records_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _eager_no_grad(*tensors: Tensor) -> bool:
    return not _records_grad(*tensors) and not _tracing()


class _FoldedAffine(torch.autograd.Function):
    """y = gamma_hat * (x - mean) * invstd + beta_hat with an analytic backward.

    With batch statistics (training) the mean and invstd are functions of x and the backward is BatchNorm's,
    written for per-sample gamma_hat:  with S1 = sum_hw dy, S2 = sum_hw dy * x_hat (both (N, C)),
        d beta_hat = S1,  d gamma_hat = S2,
        dx = invstd * (gamma_hat * dy - m1 - x_hat * m2),  m1 = sum_n gamma_hat S1 / L,  m2 = sum_n gamma_hat S2 / L,
    which is  dx = dy * P[n, c] + x * Q[c] + R[c]: one write pass after one read pass for S1, S2.
    """

    @staticmethod
    def forward(ctx, input, gamma_hat, beta_hat, mean, invstd, batch_statistics: bool):  # type: ignore[override]
        scale = gamma_hat * invstd
        shift = beta_hat - mean * scale
        ctx.save_for_backward(input, gamma_hat, mean, invstd)
        ctx.batch_statistics = batch_statistics
        return apply_affine(input, scale, shift)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        input, gamma_hat, mean, invstd = ctx.saved_tensors
        n, c = gamma_hat.shape
        dtype = gamma_hat.dtype
        s1, sxy = _sums(grad_out, input)
        s1, sxy = s1.to(dtype), sxy.to(dtype)
        s2 = (sxy - mean * s1) * invstd  # sum_hw dy * x_hat
        p = gamma_hat * invstd
        if ctx.batch_statistics:
            count = grad_out.numel() // c
            m1 = (gamma_hat * s1).sum(0) / count
            m2 = (gamma_hat * s2).sum(0) / count
            q = -m2 * invstd * invstd
            r = (m2 * mean * invstd - m1) * invstd
            grad_in = apply_affine(input, q.reshape(1, c), r.reshape(1, c))
            grad_in.addcmul_(grad_out, p.to(input.dtype).reshape(n, c, 1, 1))
        else:
            grad_in = apply_affine(grad_out, p, torch.zeros_like(p))
        return grad_in, s2, s1, None, None, None


def _sums(grad_out: Tensor, input: Tensor) -> tuple[Tensor, Tensor]:
    """(sum_hw dy, sum_hw dy * x), each (N, C), in one read of both: BatchNorm's backward reduction kernel
    on the (1, N*C, H, W) views (mean 0, invstd 1) where the layout allows, einsum otherwise."""
    n, c, h, w = input.shape
    if (grad_out.dtype == input.dtype and input.dtype in (torch.float32, torch.float64)
            and grad_out.is_contiguous() and input.is_contiguous()):
        zeros, ones = input.new_zeros(n * c), input.new_ones(n * c)
        _, sxy, s1 = torch.ops.aten.native_batch_norm_backward(
            grad_out.view(1, n * c, h, w), input.view(1, n * c, h, w), None, None, None, zeros, ones, True, 0.0,
            [False, True, True])
        return s1.view(n, c), sxy.view(n, c)
    acc = torch.float64 if input.dtype == torch.float64 else torch.float32
    return grad_out.sum(dim=(2, 3), dtype=acc), torch.einsum("nchw,nchw->nc", grad_out, input).to(acc)


def sep_batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor,
    bias: Tensor,
    attention: Tensor,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Separable batch normalization (eq. 6-7) of a 4-D input.

    Normalisation is ``F.batch_norm(input, running_mean, running_var, None, None, training, momentum, eps)``:
    batch statistics when ``training`` (or when no running statistics are given), running statistics
    otherwise; running statistics are updated in place when ``training`` and they are given, exactly as
    BatchNorm2d does (``momentum`` is the exponential-average factor).

    Args:
        input: x, shape (N, C, H, W).
        running_mean, running_var: (C,) or None.
        weight, bias: gamma and beta, shape (K, C).
        attention: pi, shape (N, G, K), with C divisible by G.

    Shape:
        Output: same as ``input``.

    Examples:
        >>> x = torch.randn(4, 6, 5, 5)
        >>> w, b = torch.ones(3, 6), torch.zeros(3, 6)
        >>> pi = torch.softmax(torch.randn(4, 2, 3), dim=-1)
        >>> y = sep_batch_norm(x, None, None, w, b, pi, training=True)
        >>> torch.allclose(y, F.batch_norm(x, None, None, training=True), atol=1e-5)
        True
    """
    if input.dim() != 4:
        raise ValueError(f"expected a 4-D input (N, C, H, W), got {input.dim()}-D of shape {tuple(input.shape)}")
    use_batch = training or running_mean is None or running_var is None
    fused = _use_fused(input, weight, bias, attention)
    stat_dtype = weight.dtype if weight.dtype in (torch.float32, torch.float64) else torch.float32
    if use_batch:
        # the fused backward differentiates the statistics itself; plain ops need differentiable ones
        plain = not fused and (_tracing() or _records_grad(input))
        mean, var = batch_stats(input) if plain else fast_batch_stats(input)
        mean, var = mean.to(stat_dtype), var.to(stat_dtype)
        if training and running_mean is not None and running_var is not None:
            update_running_stats(running_mean, running_var, mean, var, input.numel() // input.shape[1], momentum)
    else:
        mean, var = running_mean.to(stat_dtype), running_var.to(stat_dtype)
    gamma_hat, beta_hat = mix_affine(attention, weight.to(stat_dtype), bias.to(stat_dtype))
    if fused:
        invstd = torch.rsqrt(var + eps)
        return _FoldedAffine.apply(input, gamma_hat, beta_hat, mean, invstd, use_batch)
    scale, shift = fold_affine(gamma_hat, beta_hat, mean, var, eps)
    return apply_affine(input, scale, shift)


def _use_fused(*tensors: Tensor) -> bool:
    """The analytic backward pays off only when eager autograd records."""
    return _records_grad(*tensors) and not _tracing()

