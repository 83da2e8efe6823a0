"""SepBatchNorm2d: attentive Separable Batch Normalization (paper section III-B, eq. 3-7, Fig. 1).

Shared BatchNorm normalisation (tracking parameters, eq. 1) + K sets of mapping parameters (weight,
bias: (K, C)) mixed per sample and channel group by an attention pi (N, G, K) computed from the input.

State-dict layout (stable; `convert_to_sepbn` and checkpoints rely on it):
    weight (K, C), bias (K, C), tau () the temperature, norm.running_mean (C,), norm.running_var (C,),
    norm.num_batches_tracked (), attention.* (the attention block's own parameters).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from . import functional as SF
from .attention import AGGREGATIONS, GroupedAttention, SqueezeExcitationAttention, branch_weights, pool_tap

__all__ = ["SepBatchNorm2d", "TemperatureMixin", "check_input"]

ATTENTIONS = ("grouped", "se")


def check_input(input: Tensor) -> None:
    if input.dim() != 4:
        raise ValueError(f"expected a 4-D input (N, C, H, W), got {input.dim()}-D of shape {tuple(input.shape)}")


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class TemperatureMixin:
    """The softmax temperature tau (eq. 5) as a settable float backed by the persistent buffer ``tau``.

    Saved in the state dict, so a checkpoint reloads with the tau it was saved with, and evaluation uses
    that tau (the end of an annealing schedule: 1). A 0-dim tensor rather than a Python float so that
    annealing under ``torch.compile`` changes a value, not the graph (no recompilation per epoch).
    """

    tau: Tensor

    @property
    def temperature(self) -> float:
        return float(self.tau)

    @temperature.setter
    def temperature(self, value: float) -> None:
        value = float(value)
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"temperature must be a positive finite number, got {value!r}")
        with torch.no_grad():
            self.tau.fill_(value)


class SepBatchNorm2d(TemperatureMixin, nn.Module):
    r"""Separable Batch Normalization over a 4-D input (paper eq. 6-7).

    .. math::
        \hat{x} = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}}, \quad
        \pi = \mathrm{softmax}(f(x) / \tau), \quad
        \hat\gamma_{n,g} = \sum_k \pi_{n,g,k}\gamma_{k,g}, \quad
        y_{n,g} = \hat\gamma_{n,g}\hat{x}_{n,g} + \hat\beta_{n,g}

    The normalisation is a composed ``nn.BatchNorm2d(affine=False)`` (``.norm``): batch statistics in
    training, running statistics in eval, running statistics updated exactly as BatchNorm2d does. Because
    ``.norm`` is a child, ``nn.SyncBatchNorm.convert_sync_batchnorm`` synchronises only the statistics and
    keeps the K mapping sets.

    Args:
        num_features: C.
        num_branches: K, the number of mapping sets (weight, bias of shape (K, C)).
        num_groups: G, channel groups with their own attention (C % G == 0); ``attention="se"`` uses G = 1.
        pool_size: T, the adaptive max-pool size of the grouped attention (unused by ``"se"``).
        attention: ``"grouped"`` (Fig. 1) or ``"se"`` (the simple SepBN of eq. 3).
        aggregation: ``"soft"`` (eq. 6) or ``"hard"`` (argmax branch, straight-through gradient; Table III).
        temperature: tau of eq. (5); settable attribute, saved in the state dict as buffer ``tau``.
        eps, momentum, track_running_stats: as ``nn.BatchNorm2d``.

    Initialisation (the paper gives none): gamma_k = 1 + N(0, 0.02^2) for K > 1 and exactly 1 for K = 1,
    beta_k = 0, and the attention's last layer ~ N(0, 0.01^2) with zero bias. A fresh layer is then BN with
    gamma ~ 1 (pi ~ uniform mixes near-identical sets). The noise breaks the symmetry between branches: with
    identical branches d loss / d pi_k is the same for every k, the softmax gradient vanishes, and neither
    the attention nor the branches could ever separate. The small attention init keeps the start close to
    plain BN, which matters while tau is annealed down from a large value.

    Shape:
        - Input: (N, C, H, W)
        - Output: (N, C, H, W) (same memory format)

    Examples:
        >>> layer = SepBatchNorm2d(64, num_branches=3, num_groups=2, pool_size=3)
        >>> layer.extra_repr()
        '64, K=3, G=2, T=3, tau=1.0'
        >>> layer.weight.shape, type(layer.norm).__name__, layer.norm.affine
        (torch.Size([3, 64]), 'BatchNorm2d', False)
        >>> x = torch.randn(4, 64, 8, 8)
        >>> layer(x).shape, layer.attention_weights(x).shape
        (torch.Size([4, 64, 8, 8]), torch.Size([4, 2, 3]))
        >>> layer.temperature = 10.0
        >>> float(layer.state_dict()["tau"])
        10.0
    """

    def __init__(
        self,
        num_features: int,
        num_branches: int = 3,
        num_groups: int = 2,
        pool_size: int = 3,
        *,
        attention: str = "grouped",
        aggregation: str = "soft",
        temperature: float = 1.0,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        track_running_stats: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("num_features", num_features), ("num_branches", num_branches),
                            ("num_groups", num_groups), ("pool_size", pool_size)):
            _check_positive(name, value)
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if attention == "se":
            num_groups = 1
        if num_features % num_groups:
            raise ValueError(f"num_features ({num_features}) must be divisible by num_groups, got {num_groups}")
        factory = {"device": device, "dtype": dtype}
        self.num_features, self.num_branches = num_features, num_branches
        self.num_groups, self.pool_size = num_groups, pool_size
        self.attention_type, self.aggregation = attention, aggregation
        self.norm = nn.BatchNorm2d(num_features, eps, momentum, affine=False,
                                   track_running_stats=track_running_stats, **factory)
        self.weight = nn.Parameter(torch.empty(num_branches, num_features, **factory))
        self.bias = nn.Parameter(torch.empty(num_branches, num_features, **factory))
        self.attention: nn.Module
        if attention == "grouped":
            self.attention = GroupedAttention(num_features, num_branches, num_groups, pool_size, **factory)
        else:
            self.attention = SqueezeExcitationAttention(num_features, num_branches, **factory)
        self.register_buffer("tau", torch.empty((), **factory))
        self.temperature = temperature
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reset statistics, mapping sets and attention (see the class docstring for the choice)."""
        self.norm.reset_parameters()
        with torch.no_grad():
            self.weight.fill_(1.0)
            if self.num_branches > 1:
                self.weight.add_(torch.randn_like(self.weight), alpha=0.02)
            self.bias.zero_()
        self.attention.reset_parameters()

    def reset_running_stats(self) -> None:
        self.norm.reset_running_stats()

    def attention_weights(self, input: Tensor) -> Tensor:
        """pi, shape (N, G, K): the weights forward uses (softmax(logits / tau), one-hot when hard)."""
        check_input(input)
        return branch_weights(self.attention(input), self.tau, self.aggregation)

    def forward(self, input: Tensor) -> Tensor:
        check_input(input)
        if type(self.norm) is nn.BatchNorm2d and type(self.attention) is GroupedAttention and \
                SF._use_fused(input, self.weight, self.bias):
            # eager autograd: one node pools and passes the input on, and owns its whole gradient (_PoolTap)
            input, pooled = pool_tap(input, self.pool_size)
            pi = branch_weights(self.attention.from_pooled(pooled), self.tau, self.aggregation)
        else:
            pi = self.attention_weights(input)
        if type(self.norm) is not nn.BatchNorm2d:
            # e.g. SyncBatchNorm after convert_sync_batchnorm: it normalises (and syncs), we map.
            gamma_hat, beta_hat = SF.mix_affine(pi, self.weight, self.bias)
            x_hat = self.norm(input)
            return SF.apply_affine(x_hat, gamma_hat.to(x_hat.dtype), beta_hat.to(x_hat.dtype))
        use_batch, running_mean, running_var, factor = batchnorm_state(self.norm)
        return SF.sep_batch_norm(input, running_mean, running_var, self.weight, self.bias, pi,
                                 use_batch, factor, self.norm.eps)

    def branch_parameters(self) -> dict[str, Tensor]:
        """The K mapping sets, each (K, C), for `branch_similarity` (paper eq. 2)."""
        return {"weight": self.weight.detach(), "bias": self.bias.detach()}

    def extra_repr(self) -> str:
        text = f"{self.num_features}, K={self.num_branches}, G={self.num_groups}"
        if self.attention_type == "grouped":
            text += f", T={self.pool_size}"
        text += f", tau={self.temperature}"
        if self.attention_type != "grouped":
            text += f", attention={self.attention_type!r}"
        if self.aggregation != "soft":
            text += f", aggregation={self.aggregation!r}"
        return text

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d, **kwargs) -> SepBatchNorm2d:
        """A layer whose eval output equals ``bn``'s: statistics copied, every mapping set = (bn.weight, bn.bias).

        With identical mapping sets the attention has no effect (pi sums to one), whatever its weights;
        its random init then breaks the symmetry once training starts.
        """
        layer = cls(bn.num_features, **{**batchnorm_kwargs(bn), **kwargs})
        copy_statistics(bn, layer.norm)
        with torch.no_grad():
            layer.weight.copy_(bn.weight if bn.affine else torch.ones_like(layer.weight[0]))
            layer.bias.copy_(bn.bias if bn.affine else torch.zeros_like(layer.bias[0]))
        return layer.train(bn.training)


def batchnorm_state(norm: nn.modules.batchnorm._BatchNorm) -> tuple[bool, Tensor | None, Tensor | None, float]:
    """What ``norm.forward`` would pass to ``F.batch_norm``: (use batch stats, running mean, running var,
    exponential-average factor); increments ``num_batches_tracked`` in training as BatchNorm2d does."""
    factor = 0.0 if norm.momentum is None else norm.momentum
    if norm.training and norm.track_running_stats and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
        if norm.momentum is None:
            factor = 1.0 / float(norm.num_batches_tracked)
    use_batch = norm.training or (norm.running_mean is None and norm.running_var is None)
    keep = not norm.training or norm.track_running_stats
    return use_batch, norm.running_mean if keep else None, norm.running_var if keep else None, factor


def batchnorm_kwargs(bn: nn.modules.batchnorm._BatchNorm) -> dict:
    """Constructor arguments that make a family layer match ``bn`` (statistics options, device, dtype)."""
    ref = bn.weight if bn.affine else bn.running_mean
    factory = {} if ref is None else {"device": ref.device, "dtype": ref.dtype}
    return {"eps": bn.eps, "momentum": bn.momentum, "track_running_stats": bn.track_running_stats, **factory}


def copy_statistics(src: nn.modules.batchnorm._BatchNorm, dst: nn.modules.batchnorm._BatchNorm) -> None:
    with torch.no_grad():
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            a, b = getattr(src, name), getattr(dst, name)
            if a is not None and b is not None:
                b.copy_(a)
