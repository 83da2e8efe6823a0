"""sepbn.nn.sepbn.SepBatchNorm2d: reduction to BN, module == functional, ablation grid, init, state, errors."""

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sepbn.nn import SepBatchNorm2d, branch_similarity
from sepbn.nn import functional as SF


def one_hot_layer(c=6, k=3, g=2, branch=1):
    """A layer whose attention is (numerically) one-hot on ``branch`` for every sample and group."""
    layer = SepBatchNorm2d(c, num_branches=k, num_groups=g, pool_size=2)
    with torch.no_grad():
        layer.attention.fc2.weight.zero_()
        layer.attention.fc2.bias.copy_(F.one_hot(torch.tensor(branch), k).float().repeat(g) * 200.0)
        layer.weight.copy_(torch.randn(k, c))
        layer.bias.copy_(torch.randn(k, c))
    return layer


@pytest.mark.parametrize("k", [1, 3])
def test_reduces_to_batch_norm_train_and_eval(k):
    torch.manual_seed(0)
    layer = one_hot_layer(k=k, branch=k - 1) if k > 1 else SepBatchNorm2d(6, num_branches=1)
    bn = nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.weight.copy_(layer.weight[k - 1])
        bn.bias.copy_(layer.bias[k - 1])
    for step in range(3):
        x = torch.randn(4, 6, 5, 5) * (step + 1) + step
        torch.testing.assert_close(layer(x), bn(x))
    torch.testing.assert_close(layer.norm.running_mean, bn.running_mean)
    torch.testing.assert_close(layer.norm.running_var, bn.running_var)
    assert int(layer.norm.num_batches_tracked) == int(bn.num_batches_tracked) == 3
    layer.eval(), bn.eval()
    x = torch.randn(2, 6, 3, 3)
    torch.testing.assert_close(layer(x), bn(x))


def test_cumulative_average_momentum_none_like_batch_norm():
    layer, bn = SepBatchNorm2d(4, num_branches=1, num_groups=1, momentum=None), nn.BatchNorm2d(4, momentum=None)
    for _ in range(3):
        x = torch.randn(3, 4, 4, 4)
        layer(x), bn(x)
    torch.testing.assert_close(layer.norm.running_var, bn.running_var)


def test_module_equals_functional_with_its_attention():
    torch.manual_seed(1)
    layer = SepBatchNorm2d(8, num_branches=3, num_groups=4, pool_size=2)
    x = torch.randn(5, 8, 6, 6)
    pi = layer.attention_weights(x)
    rm, rv = layer.norm.running_mean.clone(), layer.norm.running_var.clone()
    expected = SF.sep_batch_norm(x, rm, rv, layer.weight, layer.bias, pi, training=True)
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(layer.norm.running_mean, rm)
    torch.testing.assert_close(pi.sum(-1), torch.ones(5, 4))


ABLATIONS = (
    [dict(num_branches=k) for k in range(1, 8)]
    + [dict(num_groups=g) for g in (1, 2, 8, 64)]
    + [dict(pool_size=t) for t in range(1, 5)]
    + [dict(attention=a, aggregation=g) for a in ("grouped", "se") for g in ("soft", "hard")]
)


@pytest.mark.parametrize("kwargs", ABLATIONS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_every_ablation_setting_runs_forward_and_backward(kwargs):
    torch.manual_seed(0)
    layer = SepBatchNorm2d(64, **kwargs)
    x = torch.randn(3, 64, 7, 7, requires_grad=True)
    y = layer(x)
    (y * torch.randn_like(y)).sum().backward()
    assert y.shape == x.shape and torch.isfinite(y).all()
    grads = [x.grad, layer.weight.grad, layer.bias.grad] + [p.grad for p in layer.attention.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert layer.attention_weights(x).shape == (3, layer.num_groups, layer.num_branches)
    layer.eval()
    assert torch.isfinite(layer(x)).all()


def test_gradcheck_module_float64():
    torch.manual_seed(0)
    layer = SepBatchNorm2d(4, num_branches=2, num_groups=2, pool_size=2, dtype=torch.float64)
    x = torch.randn(3, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    params = [layer.weight, layer.bias, layer.attention.fc2.weight]

    def fn(x, *_):
        return layer(x)

    assert torch.autograd.gradcheck(fn, (x, *params))


def test_extra_repr_and_temperature_attribute():
    layer = SepBatchNorm2d(64, 3, 2, 3)
    assert layer.extra_repr() == "64, K=3, G=2, T=3, tau=1.0"
    layer.temperature = 30
    assert isinstance(layer.temperature, float) and "tau=30.0" in repr(layer)
    se = SepBatchNorm2d(64, attention="se", aggregation="hard")
    assert se.extra_repr() == "64, K=3, G=1, tau=1.0, attention='se', aggregation='hard'"


@pytest.mark.parametrize("tau", [0.0, -1.0, float("inf")])
def test_temperature_must_be_positive(tau):
    with pytest.raises(ValueError, match=str(tau)):
        SepBatchNorm2d(4, num_groups=1).temperature = tau


def test_temperature_changes_attention_sharpness():
    torch.manual_seed(0)
    layer = one_hot_layer()
    x = torch.randn(2, 6, 4, 4)
    layer.temperature = 1000.0
    assert (layer.attention_weights(x) - 1 / 3).abs().max() < 0.1


@pytest.mark.parametrize(
    "kwargs, text",
    [
        (dict(num_features=10, num_groups=4), "4"),
        (dict(num_features=8, num_branches=0), "0"),
        (dict(num_features=8, num_groups=0), "0"),
        (dict(num_features=8, pool_size=0), "0"),
        (dict(num_features=8, attention="cbam"), "cbam"),
        (dict(num_features=8, aggregation="max"), "max"),
    ],
)
def test_invalid_arguments_name_the_value(kwargs, text):
    with pytest.raises(ValueError, match=text):
        SepBatchNorm2d(**kwargs)


@pytest.mark.parametrize("shape", [(2, 8), (2, 8, 4), (1, 2, 8, 4, 4)])
def test_non_4d_input_raises(shape):
    layer = SepBatchNorm2d(8)
    with pytest.raises(ValueError, match=f"{len(shape)}-D"):
        layer(torch.randn(*shape))


def test_state_dict_round_trip_including_temperature():
    torch.manual_seed(0)
    layer = SepBatchNorm2d(8, num_groups=2)
    layer.temperature = 7.5
    for _ in range(2):
        layer(torch.randn(4, 8, 5, 5))
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert {"weight", "bias", "tau", "norm.running_mean", "norm.running_var", "norm.num_batches_tracked"} <= set(state)
    fresh = SepBatchNorm2d(8, num_groups=2)
    fresh.load_state_dict(state)
    assert fresh.temperature == 7.5
    layer.eval(), fresh.eval()
    x = torch.randn(3, 8, 5, 5)
    torch.testing.assert_close(fresh(x), layer(x))


def test_sync_batchnorm_conversion_keeps_branches():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), SepBatchNorm2d(8, num_branches=3))
    net(torch.randn(4, 3, 8, 8))
    x = torch.randn(2, 3, 8, 8)
    before = net.eval()(x)
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(net))
    layer = synced[1]
    assert type(layer) is SepBatchNorm2d and isinstance(layer.norm, nn.SyncBatchNorm)
    assert layer.weight.shape == (3, 8)
    torch.testing.assert_close(synced(x), before)
    synced.train()  # no process group: SyncBatchNorm normalises locally, as BatchNorm2d
    net.train()
    torch.testing.assert_close(synced(x), net(x))


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    layer = SepBatchNorm2d(8, num_groups=2)
    ref = copy.deepcopy(layer)
    x = torch.randn(3, 8, 6, 6)
    xl = x.clone().to(memory_format=torch.channels_last).requires_grad_(True)
    xc = x.clone().requires_grad_(True)
    y = layer(xl)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, ref(xc))
    g = torch.randn_like(x)
    y.backward(g), ref(xc).backward(g)
    torch.testing.assert_close(xl.grad, xc.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_cpu(dtype):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), SepBatchNorm2d(8))
    x = torch.randn(4, 3, 8, 8)
    reference = net(x)
    with torch.autocast("cpu", dtype=dtype):
        y = net(x)
        y.float().sum().backward()
    assert y.dtype == dtype and torch.isfinite(y).all()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
    torch.testing.assert_close(y.float(), reference, atol=0.1, rtol=0.05)


def test_short_training_separates_branches_and_attention():
    """The initialisation lets the K mapping sets move apart and the attention leave uniform at tau = 1.

    Two domains need opposite channel scalings (target = +x or -x from the same normalised feature); only a
    layer whose attention tells the domains apart and whose branches differ can fit both.
    """
    torch.manual_seed(0)
    layer = SepBatchNorm2d(4, num_branches=2, num_groups=1, pool_size=1)
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    start = layer.weight.detach().clone()

    def batch():
        domain = torch.randint(0, 2, (16,))
        x = torch.randn(16, 4, 3, 3) + 3.0 * domain.view(-1, 1, 1, 1)
        sign = 1.0 - 2.0 * domain.view(-1, 1, 1, 1)
        return x, sign

    def non_uniformity():
        with torch.no_grad():
            x, _ = batch()
            return float((layer.attention_weights(x) - 0.5).abs().mean())

    uniform_at_start = non_uniformity()
    for _ in range(150):
        x, sign = batch()
        x_hat = F.batch_norm(x, None, None, training=True)
        loss = F.mse_loss(layer(x), sign * x_hat)
        opt.zero_grad(), loss.backward(), opt.step()
    spread_start = (start[0] - start[1]).norm()
    spread_end = (layer.weight[0] - layer.weight[1]).detach().norm()
    assert uniform_at_start < 0.01
    assert non_uniformity() > 0.3
    assert spread_end > 10 * spread_start
    assert branch_similarity(nn.Sequential(layer))["0"]["weight"] < 0.5


# --- compilers and export (eval mode for export; tiny shapes to keep CI quick) ---


def tiny_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), SepBatchNorm2d(8, num_groups=2, pool_size=3), nn.ReLU())


def test_torch_compile_matches_eager_forward_and_backward():
    net = tiny_net()
    compiled = torch.compile(copy.deepcopy(net))
    x = torch.randn(4, 3, 6, 6)
    y_eager, y_comp = net(x), compiled(x)
    torch.testing.assert_close(y_comp, y_eager, atol=1e-5, rtol=1e-4)
    y_eager.square().sum().backward()
    y_comp.square().sum().backward()
    for (name, p), q in zip(net.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-4, rtol=1e-3, msg=name)
    torch.testing.assert_close(compiled._orig_mod[1].norm.running_var, net[1].norm.running_var)


def test_torch_export_eval_matches_eager():
    net = tiny_net()
    net(torch.randn(4, 3, 6, 6))
    net.eval()
    x = torch.randn(2, 3, 6, 6)
    program = torch.export.export(net, (x,))
    torch.testing.assert_close(program.module()(x), net(x))


def test_onnx_export_matches_onnxruntime(tmp_path):
    import onnxruntime

    net = tiny_net()
    net(torch.randn(4, 3, 6, 6))
    net.eval()
    x = torch.randn(2, 3, 7, 5)  # 3 does not divide 7 or 5: overlapping pooling windows
    path = tmp_path / "sepbn.onnx"
    torch.onnx.export(net, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=True)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(y), net(x), atol=1e-5, rtol=1e-4)


def test_without_running_stats_uses_batch_statistics_in_eval():
    torch.manual_seed(0)
    layer = SepBatchNorm2d(4, num_branches=1, num_groups=1, track_running_stats=False).eval()
    bn = nn.BatchNorm2d(4, track_running_stats=False).eval()
    x = torch.randn(3, 4, 5, 5) * 2 + 1
    assert layer.norm.running_mean is None
    torch.testing.assert_close(layer(x), bn(x))


@pytest.mark.parametrize("training", [True, False])
def test_output_supports_inplace_activation(training):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), SepBatchNorm2d(8), nn.ReLU(inplace=True)).train(training)
    x = torch.randn(4, 3, 7, 7)
    y = net(x)
    y.sum().backward()
    assert y._base is None and (y >= 0).all() and net[0].weight.grad is not None
    with torch.no_grad():
        assert (net(x) >= 0).all()
