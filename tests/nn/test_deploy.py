"""sepbn.nn.deploy: the inference chain of a folded SepBN layer equals the layer, with a pinned op count."""

import collections
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from sepbn.models import create_model
from sepbn.nn import MixedAffine2d, SepBatchNorm2d, fuse_for_inference
from sepbn.nn import deploy
from sepbn.nn.attention import GroupedAttention
from sepbn.nn.deploy import DeployedGroupedAttention, deploy_max_pool, mixed_affine, mixing_matrix
from sepbn.nn.functional import mix_affine
from tests.nn.test_fuse import assert_same, randomize


class AtenCalls(TorchDispatchMode):
    """Counts the ATen operators a block of code dispatches (views included)."""

    def __init__(self):
        super().__init__()
        self.calls = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.calls.values())


# sides pooled to T: uniform windows (T divides the side; 16 -> 3: length 6, stride 5; 1 -> 3: stride 0),
# windows of two lengths (8 -> 3: 3, 4, 3), rectangles, and T = 1
SIDES = [(9, 9, 3), (16, 16, 3), (8, 8, 3), (7, 5, 3), (2, 2, 3), (1, 1, 3), (16, 8, 3), (8, 16, 3), (6, 9, 4),
         (5, 5, 1), (12, 12, 4)]


@pytest.mark.parametrize("h, w, t", SIDES)
@pytest.mark.parametrize("channels", [4, 2048])  # 2048 x 16 x 16 > GATHER_MAX_NUMEL: the band route
def test_eager_pool_equals_adaptive_max_pool(h, w, t, channels):
    x = torch.randn(2, channels, h, w)
    torch.testing.assert_close(deploy_max_pool(x, t), F.adaptive_max_pool2d(x, t), rtol=0, atol=0)
    cl = x.to(memory_format=torch.channels_last)
    torch.testing.assert_close(deploy_max_pool(cl, t), F.adaptive_max_pool2d(x, t), rtol=0, atol=0)


@pytest.mark.parametrize("h, w, t", SIDES)
def test_export_pool_equals_adaptive_max_pool(h, w, t):
    x = torch.randn(3, 4, h, w)
    torch.testing.assert_close(deploy._export_pool(x, t), F.adaptive_max_pool2d(x, t), rtol=0, atol=0)


def test_uniform_windows():
    assert deploy.pooling_windows(8, 3) == ((0, 3), (2, 6), (5, 8))
    assert deploy._uniform(9, 3) == (3, 3) and deploy._uniform(16, 3) == (6, 5) and deploy._uniform(1, 3) == (1, 0)
    assert deploy._uniform(8, 3) is None and deploy._uniform(128, 3) is None


def test_pooling_makes_no_call_per_window():
    small, uniform = torch.randn(1, 8, 32, 32), torch.randn(1, 8, 64, 64)  # 32 -> 3: windows 11, 12, 11
    for x, t in ((small, 3), (small, 7), (uniform, 4)):
        deploy_max_pool(x, t)  # the gather's index is made once and cached
        with AtenCalls() as calls:
            deploy_max_pool(x, t)
        assert calls.total <= (2 if x is uniform else 4), calls.calls  # a strided view, or one gather


@pytest.mark.parametrize("groups, t", [(1, 1), (2, 3), (4, 2)])
def test_deployed_attention_equals_grouped_attention(groups, t):
    attention = GroupedAttention(16, 3, groups, t)
    with torch.no_grad():
        for p in attention.parameters():
            p.normal_()
    x = torch.randn(5, 16, 7, 9)
    assert_same(DeployedGroupedAttention(attention)(x), attention(x))


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_mixed_affine_equals_mix_affine_then_affine(groups):
    weight, bias = torch.randn(3, 8), torch.randn(3, 8)
    pi = torch.softmax(torch.randn(5, groups, 3), -1)
    x = torch.randn(5, 8, 4, 6)
    gamma, beta = mix_affine(pi, weight, bias)
    want = x * gamma[..., None, None] + beta[..., None, None]
    mixing, offset = mixing_matrix(weight, bias, groups)
    assert_same(mixed_affine(x, pi, mixing, offset), want, 1e-6)  # BatchNorm's eval kernel
    assert_same(mixed_affine(x.requires_grad_(), pi, mixing, offset), want, 1e-6)  # plain ops
    assert_same(mixed_affine(x[:1], pi[:1], mixing, offset), want[:1], 1e-6)  # batch 1: no view


# ATen calls of one folded SepBN layer at batch 1 (before issue 18: 46-106 per layer in these networks)
NETWORKS = {
    "vanilla": (dict(arch="vanilla", width=1 / 16), 64, 21),
    "mobilenetv2": (dict(arch="mobilenetv2", width=0.25, placement=["bn3"]), 32, 20),
    "resnext50": (dict(arch="resnext50", placement=["bn3"]), 32, 20),
}


def _per_layer_calls(model: nn.Module, size: int) -> list[int]:
    counts = []

    def pre(module, args):
        module._calls = AtenCalls().__enter__()

    def post(module, args, output):
        module._calls.__exit__(None, None, None)
        counts.append(module._calls.total)

    layers = [m for m in model.modules() if isinstance(m, MixedAffine2d)]
    hooks = [h for m in layers for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]
    with torch.no_grad():
        model(torch.randn(1, 3, size, size))
    for h in hooks:
        h.remove()
    assert len(counts) == len(layers) > 0
    return counts


@pytest.mark.parametrize("name", NETWORKS)
def test_folded_layer_op_count_is_pinned(name):
    kwargs, size, most = NETWORKS[name]
    torch.manual_seed(0)
    net = randomize(create_model(protocols=["300w68"], norm="sepbn", input_size=size, **kwargs))
    counts = _per_layer_calls(fuse_for_inference(net), size)
    assert max(counts) <= most, counts


def test_compiled_folded_layer_equals_eager():
    net = randomize(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), SepBatchNorm2d(8, 3, 2, 3), nn.ReLU()))
    fused = fuse_for_inference(net)
    compiled = torch.compile(copy.deepcopy(fused))
    for shape in [(1, 3, 8, 8), (4, 3, 9, 9)]:  # windows of two lengths, then uniform windows
        x = torch.randn(shape)
        with torch.no_grad():
            assert_same(compiled(x), net(x))


def test_index_cached_under_inference_mode_serves_autograd_later():
    """A detector's inference_mode forward first fills the gather-index cache; a later forward that
    autograd records must still work (the full suite failed on this order before the fix)."""
    from sepbn.nn.deploy import _cached_index

    _cached_index.cache_clear()
    with torch.inference_mode():
        _cached_index((0, 2, 1), torch.device("cpu"))
    index = _cached_index((0, 2, 1), torch.device("cpu"))
    assert not index.is_inference()
    x = torch.randn(1, 2, 3, requires_grad=True)
    x.index_select(2, index).sum().backward()
    assert x.grad is not None
