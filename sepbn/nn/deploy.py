"""SepBN at inference: the attentive per-sample affine as a short, fixed chain of ops (paper eq. 5-7, Fig. 1).

A folded SepBN layer (`sepbn.nn.fuse.MixedAffine2d`) computes, from x (N, C, H, W):

    P  = adaptive max-pool of x to T x T                       one reduction per row band, then per column band
    Z  = W_r P + b_r                  (N, G, T^2)               one batched matmul (the 1x1 conv C -> G), merged
                                                                with fc1 into one matmul for narrow layers
    pi = softmax(fc2(relu(fc1(Z))) / tau) over K   (N, G, K)    two matmuls, eq. (5); 1 / tau folded into fc2
    [scale; shift] = pi @ M           (N, C) each               one matmul: M (G K, C) is block-diagonal in G,
                                                                M[g K + k, c] = gamma_k[c] (beta_k[c]) if c in g
    y  = x * scale[n, c] + shift[n, c]                         one pass, eq. (6)-(7)

Adaptive pooling windows are [floor(i S / T), ceil((i + 1) S / T)) along a side S. The export pools
them with one ``MaxPool`` whenever some kernel, stride and -inf padding give the same windows once clipped
(every side at T <= 3: 80 -> 3 is kernel 28, stride 27, padding 1); a side without such a pool gets one Slice +
ReduceMax per window (ONNX Runtime's Gather is slow there). Eager PyTorch pools a small activation (up to
``SMALL_NUMEL`` elements) with ATen's ``adaptive_max_pool2d`` in one call, and a larger one with one ``amax``
per row band (reading it once, vectorised along the rows) and then one per column band of the T-row rest.
Measured on the project's CPU at batch 1, one thread: ATen's NCHW pooling kernels (``adaptive_max_pool2d``,
and ``max_pool2d`` with any kernel) are scalar loops, 5-30x slower than band reductions on large maps;
strided views with overlapping windows and gathers were 5-20x slower than bands too, so both were dropped.
Every route gives the pooling kernel's values.

`DeployMaxPool2d` replaces the networks' own ``nn.MaxPool2d`` at inference for the same reason: the max of k
strided slices per side (``torch.maximum``), 10-30x faster than ATen's NCHW ``max_pool2d`` at batch 1.

Eager inference writes the affine with BatchNorm's eval kernel on the (1, N*C, H, W) view (one vectorised
pass); the mixing matmul yields that kernel's zero mean and unit variance too (rows 2 and 3 of ``mixing``).
torch.compile, torch.export / ONNX and tracing get plain ops (``x * scale + shift``), which they fuse or export.

Channels-last tensors (how the torch backend of `sepbn predict` runs a fused model on CPU): ATen's
channels-last pooling kernels run vectorised over channels, so the attention pools with one
``adaptive_max_pool2d`` call at any size and
`DeployMaxPool2d` is one ``max_pool2d`` (on the shipped 300w68 model at batch 1, one thread: 7-10 us for
its 8x8 maps, against 43-98 us in NCHW; its first 16-channel 128x128 map, 83-115 us, about one read);
the affine is BatchNorm's channels-last kernel at batch 1 and one ``addcmul`` above. Outputs stay
channels-last.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import GroupedAttention, pooling_windows, window_max

__all__ = [
    "DeployedGroupedAttention", "DeployMaxPool2d", "mixing_matrix", "mixed_affine", "deploy_max_pool",
]

# eager pooling of an activation up to this many elements: ATen's adaptive_max_pool2d, one call (at batch 1
# the 4T + 2 calls of the band route cost more than the pooling); above it, the band route
SMALL_NUMEL = 1 << 15


def _plain() -> bool:
    """torch.compile / torch.export / jit: plain ops they can fuse or export, and no cached tensors."""
    return (torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()
            or torch.jit.is_scripting())


@functools.lru_cache(maxsize=None)
def _pool_params(size: int, out: int) -> tuple[int, int, int] | None:
    """(kernel, stride, padding) of one max-pool whose windows, clipped to the side, are the adaptive ones.

    The first window fixes kernel - padding (its end) and the second stride - padding (its start); padding
    (-inf, symmetric, at most half the kernel as torch requires) absorbs a longer middle window: 80 -> 3 is
    [0, 27), [26, 54), [53, 80) = kernel 28, stride 27, padding 1. Found for every side at T <= 3 (except a
    side shorter than T), for some at larger T; None otherwise.
    """
    windows = pooling_windows(size, out)
    for pad in range(size + 1):
        kernel = windows[0][1] + pad
        stride = windows[1][0] + pad if out > 1 else kernel
        if stride < 1 or 2 * pad > kernel or (size + 2 * pad - kernel) // stride + 1 != out:
            continue
        if all((max(i * stride - pad, 0), min(i * stride - pad + kernel, size)) == w for i, w in enumerate(windows)):
            return kernel, stride, pad
    return None


def _band_max(x: Tensor, dim: int, out: int) -> Tensor:
    """Max over the windows along ``dim`` as one reduction per window (ONNX: Slice + ReduceMax each, one
    Concat). ONNX Runtime runs this at about the speed of one read; its Gather on an inner axis is 20-30x
    slower (issue 18: 106 of 332 ms of a batch of 32 through Vanilla 0.25 was one Gather)."""
    return torch.cat([x.narrow(dim, a, b - a).amax(dim, keepdim=True)
                      for a, b in pooling_windows(x.shape[dim], out)], dim)


def _channels_last(x: Tensor) -> bool:
    """A 4-d tensor stored channels-last (and not also plain contiguous, as a 1-channel or 1x1 map is)."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _eager_pool(x: Tensor, out: int) -> Tensor:
    # channels-last: ATen's kernel runs vectorised over channels; a small NCHW map: one kernel call beats a
    # few cheap ones
    if _channels_last(x) or x.numel() <= SMALL_NUMEL:
        return F.adaptive_max_pool2d(x, out)
    return window_max(x, out)  # row bands read x once; the columns work on T rows


def _export_pool(x: Tensor, out: int) -> Tensor:
    h, w = x.shape[-2:]
    rows, cols = _pool_params(h, out), _pool_params(w, out)
    if rows is not None and cols is not None:  # one MaxPool node
        return F.max_pool2d(x, (rows[0], cols[0]), (rows[1], cols[1]), (rows[2], cols[2]))
    if rows is not None:
        return _band_max(F.max_pool2d(x, (rows[0], 1), (rows[1], 1), (rows[2], 0)), 3, out)
    x = _band_max(x, 2, out)  # rows first: one read of the activation, the rest works on T rows
    return F.max_pool2d(x, (1, cols[0]), (1, cols[1]), (0, cols[2])) if cols is not None else _band_max(x, 3, out)


def deploy_max_pool(x: Tensor, out: int) -> Tensor:
    """``F.adaptive_max_pool2d(x, out)`` (values) with a few ops: see the module docstring for the routes.

    torch.compile keeps ATen's pooling kernel (inductor calls it; its own strided loops over channels-last
    convolution outputs were slower); export and tracing get ``MaxPool`` and per-window reductions; eager
    PyTorch gets ATen's kernel for a small map and band reductions for a large one.
    """
    if torch.compiler.is_compiling() and not torch.compiler.is_exporting():
        return F.adaptive_max_pool2d(x, out)
    if torch.compiler.is_exporting() or torch.jit.is_tracing() or torch.jit.is_scripting():
        return _export_pool(x, out)
    return _eager_pool(x, out)


# the 1x1 conv C -> G and the MLP's first Linear are merged into one matrix (C T^2, hidden) up to this many
# elements: one matmul instead of two at about the same bytes (a wide layer keeps the two, which read less)
MERGE_MAX_NUMEL = 1 << 17


class DeployedGroupedAttention(nn.Module):
    """`GroupedAttention`'s logits (N, G, K) for inference, its maps stored in the shapes the chain uses.

    Pooling by `deploy_max_pool`. No non-linearity sits between the 1x1 conv C -> G and the MLP's first
    Linear, so for a narrow layer (C T^2 hidden <= ``MERGE_MAX_NUMEL``) they are one matrix ``merged_weight``
    (C T^2, hidden) and the chain is three matmuls; a wide one keeps the conv as one batched matmul over the
    pooled (N, C, T^2) map (``reduce_weight`` (1, G, C)), then ``fc1_weight`` (G T^2, hidden). ``scale_logits``
    folds a positive factor (1 / tau) into the last Linear. ``fuse_for_inference`` builds it from a folded
    `GroupedAttention`.
    """

    def __init__(self, attention: GroupedAttention) -> None:
        super().__init__()
        self.num_branches, self.num_groups, self.pool_size = (attention.num_branches, attention.num_groups,
                                                              attention.pool_size)
        g, tt = self.num_groups, self.pool_size ** 2
        reduce_w, reduce_b = attention.reduce.weight.reshape(g, -1), attention.reduce.bias
        fc1_t = attention.fc1.weight.t().reshape(g, tt, -1)  # (G, T^2, hidden)
        self.merged = reduce_w.shape[1] * tt * fc1_t.shape[-1] <= MERGE_MAX_NUMEL
        if self.merged:  # hidden = P (N, C T^2) @ W + b
            frozen = {"merged_weight": torch.einsum("gc,gth->cth", reduce_w, fc1_t).reshape(-1, fc1_t.shape[-1]),
                      "merged_bias": attention.fc1.bias + torch.einsum("g,gth->h", reduce_b, fc1_t)}
        else:
            frozen = {"reduce_weight": reduce_w.unsqueeze(0), "reduce_bias": reduce_b.view(g, 1),
                      "fc1_weight": fc1_t.reshape(g * tt, -1), "fc1_bias": attention.fc1.bias}
        frozen.update(fc2_weight=attention.fc2.weight.t(), fc2_bias=attention.fc2.bias)
        for name, value in frozen.items():
            self.register_buffer(name, value.detach().contiguous().clone())

    @torch.no_grad()
    def scale_logits(self, factor: float) -> None:
        """Multiply the logits by ``factor`` > 0 (softmax(z / tau) = softmax of the scaled logits)."""
        if not factor > 0:
            raise ValueError(f"the logit factor must be > 0, got {factor}")
        self.fc2_weight.mul_(factor)
        self.fc2_bias.mul_(factor)

    def forward(self, input: Tensor) -> Tensor:
        g, t = self.num_groups, self.pool_size
        pooled = deploy_max_pool(input, t)
        if pooled.dtype != self.fc2_weight.dtype:
            pooled = pooled.to(self.fc2_weight.dtype)
        if self.merged:
            hidden = torch.addmm(self.merged_bias, pooled.reshape(-1, input.shape[1] * t * t), self.merged_weight)
        else:
            pooled = pooled.reshape(-1, input.shape[1], t * t)
            if _plain():  # broadcast matmul: one MatMul node, no batch-size arithmetic in the graph
                z = torch.matmul(self.reduce_weight, pooled) + self.reduce_bias
            else:
                z = torch.baddbmm(self.reduce_bias, self.reduce_weight.expand(pooled.shape[0], -1, -1), pooled)
            hidden = torch.addmm(self.fc1_bias, z.view(-1, g * t * t), self.fc1_weight)
        return torch.addmm(self.fc2_bias, hidden.relu_(), self.fc2_weight).view(-1, g, self.num_branches)

    def extra_repr(self) -> str:
        return f"K={self.num_branches}, G={self.num_groups}, T={self.pool_size}, merged={self.merged}"


def mixing_matrix(weight: Tensor, bias: Tensor, num_groups: int) -> tuple[Tensor, Tensor]:
    """(M (4, G K, C), b (4, 1, C)) with ``pi.view(N, G K) @ M + b`` = [gamma_hat; beta_hat; 0; 1] (eq. 6).

    Rows 2 and 3 are the zero mean and unit variance BatchNorm's eval kernel needs to apply the affine.
    """
    k, c = weight.shape
    m = c // num_groups
    group = torch.arange(c, device=weight.device) // m  # group of each channel
    mask = (group.view(1, c) == torch.arange(num_groups, device=weight.device).view(-1, 1)).to(weight.dtype)
    mixing = weight.new_zeros(4, num_groups, k, c)
    mixing[0] = mask.view(num_groups, 1, c) * weight.view(1, k, c)
    mixing[1] = mask.view(num_groups, 1, c) * bias.view(1, k, c)
    offset = weight.new_zeros(4, 1, c)
    offset[3] = 1.0
    return mixing.view(4, num_groups * k, c), offset


def mixed_affine(input: Tensor, pi: Tensor, mixing: Tensor, offset: Tensor) -> Tensor:
    """y[n, c] = x[n, c] * gamma_hat[n, c] + beta_hat[n, c], gamma_hat and beta_hat mixed by pi (N, G, K)."""
    n, c, h, w = input.shape
    pi = (pi if pi.dtype == mixing.dtype else pi.to(mixing.dtype)).reshape(-1, mixing.shape[1])
    no_grad = not (torch.is_grad_enabled() and (input.requires_grad or pi.requires_grad))
    if (not _plain() and no_grad and input.dtype == mixing.dtype and input.dtype in (torch.float32, torch.float64)
            and (input.is_contiguous() or (n == 1 and _channels_last(input)))):
        # one pass: BatchNorm's eval kernel over the (1, N*C, H, W) view, every (n, c) map one "channel"
        weight, bias, mean, var = torch.baddbmm(offset, pi.expand(4, n, -1), mixing).view(4, n * c).unbind(0)
        flat = input if n == 1 else input.view(1, n * c, h, w)
        out = torch.ops.aten._native_batch_norm_legit_no_training(flat, weight, bias, mean, var, 0.0, 0.0)[0]
        return out if n == 1 else out.view(n, c, h, w)
    if not _plain() and no_grad and _channels_last(input):  # one pass; the (1, N*C, H, W) view needs NCHW
        scale, shift = torch.bmm(pi.expand(2, n, -1), mixing[:2]).to(input.dtype).unbind(0)
        return torch.addcmul(shift.view(n, c, 1, 1), input, scale.view(n, c, 1, 1))
    scale = torch.mm(pi, mixing[0]).view(-1, c, 1, 1).to(input.dtype)
    shift = torch.mm(pi, mixing[1]).view(-1, c, 1, 1).to(input.dtype)
    return input * scale + shift


def _slices_max(x: Tensor, dim: int, kernel: int, stride: int) -> Tensor:
    """Max over windows ``kernel`` long, ``stride`` apart, along ``dim``: the max of ``kernel`` strided slices."""
    count = (x.shape[dim] - kernel) // stride + 1
    span = (count - 1) * stride + 1
    out = x.narrow(dim, 0, span)[(slice(None),) * dim + (slice(None, None, stride),)]
    for i in range(1, kernel):
        out = torch.maximum(out, x.narrow(dim, i, span)[(slice(None),) * dim + (slice(None, None, stride),)])
    return out


class DeployMaxPool2d(nn.Module):
    """An ``nn.MaxPool2d`` (no dilation, floor mode, no indices) for inference; see the module docstring.

    Eager PyTorch on NCHW tensors: rows, then columns, each the ``torch.maximum`` of k strided slices
    (padding with -inf, as the pooling kernel pads); NaN propagates as in the kernel. Export, tracing and
    torch.compile get ``F.max_pool2d`` (one ``MaxPool`` node; inductor writes its own loop), and so do
    channels-last tensors (ATen's kernel for them is fast).

    Examples:
        >>> pool = DeployMaxPool2d(nn.MaxPool2d(3, 2, padding=1))
        >>> x = torch.randn(2, 4, 9, 8)
        >>> torch.equal(pool(x), F.max_pool2d(x, 3, 2, 1))
        True
    """

    def __init__(self, pool: nn.MaxPool2d) -> None:
        super().__init__()
        if not deployable_max_pool(pool):
            raise ValueError(f"DeployMaxPool2d takes a MaxPool2d without dilation, ceil_mode or indices, got {pool}")
        # nn.MaxPool2d has already set a missing stride to the kernel size
        self.kernel_size, self.stride, self.padding = _pair(pool.kernel_size), _pair(pool.stride), _pair(pool.padding)

    def forward(self, input: Tensor) -> Tensor:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        # export, compile and channels-last (a fast kernel) get ATen's pooling, as do too-small maps (its errors)
        if (_plain() or _channels_last(input) or input.dim() != 4 or input.shape[2] + 2 * ph < kh
                or input.shape[3] + 2 * pw < kw):
            return F.max_pool2d(input, self.kernel_size, self.stride, self.padding)
        if ph or pw:
            input = F.pad(input, (pw, pw, ph, ph), value=float("-inf"))
        return _slices_max(_slices_max(input, 2, kh, sh), 3, kw, sw)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def deployable_max_pool(module: nn.Module) -> bool:
    """Whether ``module`` is an ``nn.MaxPool2d`` that `DeployMaxPool2d` can stand in for."""
    return (type(module) is nn.MaxPool2d and _pair(module.dilation) == (1, 1) and not module.ceil_mode
            and not module.return_indices)
