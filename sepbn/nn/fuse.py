"""fuse_for_inference: fold normalisation into the preceding convolution for deployment (paper eq. 1, 6, 7).

BatchNorm2d after a Conv2d folds into the convolution, as ``torch.nn.utils.fusion.fuse_conv_bn_eval`` does:
W' = W * s, b' = (b - mu) * s + beta with s = gamma / sqrt(var + eps).

SepBatchNorm2d after a Conv2d folds its *normalisation* into the convolution (s = 1 / sqrt(var + eps),
b' = (b - mu) * s), which then emits x_hat. The per-sample mapping of eq. (6)-(7),
y = gamma_hat[n, c] * x_hat + beta_hat[n, c], is the only pass left (`MixedAffine2d`). The attention must
see what it saw before, x = sigma * x_hat + mu. With sigma > 0 per channel the adaptive max-pool commutes
with that map (and the SE attention's mean is linear), so the attention's first linear map absorbs it:
    grouped:  reduce.weight'[g, c] = reduce.weight[g, c] * sigma[c],   reduce.bias' = reduce.bias + reduce.weight @ mu
    SE:      squeeze.weight'[h, c] = squeeze.weight[h, c] * sigma[c], squeeze.bias' = squeeze.bias + squeeze.weight @ mu
(the first line for the grouped attention's 1x1 conv, the second for the SE attention's squeeze Linear)
A SepBatchNorm2d with no foldable convolution before it becomes a `MixedAffine2d` over its raw input: the
K sets (gamma_k / sigma, beta_k - mu * gamma_k / sigma) mixed by the unchanged attention (pi is linear).

MixtureBatchNorm2d: each branch k is the affine map (a_k, b_k) of eq. (1) with its *own* statistics, so there
is no single normalisation a convolution could emit; it becomes a `MixedAffine2d` of the K folded branch maps
(one pass, as its eval forward already was) and the convolution is left alone.
BruteForceSepBN2d: the branch is picked at run time by the domain label, so nothing goes into the convolution
either; the K branches become K folded (scale, shift) rows of a `RoutedAffine2d` (one pass, routed by label).

Every ``nn.MaxPool2d`` without dilation, ceil mode or indices becomes a `DeployMaxPool2d` (the same values;
eager PyTorch's NCHW pooling kernel is 10-30x slower than the max of strided slices at batch 1). In an
``nn.Sequential`` such as a Vanilla-CNN block (conv, norm, LeakyReLU, max-pool), the pool then moves before
the activation, and into a `MixedAffine2d` whose K gammas are all positive (an increasing map per channel):
max(f(x)) = f(max(x)) for a non-decreasing f, exactly, so the affine and the activation touch a quarter of the
elements. The attention still reads the full map.

"Followed by" is decided on a torch.fx trace (norm layers as leaves) of each module whose forward takes one
argument (a module with more, such as LandmarkNet's ``forward(x, protocols)``, is not traced as a whole: another
argument value could use its layers differently; its children are): a fold happens only when the Conv2d
(exactly ``nn.Conv2d``) is called once, its output has exactly one user, that user is the norm layer (called
once, with that output alone), neither module's parameters are read elsewhere, and neither module is shared
under two names. A module whose forward cannot be traced is not fused as a whole; its children are traced
one by one instead (pairs across an untraceable forward are left alone). Norm layers without running
statistics (``track_running_stats=False``, which normalise with batch statistics in eval) are left alone.
"""

from __future__ import annotations

import copy
import inspect

import torch
import torch.fx
from torch import Tensor, nn

from . import functional as SF
from .attention import GroupedAttention, SqueezeExcitationAttention, branch_weights
from .bruteforce import BruteForceSepBN2d, current_domains
from .deploy import DeployedGroupedAttention, DeployMaxPool2d, deployable_max_pool, mixed_affine, mixing_matrix
from .mixture import MixtureBatchNorm2d
from .sepbn import SepBatchNorm2d, check_input

__all__ = ["fuse_for_inference", "MixedAffine2d", "RoutedAffine2d", "FoldedAway"]

_BATCHNORMS = (nn.BatchNorm2d, nn.SyncBatchNorm)
_FAMILY = (SepBatchNorm2d, MixtureBatchNorm2d, BruteForceSepBN2d)


def _inference_only(module: nn.Module) -> None:
    if module.training:
        raise RuntimeError(f"{type(module).__name__} is folded for inference (sepbn.nn.fuse_for_inference) and "
                           "cannot train; fuse a copy of the unfused model after training instead")


class FoldedAway(nn.Identity):
    """What a BatchNorm2d folded into its convolution leaves behind (identity; refuses training mode)."""

    def forward(self, input: Tensor) -> Tensor:
        _inference_only(self)
        return input


class MixedAffine2d(nn.Module):
    """y[n, c] = x[n, c] * sum_k pi[n, g, k] weight[k, c] + sum_k pi[n, g, k] bias[k, c], pi from ``attention``.

    The eval form of SepBN (eq. 6-7) and of the mixture layer once their statistics are folded away.
    ``attention`` maps x to logits (N, G, K); pi = softmax(logits / tau) (one-hot for ``"hard"``). A grouped
    attention runs as `DeployedGroupedAttention`, and weight and bias are stored as the block matrix
    ``mixing`` (4, G K, C) that mixes them in one matmul (`sepbn.nn.deploy.mixing_matrix`).
    """

    def __init__(self, weight: Tensor, bias: Tensor, attention: nn.Module, tau: Tensor, aggregation: str = "soft"):
        super().__init__()
        tau = tau.detach().clone()
        if type(attention) is GroupedAttention:
            attention = DeployedGroupedAttention(attention)
            if aggregation == "soft":  # softmax(z / tau): the division goes into the last Linear
                attention.scale_logits(1.0 / float(tau))
                tau = torch.ones_like(tau)
        self.folded_tau = isinstance(attention, DeployedGroupedAttention) and aggregation == "soft"
        self.attention = attention
        # every mixed scale is a convex mix of the K gammas: all positive, it is an increasing map per channel,
        # and a max-pool after it (and a monotone activation) may run first, on fewer elements
        self.increasing = bool((weight > 0).all())
        self.pool: nn.Module | None = None
        self.num_branches, self.num_features = weight.shape
        self.num_groups = getattr(attention, "num_groups", 1)  # the SE attention has one group
        mixing, offset = mixing_matrix(weight.detach(), bias.detach(), self.num_groups)
        self.register_buffer("mixing", mixing)
        self.register_buffer("mixing_offset", offset)
        self.register_buffer("tau", tau)
        self.aggregation = aggregation

    def forward(self, input: Tensor) -> Tensor:
        _inference_only(self)
        check_input(input)
        logits = self.attention(input)
        if self.folded_tau:  # softmax in float32 under autocast, as branch_weights
            pi = (logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits).softmax(-1)
        else:
            pi = branch_weights(logits, self.tau, self.aggregation)
        if self.pool is not None:  # max-pool first (see `_pool_first`): the attention saw the full map
            input = self.pool(input)
        return mixed_affine(input, pi, self.mixing, self.mixing_offset)

    def extra_repr(self) -> str:
        text = f"{self.num_features}, K={self.num_branches}" + (", pools first" if self.pool is not None else "")
        return text + ("" if self.aggregation == "soft" else f", aggregation={self.aggregation!r}")


class RoutedAffine2d(nn.Module):
    """Brute-force SepBN in eval with each branch folded: y[n] = x[n] * weight[label[n]] + bias[label[n]].

    Labels come from the active ``sepbn.nn.domains`` block, as for `BruteForceSepBN2d`.
    """

    def __init__(self, weight: Tensor, bias: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.num_branches = int(weight.shape[0])

    def forward(self, input: Tensor) -> Tensor:
        _inference_only(self)
        check_input(input)
        labels = current_domains()
        k = self.num_branches
        if labels is None:
            raise RuntimeError("this folded brute-force SepBN layer needs domain labels: call the model inside "
                               "`with sepbn.nn.domains(labels):`")
        if isinstance(labels, int):
            if not 0 <= labels < k:
                raise ValueError(f"domain label must be in [0, {k}), got {labels}")
            scale, shift = self.weight[labels:labels + 1], self.bias[labels:labels + 1]
            return SF.apply_affine(input, scale.to(input.dtype), shift.to(input.dtype))
        index = labels.to(input.device)
        if index.shape != (input.shape[0],):
            raise ValueError(f"expected {input.shape[0]} domain labels, got shape {tuple(index.shape)}")
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= k):
            raise ValueError(f"domain labels must be in [0, {k}), got {index.tolist()}")
        scale, shift = self.weight.index_select(0, index), self.bias.index_select(0, index)
        return SF.apply_affine(input, scale.to(input.dtype), shift.to(input.dtype))

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, K={self.weight.shape[0]}"


# ---------------------------------------------------------------- the folds (float64 maths, cast back)

def _has_stats(bn: nn.Module) -> bool:
    return getattr(bn, "running_mean", None) is not None and getattr(bn, "running_var", None) is not None


def _stats(bn: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    """(mu, 1 / sigma) in float64."""
    return bn.running_mean.double(), torch.rsqrt(bn.running_var.double() + bn.eps)


def _bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    """(a, b) with bn(x) == x * a + b in eval, float64."""
    mu, invstd = _stats(bn)
    a = invstd * (bn.weight.double() if bn.weight is not None else 1.0)
    b = (bn.bias.double() if bn.bias is not None else 0.0) - mu * a
    return a, b


@torch.no_grad()
def _fold_into_conv(conv: nn.Conv2d, scale: Tensor, shift: Tensor) -> None:
    """conv'(x) = conv(x) * scale[c] + shift[c], in place."""
    w = conv.weight
    conv.weight.copy_((w.double() * scale.reshape(-1, 1, 1, 1)).to(w.dtype))
    old = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    if conv.bias is None:
        conv.bias = nn.Parameter(torch.empty(w.shape[0], device=w.device, dtype=w.dtype))
    conv.bias.copy_((old * scale + shift).to(w.dtype))


@torch.no_grad()
def _absorb_input_affine(linear_weight: Tensor, linear_bias: Tensor, sigma: Tensor, mu: Tensor) -> None:
    """A linear map over channels that used to see x now sees (x - mu) / sigma: fold sigma, mu into it."""
    w = linear_weight.reshape(linear_weight.shape[0], -1).double()  # (out, C)
    linear_bias.copy_((linear_bias.double() + w @ mu).to(linear_bias.dtype))
    linear_weight.copy_((w * sigma).reshape(linear_weight.shape).to(linear_weight.dtype))


def _sepbn_folded(layer: SepBatchNorm2d, conv: nn.Conv2d | None) -> MixedAffine2d:
    mu, invstd = _stats(layer.norm)
    attention = copy.deepcopy(layer.attention)
    weight, bias = layer.weight.double(), layer.bias.double()
    if conv is None:  # the attention keeps seeing the raw input; fold the statistics into the K sets
        weight, bias = weight * invstd, bias - mu * weight * invstd
    else:  # the conv now emits x_hat; the attention gets sigma and mu back
        _fold_into_conv(conv, invstd, -mu * invstd)
        first = attention.reduce if isinstance(attention, GroupedAttention) else attention.squeeze
        _absorb_input_affine(first.weight, first.bias, 1.0 / invstd, mu)
    dtype = layer.weight.dtype
    return MixedAffine2d(weight.to(dtype), bias.to(dtype), attention, layer.tau, layer.aggregation)


def _branches_folded(layer: MixtureBatchNorm2d | BruteForceSepBN2d) -> tuple[Tensor, Tensor]:
    pairs = [_bn_affine(b) for b in layer.branches]
    dtype = layer.branches[0].running_mean.dtype
    return torch.stack([a for a, _ in pairs]).to(dtype), torch.stack([b for _, b in pairs]).to(dtype)


def _foldable_norm(module: nn.Module) -> bool:
    """A norm layer whose eval forward is a fixed (or attention-mixed) affine map we know how to fold."""
    if type(module) in _BATCHNORMS:
        return _has_stats(module)
    if type(module) is SepBatchNorm2d:
        return (type(module.norm) in _BATCHNORMS and _has_stats(module.norm)
                and type(module.attention) in (GroupedAttention, SqueezeExcitationAttention))
    if type(module) in (MixtureBatchNorm2d, BruteForceSepBN2d):
        return all(type(b) in _BATCHNORMS and _has_stats(b) for b in module.branches)
    return False


def _folded(norm: nn.Module, conv: nn.Conv2d | None) -> nn.Module:
    """The replacement of ``norm`` (``conv``, when given, is modified in place to absorb what it can)."""
    if type(norm) in _BATCHNORMS:
        assert conv is not None
        with torch.no_grad():
            _fold_into_conv(conv, *_bn_affine(norm))
        return FoldedAway()
    if type(norm) is SepBatchNorm2d:
        return _sepbn_folded(norm, conv)
    weight, bias = _branches_folded(norm)
    if type(norm) is BruteForceSepBN2d:
        return RoutedAffine2d(weight, bias)
    return MixedAffine2d(weight, bias, copy.deepcopy(norm.attention), norm.tau)


# ---------------------------------------------------------------- finding conv -> norm pairs

class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (*_FAMILY, MixedAffine2d, RoutedAffine2d)) or super().is_leaf_module(m, qualname)


def _one_input(module: nn.Module) -> bool:
    """forward takes exactly one argument: a trace of it covers every call (no argument could take it down
    another path, as LandmarkNet's ``protocols`` or a user's ``raw=True`` could)."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return False
    return len(params) == 1 and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD)


def _pairs_in_graph(graph: torch.fx.Graph, root: nn.Module) -> list[tuple[str, str]]:
    calls: dict[str, int] = {}
    reads: set[str] = set()
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
        elif node.op == "get_attr":
            reads.add(node.target.rsplit(".", 1)[0])
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or type(root.get_submodule(node.target)) is not nn.Conv2d:
            continue
        users = list(node.users)
        if len(users) != 1 or users[0].op != "call_module" or users[0].args != (node,) or users[0].kwargs:
            continue
        conv, norm = node.target, users[0].target
        if calls[conv] == 1 and calls[norm] == 1 and not reads & {conv, norm} and \
                _foldable_norm(root.get_submodule(norm)):
            pairs.append((conv, norm))
    return pairs


def _conv_norm_pairs(module: nn.Module, prefix: str = "") -> list[tuple[str, str]]:
    """Qualified (conv, norm) names where the norm consumes the conv's output and nothing else does."""
    if not any(True for _ in module.children()) or isinstance(module, _FAMILY):
        return []
    graph = None
    if _one_input(module):
        try:
            graph = _Tracer().trace(module)
        except Exception:  # any forward fx cannot trace (data-dependent control flow, ...): try each child
            graph = None
    if graph is None:
        return [p for name, child in module.named_children() for p in _conv_norm_pairs(child, f"{prefix}{name}.")]
    return [(prefix + a, prefix + b) for a, b in _pairs_in_graph(graph, module)]


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module.eval())


def _monotone(module: nn.Module) -> bool:
    """An element-wise non-decreasing map: max-pooling commutes with it."""
    if type(module) is nn.LeakyReLU:
        return module.negative_slope >= 0
    return type(module) in (nn.ReLU, nn.ReLU6, nn.Identity, FoldedAway)


def _pool_first(root: nn.Module) -> None:
    """In every nn.Sequential, move each `DeployMaxPool2d` before the monotone activations in front of it, and
    into a `MixedAffine2d` with increasing scales just before those: max(f(x)) = f(max(x)) for non-decreasing f,
    so the affine and the activation then run on the pooled map (a quarter of it after a 2x2 pool)."""
    for seq in [m for m in root.modules() if type(m) is nn.Sequential]:
        keys = list(seq._modules)
        for i in range(1, len(keys)):
            pool = seq._modules[keys[i]]
            if type(pool) is not DeployMaxPool2d:
                continue
            j = i
            while j > 0 and _monotone(seq._modules[keys[j - 1]]):  # pool <-> activation
                seq._modules[keys[j]] = seq._modules[keys[j - 1]]
                seq._modules[keys[j - 1]] = pool
                j -= 1
            affine = seq._modules[keys[j - 1]] if j > 0 else None
            if type(affine) is MixedAffine2d and affine.increasing and affine.pool is None:
                affine.pool = pool
                seq._modules[keys[j]] = nn.Identity()


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with normalisation folded into convolutions (see the module docstring).

    Outputs equal ``model.eval()``'s up to float rounding; ``model`` is not changed. The copy is for
    inference only: its folded layers raise if called in training mode.

    Examples:
        >>> from sepbn.nn import SepBatchNorm2d
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), SepBatchNorm2d(8))
        >>> fused = fuse_for_inference(net)
        >>> [type(m).__name__ for m in fused]
        ['Conv2d', 'FoldedAway', 'ReLU', 'Conv2d', 'MixedAffine2d']
        >>> x = torch.randn(2, 3, 9, 9)
        >>> torch.allclose(fused(x), net.eval()(x), atol=1e-5)
        True
    """
    fused = copy.deepcopy(model).eval()
    counts: dict[int, int] = {}
    for _, m in fused.named_modules(remove_duplicate=False):
        counts[id(m)] = counts.get(id(m), 0) + 1
    done: set[str] = set()
    for conv_name, norm_name in _conv_norm_pairs(fused):
        conv, norm = fused.get_submodule(conv_name), fused.get_submodule(norm_name)
        if counts[id(conv)] == 1 and counts[id(norm)] == 1:
            _set_module(fused, norm_name, _folded(norm, conv))
            done.add(norm_name)
    for name, m in list(fused.named_modules(remove_duplicate=False)):  # family layers with no foldable conv before them
        if name not in done and type(m) in _FAMILY and _foldable_norm(m) and counts[id(m)] == 1:
            _set_module(fused, name, _folded(m, None))
        elif deployable_max_pool(m):  # stateless: shared instances may be swapped one by one
            _set_module(fused, name, DeployMaxPool2d(m))
    _pool_first(fused)
    return fused
