"""Branch attention for Separable Batch Normalization (paper section III-B, eq. 3, 5 and Fig. 1).

Each module maps the layer input X (N, C, H, W) to logits (N, G, K); `branch_weights` turns logits into
the attention pi with the temperature-controlled softmax of eq. (5), pi = softmax(logits / tau) over K.

- `GroupedAttention` (Fig. 1, eq. 6): adaptive max-pool to T x T -> 1x1 conv C -> G -> flatten (G*T*T)
  -> MLP -> logits (N, G, K).
- `SqueezeExcitationAttention` (eq. 3): global average pool -> reduction -> non-linearity -> K, one weight
  vector per sample (G = 1). With ``gate=True`` the excitation ends in a sigmoid as eq. (3) states (the
  paper's simple SepBN); with ``gate=False``, LeakyReLU and a 0.1 C reduction it is the attention of the
  authors' public code.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = ["GroupedAttention", "SqueezeExcitationAttention", "branch_weights", "adaptive_max_pool", "window_max",
           "pool_tap"]

AGGREGATIONS = ("soft", "hard")


def branch_weights(logits: Tensor, temperature: Tensor | float, aggregation: str = "soft") -> Tensor:
    """pi = softmax(logits / tau) over the last dim (eq. 5); ``"hard"`` keeps the argmax branch (Table III).

    Hard aggregation is one-hot in the forward pass and passes the soft gradient backwards
    (straight-through estimator): a true argmax has zero gradient, which leaves the attention untrained
    (the paper reports exactly that for its hard variant); the estimator lets the attention learn while
    each sample still uses a single mapping set.

    Examples:
        >>> branch_weights(torch.tensor([[[0.0, 2.0]]]), 1.0, "hard")
        tensor([[[0., 1.]]])
    """
    if logits.dtype in (torch.float16, torch.bfloat16):  # softmax in float32 under autocast
        logits = logits.float()
    soft = torch.softmax(logits / temperature, dim=-1)
    if aggregation == "soft":
        return soft
    if aggregation != "hard":
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    hard = F.one_hot(soft.argmax(dim=-1), soft.shape[-1]).to(soft.dtype)
    return hard + (soft - soft.detach())


class _SparseMaxPool(torch.autograd.Function):
    """Adaptive max-pool whose gradient is a sparse tensor of N*C*T*T entries.

    Autograd adds it into the layer input's dense gradient in place, instead of materialising a mostly-zero
    gradient of the input's size and adding that (two passes over the activation saved per layer).
    """

    @staticmethod
    def forward(ctx, input: Tensor, size: int) -> Tensor:  # type: ignore[override]
        values, indices = F.adaptive_max_pool2d(input, size, return_indices=True)
        ctx.save_for_backward(indices)
        ctx.shape = input.shape
        return values

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (indices,) = ctx.saved_tensors
        n, c, h, w = ctx.shape
        flat = indices.reshape(n, c, -1)
        nc = torch.arange(n * c, device=grad.device).reshape(n, c, 1).expand_as(flat)
        coords = torch.stack((nc // c, nc % c, flat // w, flat % w)).reshape(4, -1)
        # windows overlap when T does not divide H or W: indices may repeat, so not coalesced (add sums them)
        sparse = torch.sparse_coo_tensor(coords, grad.reshape(-1), (n, c, h, w), check_invariants=False)
        return sparse, None


class _PoolTap(torch.autograd.Function):
    """(input, adaptive max-pool of input) in one node: the only consumer of a SepBN layer's input.

    The layer feeds the first output (an alias of ``input``) to its folded affine and the second to the
    attention. Backward receives the affine's fresh dense gradient and adds the pooled gradient into it in
    place (one ``scatter_add_`` of N*C*T*T values), so autograd never has two gradients of the input to sum:
    no sparse tensor, no index arithmetic, no out-of-place dense + sparse copy of the activation.
    """

    @staticmethod
    def forward(ctx, input: Tensor, size: int) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        values, indices = F.adaptive_max_pool2d(input, size, return_indices=True)
        ctx.save_for_backward(indices)
        ctx.shape = input.shape
        return input.view_as(input), values

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_input: Tensor | None, grad_pooled: Tensor | None):  # type: ignore[override]
        (indices,) = ctx.saved_tensors
        n, c, h, w = ctx.shape
        if grad_input is None:
            grad_input = grad_pooled.new_zeros(ctx.shape)
        if grad_pooled is None:
            return grad_input, None
        src = grad_pooled.to(grad_input.dtype)
        if grad_input.is_contiguous():
            # overlapping windows (T not dividing H or W) may repeat an index: scatter_add_ sums them
            grad_input.view(n * c, h * w).scatter_add_(1, indices.reshape(n * c, -1), src.reshape(n * c, -1))
        else:  # e.g. channels_last: the same sums through 4-D indices, still in place
            flat = indices.reshape(n, c, -1)
            nn_ = torch.arange(n, device=flat.device).reshape(n, 1, 1).expand_as(flat)
            cc = torch.arange(c, device=flat.device).reshape(1, c, 1).expand_as(flat)
            grad_input.index_put_((nn_, cc, flat // w, flat % w), src.reshape(n, c, -1), accumulate=True)
        return grad_input, None


def pool_tap(input: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """``(input, F.adaptive_max_pool2d(input, size))`` for eager autograd, see `_PoolTap`. Use the first
    output in place of ``input`` downstream, and nothing else, so that its gradient is owned here."""
    return _PoolTap.apply(input, size)


@functools.lru_cache(maxsize=None)
def pooling_windows(size: int, out: int) -> tuple[tuple[int, int], ...]:
    """Adaptive pooling windows: [floor(i * size / out), ceil((i + 1) * size / out)) for i < out."""
    return tuple(((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out))


def _band_max(input: Tensor, dim: int, start: int, stop: int) -> Tensor:
    if stop - start <= 8:  # short windows: elementwise maxima beat a reduction over a tiny dim
        return functools.reduce(torch.maximum, [input.select(dim, i) for i in range(start, stop)])
    return input.narrow(dim, start, stop - start).amax(dim)


def window_max(input: Tensor, size: int) -> Tensor:
    """``F.adaptive_max_pool2d(input, size)`` as row-band then column-band maxima (2 * size reductions).

    Same values; on CPU 2-5x faster than the pooling kernel for NCHW input, and it exports to ONNX for
    any input size. Under autograd it splits the gradient evenly among tied maxima (the kernel picks one).
    """
    h, w = input.shape[-2:]
    rows = torch.stack([_band_max(input, 2, a, b) for a, b in pooling_windows(h, size)], dim=2)  # (N, C, T, W)
    return torch.stack([_band_max(rows, 3, a, b) for a, b in pooling_windows(w, size)], dim=-1)


def adaptive_max_pool(input: Tensor, size: int) -> Tensor:
    """Adaptive max-pool to ``size`` x ``size``, by the fastest exact route for the context:

    - eager autograd: the pooling kernel with a sparse backward (`_SparseMaxPool`);
    - export (torch.export / ONNX) and tracing: `window_max` (plain slices and ``amax``: any input size exports);
    - torch.compile: the pooling kernel (inductor calls ATen's for windows this large; with the channels-last
      activations inductor picks for convolutions it is fast, where its own strided ``amax`` loops are not);
    - eager inference: `window_max` for contiguous NCHW input, the kernel for channels-last.
    """
    if torch.compiler.is_exporting() or torch.jit.is_tracing() or torch.jit.is_scripting():
        return window_max(input, size)
    if torch.compiler.is_compiling():
        return F.adaptive_max_pool2d(input, size)
    if torch.is_grad_enabled() and input.requires_grad and input.layout == torch.strided:
        return _SparseMaxPool.apply(input, size)
    return window_max(input, size) if input.is_contiguous() else F.adaptive_max_pool2d(input, size)


class GroupedAttention(nn.Module):
    """Grouped branch attention of Fig. 1: logits (N, G, K) from X (N, C, H, W).

    ``pool_size`` is T, ``num_groups`` G, ``num_branches`` K. The MLP is Linear(G*T*T, hidden) -> ReLU ->
    Linear(hidden, G*K) with hidden = max(16, G*K) (the paper does not give it; this keeps the block tiny).
    The last layer starts small (std 0.01, zero bias) so pi starts close to uniform: a fresh layer maps
    every sample with the average of its K mapping sets.
    """

    def __init__(
        self,
        num_features: int,
        num_branches: int,
        num_groups: int,
        pool_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.num_branches, self.num_groups, self.pool_size = num_branches, num_groups, pool_size
        hidden = max(16, num_groups * num_branches)
        self.reduce = nn.Conv2d(num_features, num_groups, 1, **factory)
        self.fc1 = nn.Linear(num_groups * pool_size * pool_size, hidden, **factory)
        self.fc2 = nn.Linear(hidden, num_groups * num_branches, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.reduce.reset_parameters()
        self.fc1.reset_parameters()
        nn.init.normal_(self.fc2.weight, std=0.01)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, input: Tensor) -> Tensor:
        return self.from_pooled(adaptive_max_pool(input, self.pool_size))

    def from_pooled(self, pooled: Tensor) -> Tensor:
        """Logits (N, G, K) from the pooled input (N, C, T, T): the block after its adaptive max-pool."""
        pooled = pooled.flatten(2).transpose(1, 2)  # (N, T*T, C)
        # the 1x1 conv as a matmul: on CPU a conv primitive costs milliseconds on a 3x3 map
        weight = self.reduce.weight.reshape(self.num_groups, -1)
        z = F.linear(pooled.to(weight.dtype), weight, self.reduce.bias).transpose(1, 2).flatten(1)  # (N, G*T*T)
        return self.fc2(F.relu(self.fc1(z))).reshape(-1, self.num_groups, self.num_branches)


class SqueezeExcitationAttention(nn.Module):
    """Squeeze-and-excitation branch attention (eq. 3): logits (N, 1, K) from X (N, C, H, W).

    F_sq = global average pool -> Linear(C, hidden) -> activation; F_ex = Linear(hidden, K) [-> sigmoid].
    ``hidden`` defaults to max(4, C // 16) (the reduction rate r of SE networks; the paper does not give r).
    """

    def __init__(
        self,
        num_features: int,
        num_branches: int,
        hidden_features: int | None = None,
        *,
        activation: str = "relu",
        gate: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if activation not in ("relu", "leaky_relu"):
            raise ValueError(f"activation must be 'relu' or 'leaky_relu', got {activation!r}")
        factory = {"device": device, "dtype": dtype}
        hidden = hidden_features if hidden_features is not None else max(4, num_features // 16)
        self.num_branches, self.gate, self.activation = num_branches, gate, activation
        self.squeeze = nn.Linear(num_features, hidden, **factory)
        self.excite = nn.Linear(hidden, num_branches, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.squeeze.reset_parameters()
        nn.init.normal_(self.excite.weight, std=0.01)
        nn.init.zeros_(self.excite.bias)

    def forward(self, input: Tensor) -> Tensor:
        z = self.squeeze(input.mean(dim=(2, 3)).to(self.squeeze.weight.dtype))
        z = F.relu(z) if self.activation == "relu" else F.leaky_relu(z, 0.01)
        z = self.excite(z)
        return (torch.sigmoid(z) if self.gate else z).unsqueeze(1)
