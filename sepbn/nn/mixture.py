"""MixtureBatchNorm2d: the SepBN variant of the authors' public code (see PROTOCOLS.md, "Gotchas").

K complete BatchNorm2d branches (own running statistics and affine parameters), mixed per sample by an
SE-style attention: global average pool -> 1x1 conv C -> 0.1 C -> LeakyReLU -> 1x1 conv -> K ->
softmax(. / T). Outputs are mixed, y = sum_k pi[n, k] * BN_k(x)[n]. Offered to compare with the paper's
`SepBatchNorm2d`; it reuses the branch container of the brute-force layer, the SE attention block and
the functional mixing.

Every branch sees the whole batch, so in training all branches normalise with the same batch statistics
and the mixture is exactly eq. (4) applied to x_hat; in eval each branch uses its own running statistics,
which fold into per-branch scale/shift before mixing:  BN_k(x) = x * a_k + b_k,
a_k = gamma_k / sqrt(rv_k + eps), b_k = beta_k - rm_k * a_k, so y = x * sum_k pi_k a_k + sum_k pi_k b_k.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import functional as SF
from .attention import SqueezeExcitationAttention, branch_weights
from .bruteforce import BranchBatchNorm2d
from .sepbn import TemperatureMixin, batchnorm_state, check_input

__all__ = ["MixtureBatchNorm2d"]


class MixtureBatchNorm2d(TemperatureMixin, BranchBatchNorm2d):
    """K BatchNorm2d branches mixed per sample by softmax(SE(x) / tau) (the authors' public code).

    Args:
        num_features: C.
        num_branches: K.
        reduction: hidden width of the attention as a fraction of C (0.1 in the public code; at least 1).
        temperature: tau; saved as buffer ``tau`` like `SepBatchNorm2d`.

    Examples:
        >>> layer = MixtureBatchNorm2d(16, num_branches=3)
        >>> layer(torch.randn(4, 16, 5, 5)).shape, layer.attention_weights(torch.randn(4, 16, 5, 5)).shape
        (torch.Size([4, 16, 5, 5]), torch.Size([4, 1, 3]))
    """

    def __init__(
        self,
        num_features: int,
        num_branches: int = 3,
        *,
        reduction: float = 0.1,
        temperature: float = 1.0,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if not affine:
            raise ValueError(f"MixtureBatchNorm2d mixes affine branches; affine must be True, got {affine!r}")
        if not reduction > 0:
            raise ValueError(f"reduction must be positive, got {reduction!r}")
        super().__init__(num_features, num_branches, eps=eps, momentum=momentum,
                         track_running_stats=track_running_stats, device=device, dtype=dtype)
        hidden = max(1, int(reduction * num_features))
        self.attention = SqueezeExcitationAttention(num_features, num_branches, hidden, activation="leaky_relu",
                                                    gate=False, device=device, dtype=dtype)
        self.register_buffer("tau", torch.empty((), device=device, dtype=dtype))
        self.temperature = temperature

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.attention.reset_parameters()

    def attention_weights(self, input: Tensor) -> Tensor:
        """pi, shape (N, 1, K)."""
        check_input(input)
        return branch_weights(self.attention(input), self.tau)

    def forward(self, input: Tensor) -> Tensor:
        check_input(input)
        pi = self.attention_weights(input)
        if any(type(b) is not nn.BatchNorm2d for b in self.branches):  # e.g. SyncBatchNorm branches
            outs = torch.stack([b(input) for b in self.branches])
            return torch.einsum("nk,knchw->nchw", pi[:, 0].to(outs.dtype), outs)
        weight = torch.stack([b.weight for b in self.branches])
        bias = torch.stack([b.bias for b in self.branches])
        states = [batchnorm_state(b) for b in self.branches]
        eps = self.branches[0].eps
        if states[0][0]:  # batch statistics, shared by all branches
            if any(s[1] is not None for s in states):
                mean, var = SF.fast_batch_stats(input)
                count = input.numel() // input.shape[1]
                for _, rm, rv, factor in states:
                    if rm is not None and rv is not None:
                        SF.update_running_stats(rm, rv, mean, var, count, factor)
            return SF.sep_batch_norm(input, None, None, weight, bias, pi, True, 0.0, eps)
        running_mean = torch.stack([s[1] for s in states])
        running_var = torch.stack([s[2] for s in states])
        scale, shift = SF.fold_affine(weight, bias, running_mean, running_var, eps)  # (K, C) each
        mixed_scale, mixed_shift = SF.mix_affine(pi, scale, shift)
        return SF.apply_affine(input, mixed_scale.to(input.dtype), mixed_shift.to(input.dtype))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, tau={self.temperature}"
