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
         (5, 5, 1), (12, 12, 4), (80, 20, 3)]


@pytest.mark.parametrize("h, w, t", SIDES)
@pytest.mark.parametrize("channels", [4, 2048])  # 2048 x 16 x 16 > SMALL_NUMEL: the band route
def test_eager_pool_equals_adaptive_max_pool(h, w, t, channels):
    x = torch.randn(2, channels, h, w)
    torch.testing.assert_close(deploy_max_pool(x, t), F.adaptive_max_pool2d(x, t), rtol=0, atol=0)
    cl = x.to(memory_format=torch.channels_last)
    torch.testing.assert_close(deploy_max_pool(cl, t), F.adaptive_max_pool2d(x, t), rtol=0, atol=0)


@pytest.mark.parametrize("h, w, t", SIDES)
def test_export_pool_equals_adaptive_max_pool(h, w, t):
    x = torch.randn(3, 4, h, w)
    torch.testing.assert_close(deploy._export_pool(x, t), F.adaptive_max_pool2d(x, t), rtol=0, atol=0)


def test_one_max_pool_gives_the_adaptive_windows():
    assert deploy.pooling_windows(8, 3) == ((0, 3), (2, 6), (5, 8))
    assert deploy._pool_params(9, 3) == (3, 3, 0) and deploy._pool_params(16, 3) == (6, 5, 0)
    assert deploy._pool_params(80, 3) == (28, 27, 1) and deploy._pool_params(8, 3) == (4, 3, 1)
    assert deploy._pool_params(1, 3) is None and deploy._pool_params(6, 4) is None  # windows no pool makes
    for size in range(1, 200):
        for out in range(1, 8):
            params = deploy._pool_params(size, out)
            assert params is not None or out > 3 or size < out
            if params is not None:  # the pool's clipped windows, one by one
                x = torch.randn(1, 1, 1, size)
                torch.testing.assert_close(F.max_pool2d(x, (1, params[0]), (1, params[1]), (0, params[2])),
                                           F.adaptive_max_pool2d(x, (1, out)), rtol=0, atol=0)


def test_pooling_calls_are_one_kernel_or_one_per_band():
    small, large = torch.randn(1, 8, 32, 32), torch.randn(1, 16, 128, 128)  # 32 -> 3: windows 11, 12, 11
    assert small.numel() <= deploy.SMALL_NUMEL < large.numel()
    for x, t in ((small, 3), (small, 7), (large, 3), (large, 4)):
        with AtenCalls() as calls:
            deploy_max_pool(x, t)
        if x is small:
            assert dict(calls.calls) == {"adaptive_max_pool2d": 1}
        else:  # per side: T slices, T reductions, one concatenation
            assert calls.calls["amax"] == 2 * t and calls.total == 4 * t + 2, calls.calls


@pytest.mark.parametrize("kernel, stride, padding",
                         [(2, 2, 0), (3, 2, 1), (3, 1, 1), ((3, 2), (1, 2), (1, 0)), (2, 1, 0)])
@pytest.mark.parametrize("shape", [(2, 3, 9, 8), (1, 4, 2, 2), (1, 2, 16, 16)])
def test_deploy_max_pool2d_equals_max_pool2d(kernel, stride, padding, shape):
    pool = nn.MaxPool2d(kernel, stride, padding)
    x = torch.randn(shape)
    x[0, 0, 0, 0] = float("nan")  # propagates, as in the kernel
    x[0, -1, -1, -1] = float("-inf")
    got, want = deploy.DeployMaxPool2d(pool)(x), pool(x)
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    with AtenCalls() as calls:
        deploy.DeployMaxPool2d(pool)(x)
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    assert calls.calls["maximum"] == k[0] + k[1] - 2 and "max_pool2d_with_indices" not in calls.calls


def test_deploy_max_pool2d_refuses_what_it_cannot_stand_in_for():
    for pool in (nn.MaxPool2d(2, ceil_mode=True), nn.MaxPool2d(2, dilation=2), nn.MaxPool2d(2, return_indices=True)):
        assert not deploy.deployable_max_pool(pool)
        with pytest.raises(ValueError, match="MaxPool2d"):
            deploy.DeployMaxPool2d(pool)
    fused = fuse_for_inference(nn.Sequential(nn.MaxPool2d(2), nn.MaxPool2d(2, ceil_mode=True)))
    assert [type(m).__name__ for m in fused] == ["DeployMaxPool2d", "MaxPool2d"]


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
    cl = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for n in (1, 5):  # batch 1: BatchNorm's channels-last kernel; more: one addcmul
            got = mixed_affine(cl[:n], pi[:n], mixing, offset)
            assert_same(got, want[:n], 1e-6)
            assert deploy._channels_last(got)


# ATen calls of one folded SepBN layer at batch 1, not counting the block's own max-pool that a layer with
# increasing scales runs first (before issue 18: 46-106 per layer in these networks; 19-21 before the merged
# attention matmul and the folded 1 / tau)
NETWORKS = {
    "vanilla": (dict(arch="vanilla", width=1 / 16), 64, 13),
    "mobilenetv2": (dict(arch="mobilenetv2", width=0.25, placement=["bn3"]), 32, 13),
    "resnext50": (dict(arch="resnext50", placement=["bn3"]), 32, 16),  # its 2048-wide layers keep two matmuls
}


def _per_layer_calls(model: nn.Module, size: int, layout=torch.contiguous_format) -> list[int]:
    """ATen calls of each MixedAffine2d's forward, less those of the max-pool it carries."""
    counts, pooled = [], []

    def pre(module, args):
        module._calls = AtenCalls().__enter__()

    def post(module, args, output):
        module._calls.__exit__(None, None, None)
        (counts if isinstance(module, MixedAffine2d) else pooled).append(module._calls.total)

    layers = [m for m in model.modules() if isinstance(m, MixedAffine2d)]
    pools = [m.pool for m in layers if m.pool is not None]
    hooks = [h for m in layers + pools for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]
    with torch.no_grad():
        model.to(memory_format=layout)(torch.randn(1, 3, size, size).contiguous(memory_format=layout))
    for h in hooks:
        h.remove()
    assert len(counts) == len(layers) > 0
    it = iter(pooled)
    return [c - (next(it) if m.pool is not None else 0) for c, m in zip(counts, layers)]


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("name", NETWORKS)
def test_folded_layer_op_count_is_pinned(name, layout):
    kwargs, size, most = NETWORKS[name]
    torch.manual_seed(0)
    net = randomize(create_model(protocols=["300w68"], norm="sepbn", input_size=size, **kwargs))
    counts = _per_layer_calls(fuse_for_inference(net), size, layout)
    # channels-last: the pooled (N, C, T, T) map is copied once to the (N, C T^2) rows of the first matmul
    assert max(counts) <= most + (layout == torch.channels_last), counts


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", NETWORKS)
def test_channels_last_folded_network_equals_unfused(name, batch):
    """The layout `sepbn predict` runs (channels-last) gives the unfused model's outputs, and every folded
    SepBN layer keeps the layout (no hidden conversion to NCHW and back)."""
    kwargs, size, _ = NETWORKS[name]
    torch.manual_seed(0)
    net = randomize(create_model(protocols=["300w68"], norm="sepbn", input_size=size, **kwargs)).eval()
    fused = fuse_for_inference(net).to(memory_format=torch.channels_last)
    layouts = []
    for m in fused.modules():
        if isinstance(m, MixedAffine2d):
            m.register_forward_hook(
                lambda m, a, out: layouts.append(out.is_contiguous(memory_format=torch.channels_last)))
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        want = net(x)["300w68"]
    with torch.inference_mode():
        got = fused(x.contiguous(memory_format=torch.channels_last))["300w68"]
    assert_same(got, want)
    assert layouts and all(layouts), layouts


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 1)])
def test_deploy_max_pool2d_channels_last_is_one_kernel(kernel, stride, padding):
    """A channels-last map: ATen's channels-last max_pool2d, vectorised over channels, in one call."""
    pool = nn.MaxPool2d(kernel, stride, padding)
    x = torch.randn(2, 16, 9, 8).contiguous(memory_format=torch.channels_last)
    with AtenCalls() as calls:
        got = deploy.DeployMaxPool2d(pool)(x)
    torch.testing.assert_close(got, pool(x.contiguous()), rtol=0, atol=0)
    assert "maximum" not in calls.calls and deploy._channels_last(got)


def test_compiled_folded_layer_equals_eager():
    net = randomize(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), SepBatchNorm2d(8, 3, 2, 3), nn.ReLU()))
    fused = fuse_for_inference(net)
    compiled = torch.compile(copy.deepcopy(fused))
    for shape in [(1, 3, 8, 8), (4, 3, 9, 9)]:  # windows of two lengths, then uniform windows
        x = torch.randn(shape)
        with torch.no_grad():
            assert_same(compiled(x), net(x))


def test_inference_mode_forward_then_autograd_forward():
    """A detector's inference_mode forward first, then a forward that autograd records (the full suite once
    failed on this order, when the pooling cached index tensors): both work, the second has gradients."""
    torch.manual_seed(0)
    fused = fuse_for_inference(randomize(create_model("vanilla", ["5pt"], norm="sepbn", width=1 / 16, input_size=64)))
    with torch.inference_mode():
        fused(torch.randn(1, 3, 64, 64))
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    fused(x)["5pt"].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
