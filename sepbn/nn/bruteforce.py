"""Brute-force SepBN (paper section III-A, Fig. 2): K complete BatchNorm2d branches routed by domain label.

Each sample goes through the branch of its domain (its own running statistics and affine parameters).
Labels reach every such layer of a network through a context variable, so forward signatures stay
unchanged:

    with sepbn.nn.domains(labels):      # (N,) ints in [0, K), or one int for the whole batch
        out = model(images)

At test time the domain is unknown; the paper runs each image through every branch and keeps the best
(`for_each_domain` + `best_per_sample`).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .sepbn import _check_positive, batchnorm_kwargs, check_input

__all__ = ["BranchBatchNorm2d", "BruteForceSepBN2d", "domains", "current_domains", "for_each_domain",
           "best_per_sample"]

_DOMAINS: contextvars.ContextVar[Tensor | int | None] = contextvars.ContextVar("sepbn_domains", default=None)


@contextlib.contextmanager
def domains(labels: Tensor | Sequence[int] | int) -> Iterator[None]:
    """Route every `BruteForceSepBN2d` called inside the block by ``labels`` (per sample, or one int for all).

    Examples:
        >>> layer = BruteForceSepBN2d(4, num_domains=2)
        >>> with domains([0, 1, 1, 0]):
        ...     y = layer(torch.randn(4, 4, 3, 3))
        >>> with domains(1):
        ...     y = layer.eval()(torch.randn(2, 4, 3, 3))
    """
    if isinstance(labels, int):
        value: Tensor | int = labels
    else:
        value = torch.as_tensor(labels)
        if value.dim() != 1 or value.dtype.is_floating_point:
            raise ValueError(f"domain labels must be an int or a 1-D integer sequence, got {labels!r}")
    token = _DOMAINS.set(value)
    try:
        yield
    finally:
        _DOMAINS.reset(token)


def current_domains() -> Tensor | int | None:
    """The labels set by the innermost active `domains` block (None outside any)."""
    return _DOMAINS.get()


class BranchBatchNorm2d(nn.Module):
    """K complete ``nn.BatchNorm2d`` branches (``.branches``); the container shared by the brute-force and the
    mixture layers. Subclasses decide how a sample uses them."""

    def __init__(
        self,
        num_features: int,
        num_branches: int,
        *,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_positive("num_features", num_features)
        _check_positive("num_branches", num_branches)
        self.num_features, self.num_branches = num_features, num_branches
        self.branches = nn.ModuleList(
            nn.BatchNorm2d(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
            for _ in range(num_branches)
        )

    def reset_parameters(self) -> None:
        for branch in self.branches:
            branch.reset_parameters()

    def branch_parameters(self) -> dict[str, Tensor]:
        """Tracking and mapping parameters of the K branches, each stacked to (K, C) (paper eq. 2, Fig. 4)."""
        out = {}
        for name in ("running_mean", "running_var", "weight", "bias"):
            values = [getattr(b, name) for b in self.branches]
            if all(v is not None for v in values):
                out[name] = torch.stack([v.detach() for v in values])
        return out

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d, **kwargs) -> BranchBatchNorm2d:
        """Every branch a copy of ``bn`` (statistics and affine; 1 and 0 when ``bn`` has none), so the eval
        output equals ``bn``'s."""
        layer = cls(bn.num_features, **{**batchnorm_kwargs(bn), **kwargs})
        for branch in layer.branches:
            branch.load_state_dict(bn.state_dict(), strict=bn.affine and branch.affine)
        return layer.train(bn.training)

    def extra_repr(self) -> str:
        return f"{self.num_features}, K={self.num_branches}"


class BruteForceSepBN2d(BranchBatchNorm2d):
    """Brute-force SepBN (Fig. 2): sample n goes through ``branches[label[n]]`` (num_domains is K).

    Labels come from the innermost `domains` block; an int sends the whole batch through one branch.
    In training each branch computes batch statistics over its own samples only.

    Shape:
        - Input: (N, C, H, W); labels (N,) in [0, K) or an int
        - Output: (N, C, H, W)

    Examples:
        >>> layer = BruteForceSepBN2d(8, num_domains=3)
        >>> layer.extra_repr(), len(layer.branches)
        ('8, K=3', 3)
        >>> with domains(torch.tensor([2, 0, 2])):
        ...     y = layer(torch.randn(3, 8, 4, 4))
        >>> [int(b.num_batches_tracked) for b in layer.branches]  # branch 1 saw no sample
        [1, 0, 1]
    """

    def __init__(
        self,
        num_features: int,
        num_domains: int = 3,
        *,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(num_features, num_domains, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats, device=device, dtype=dtype)

    @property
    def num_domains(self) -> int:
        return self.num_branches

    def forward(self, input: Tensor) -> Tensor:
        check_input(input)
        labels = current_domains()
        if labels is None:
            raise RuntimeError("BruteForceSepBN2d needs domain labels: call the model inside "
                               "`with sepbn.nn.domains(labels):` (an int selects one branch for all samples)")
        if isinstance(labels, int):
            if not 0 <= labels < self.num_branches:
                raise ValueError(f"domain label must be in [0, {self.num_branches}), got {labels}")
            return self.branches[labels](input)
        labels = labels.to(input.device)
        if labels.shape != (input.shape[0],):
            raise ValueError(f"expected {input.shape[0]} domain labels, got shape {tuple(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_branches):
            raise ValueError(f"domain labels must be in [0, {self.num_branches}), got {labels.tolist()}")
        out = torch.empty_like(input)
        for k, branch in enumerate(self.branches):  # routing, not mixing: each branch sees only its samples
            index = (labels == k).nonzero().flatten()
            if index.numel():
                out = out.index_copy(0, index, branch(input.index_select(0, index)))
        return out


def for_each_domain(model: nn.Module, *args: Any, num_domains: int, **kwargs: Any) -> list[Any]:
    """``model(*args, **kwargs)`` once per domain, every brute-force layer using that domain's branch."""
    outputs = []
    for k in range(num_domains):
        with domains(k):
            outputs.append(model(*args, **kwargs))
    return outputs


def best_per_sample(outputs: Sequence[Any], error: Callable[[Any], Tensor]) -> tuple[Any, Tensor]:
    """Per sample, the output with the lowest ``error(output)`` ((N,) per output), as the paper tests
    brute-force SepBN. Outputs may be tensors or dicts of tensors (batch first). Returns (best, choice (N,)).

    Examples:
        >>> a, b = torch.tensor([[0.0], [5.0]]), torch.tensor([[1.0], [2.0]])
        >>> best, choice = best_per_sample([a, b], lambda out: (out - 2.0).abs().flatten())
        >>> best.flatten().tolist(), choice.tolist()
        ([1.0, 2.0], [1, 1])
    """
    errors = torch.stack([torch.as_tensor(error(out)) for out in outputs])  # (K, N)
    choice = errors.argmin(dim=0)

    def pick(values: Sequence[Any]) -> Any:
        if isinstance(values[0], dict):
            return {key: pick([v[key] for v in values]) for key in values[0]}
        stacked = torch.stack(list(values))  # (K, N, ...)
        index = choice.to(stacked.device).reshape(1, -1, *([1] * (stacked.dim() - 2)))
        return stacked.gather(0, index.expand(1, *stacked.shape[1:])).squeeze(0)

    return pick(outputs), choice
