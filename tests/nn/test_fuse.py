"""sepbn.nn.fuse: folding norm layers into convolutions keeps eval outputs; unfusable pairs stay alone."""

import copy

import pytest
import torch
from torch import nn

from sepbn.models import create_model
from sepbn.nn import (BruteForceSepBN2d, FoldedAway, MixedAffine2d, MixtureBatchNorm2d, RoutedAffine2d,
                      SepBatchNorm2d, domains, fuse_for_inference)

NORMS = (nn.BatchNorm2d, SepBatchNorm2d, MixtureBatchNorm2d, BruteForceSepBN2d)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random running statistics, affine, mapping and attention parameters (what a trained model has)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 2 + 0.2)
            if isinstance(m, (nn.BatchNorm2d, SepBatchNorm2d)) and m.weight is not None:
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.5 + 1)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.5)
        for name, p in model.named_parameters():
            if ".attention." in f".{name}":
                p.copy_(torch.randn(p.shape, generator=g))
    return model.eval()


def assert_same(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-4) -> None:
    err = (a - b).abs().max() / b.abs().max().clamp_min(1e-12)
    assert err <= rel, f"relative error {float(err):.2e} > {rel}"


def attention_kinds():
    return [
        (SepBatchNorm2d, dict(num_branches=3, num_groups=2, pool_size=3)),
        (SepBatchNorm2d, dict(num_branches=2, attention="se")),
        (SepBatchNorm2d, dict(num_branches=4, num_groups=4, pool_size=2, aggregation="hard")),
        (MixtureBatchNorm2d, dict(num_branches=3)),
    ]


@pytest.mark.parametrize("layer, kwargs", attention_kinds())
@pytest.mark.parametrize("conv_bias", [False, True])
def test_conv_then_attentive_layer_folds_and_keeps_output(layer, kwargs, conv_bias):
    net = randomize(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=conv_bias), layer(8, **kwargs), nn.ReLU()))
    fused = fuse_for_inference(net)
    assert isinstance(fused[1], MixedAffine2d)
    x = torch.randn(5, 3, 7, 5) * 3 + 1  # 7x5 with T = 3: overlapping pooling windows
    assert_same(fused(x), net(x))
    if layer is SepBatchNorm2d:  # the conv now emits the normalised activation x_hat
        norm = net[1].norm
        x_hat = (net[0](x) - norm.running_mean[:, None, None]) / torch.sqrt(norm.running_var[:, None, None] + norm.eps)
        assert_same(fused[0](x), x_hat)


def test_attention_sees_what_it_saw_before():
    net = randomize(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), SepBatchNorm2d(8, 3, 2, 3, temperature=0.7)))
    fused = fuse_for_inference(net)
    x = torch.randn(4, 3, 9, 9)
    before = net[1].attention(net[0](x))
    assert_same(fused[1].attention(fused[0](x)), before / 0.7)  # 1 / tau is folded into the logits


def test_batchnorm_after_conv_is_folded_like_torch():
    net = randomize(nn.Sequential(nn.Conv2d(3, 6, 3, groups=3, padding=2, dilation=2), nn.BatchNorm2d(6), nn.ReLU()))
    fused = fuse_for_inference(net)
    assert isinstance(fused[1], FoldedAway)
    reference = torch.nn.utils.fusion.fuse_conv_bn_eval(net[0], net[1])
    torch.testing.assert_close(fused[0].weight, reference.weight)
    torch.testing.assert_close(fused[0].bias, reference.bias)
    x = torch.randn(2, 3, 8, 8)
    assert_same(fused(x), net(x))


def test_standalone_layers_fold_their_statistics():
    net = randomize(nn.Sequential(SepBatchNorm2d(3, 2, 1, 2), nn.ReLU(), MixtureBatchNorm2d(3, 2)))
    fused = fuse_for_inference(net)
    assert [type(m) for m in fused] == [MixedAffine2d, nn.ReLU, MixedAffine2d]
    x = torch.randn(3, 3, 6, 6)
    assert_same(fused(x), net(x))


@pytest.mark.parametrize("labels", [1, [0, 2, 1, 2]])
def test_bruteforce_becomes_routed_affine(labels):
    net = randomize(nn.Sequential(nn.Conv2d(3, 8, 3), BruteForceSepBN2d(8, num_domains=3), nn.ReLU()))
    fused = fuse_for_inference(net)
    assert isinstance(fused[1], RoutedAffine2d)
    assert torch.equal(fused[0].weight, net[0].weight)  # nothing goes into the conv: the branch is chosen at run time
    x = torch.randn(4, 3, 6, 6)
    with domains(labels):
        assert_same(fused(x), net(x))
    with pytest.raises(RuntimeError, match="domains"):
        fused(x)


class Branchy(nn.Module):
    """A user network with pairs that must NOT fold: a conv output used twice, a shared conv, a norm on the input,
    weight reuse, and data-dependent control flow (untraceable: its children are fused one by one)."""

    def __init__(self):
        super().__init__()
        self.pre = nn.BatchNorm2d(3)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.a = nn.Conv2d(8, 8, 1)
        self.a_norm = SepBatchNorm2d(8)
        self.shared = nn.Conv2d(8, 8, 1)
        self.s_norm = nn.BatchNorm2d(8)
        self.t = nn.Conv2d(8, 8, 1)
        self.t_norm = nn.BatchNorm2d(8)
        self.tail = nn.Sequential(nn.Conv2d(8, 4, 3), SepBatchNorm2d(4, 2, 2, 2))

    def forward(self, x):
        x = self.stem(self.pre(x))
        y = self.a(x)
        x = self.a_norm(y) + y  # y used twice
        x = self.s_norm(self.shared(x)) + self.shared(x)  # conv called twice
        x = self.t_norm(self.t(x)) * self.t.weight.mean()  # weight read elsewhere
        return self.tail(x)


def test_user_network_folds_only_sound_pairs():
    net = randomize(Branchy())
    original = copy.deepcopy(net.state_dict())
    fused = fuse_for_inference(net)
    assert type(fused.pre) is nn.BatchNorm2d and type(fused.a_norm) is MixedAffine2d  # standalone fold
    assert torch.equal(fused.a.weight, net.a.weight)
    assert type(fused.s_norm) is nn.BatchNorm2d and type(fused.t_norm) is nn.BatchNorm2d
    assert isinstance(fused.stem[1], FoldedAway) and isinstance(fused.tail[1], MixedAffine2d)
    x = torch.randn(2, 3, 8, 8)
    assert_same(fused(x), net(x))
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in original.items())  # the original is untouched
    assert not any(isinstance(m, (FoldedAway, MixedAffine2d)) for m in net.modules())


class Untraceable(Branchy):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent: fx cannot trace this forward
            x = -x
        return super().forward(x)


class TwoWays(nn.Module):
    """A second forward argument decides whether the conv's raw output escapes: never traced as a whole."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)
        self.block = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))

    def forward(self, x, raw: bool = False):
        y = self.conv(x)
        return y if raw else self.block(self.bn(y))


def test_forward_with_more_arguments_is_not_traced_as_a_whole():
    net = randomize(TwoWays())
    fused = fuse_for_inference(net)
    assert type(fused.bn) is nn.BatchNorm2d and isinstance(fused.block[1], FoldedAway)
    x = torch.randn(2, 3, 5, 5)
    assert_same(fused(x, raw=True), net(x, raw=True))
    assert_same(fused(x), net(x))


def test_untraceable_forward_falls_back_to_children():
    net = randomize(Untraceable())
    fused = fuse_for_inference(net)
    assert isinstance(fused.stem[1], FoldedAway) and isinstance(fused.tail[1], MixedAffine2d)
    assert type(fused.t_norm) is nn.BatchNorm2d  # pairs across the untraceable forward stay alone
    x = torch.randn(2, 3, 8, 8)
    assert_same(fused(x), net(x))


def test_unfusable_norms_stay():
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, track_running_stats=False),
                        nn.Conv2d(4, 4, 1), SepBatchNorm2d(4, track_running_stats=False))
    fused = fuse_for_inference(net)
    assert [type(m) for m in fused] == [nn.Conv2d, nn.BatchNorm2d, nn.Conv2d, SepBatchNorm2d]


def test_fused_model_refuses_training():
    fused = fuse_for_inference(randomize(nn.Sequential(nn.Conv2d(3, 4, 1), SepBatchNorm2d(4))))
    fused.train()
    with pytest.raises(RuntimeError, match="folded for inference"):
        fused(torch.randn(2, 3, 4, 4))


def test_train_mode_model_is_fused_from_its_running_statistics():
    net = randomize(nn.Sequential(nn.Conv2d(3, 4, 1), SepBatchNorm2d(4, 2, 2, 2))).train()
    fused = fuse_for_inference(net)
    assert net.training and not fused.training
    x = torch.randn(3, 3, 5, 5)
    assert_same(fused(x), net.eval()(x))


def _vanilla(norm: str, positive: bool) -> nn.Module:
    torch.manual_seed(0)
    net = randomize(create_model("vanilla", ["5pt"], norm=norm, width=1 / 16, input_size=64))
    with torch.no_grad():  # all gammas positive, or one negative gamma per layer
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm2d, SepBatchNorm2d)) and m.weight is not None:
                m.weight.abs_().add_(0.05)
                if not positive:
                    m.weight.view(-1)[-1] = -0.5
    return net


@pytest.mark.parametrize("positive", [True, False])
def test_max_pool_runs_before_an_increasing_affine_and_the_activation(positive):
    net = _vanilla("sepbn", positive)
    fused = fuse_for_inference(net)
    affines = [m for m in fused.modules() if isinstance(m, MixedAffine2d)]
    assert len(affines) == 6
    assert all((m.pool is not None) == positive for m in affines)  # one negative gamma keeps the order
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert_same(fused(x)["5pt"], net(x)["5pt"], 1e-5)


def test_max_pool_runs_before_a_monotone_activation_after_folded_bn():
    net = _vanilla("bn", positive=False)  # BN folds into the conv whatever the sign of gamma
    fused = fuse_for_inference(net)
    assert [type(m).__name__ for m in fused.backbone.blocks[0]] == ["Conv2d", "DeployMaxPool2d", "FoldedAway",
                                                                     "LeakyReLU"]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert_same(fused(x)["5pt"], net(x)["5pt"], 1e-5)
    kept = fuse_for_inference(nn.Sequential(nn.Conv2d(3, 4, 3), nn.SiLU(), nn.MaxPool2d(2)))  # not monotone
    assert [type(m).__name__ for m in kept] == ["Conv2d", "SiLU", "DeployMaxPool2d"]
