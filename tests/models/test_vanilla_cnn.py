"""Vanilla CNN (paper Table I, Table VI): parameter count, shapes, per-block norm layers."""

import pytest
import torch
from torch import nn

from sepbn.models import VanillaCNN, VanillaFeatures, create_model


# Counted by hand from Table I: six 3x3 convs (no bias, see vanilla_cnn.py), six BNs (scale + shift),
# Linear(8192, 1024) and Linear(1024, 2L) with biases.
TABLE_I_CONVS = 3 * 3 * (3 * 64 + 64 * 128 + 128 * 256 + 256 * 512 + 512 * 1024 + 1024 * 2048)
TABLE_I_BNS = 2 * (64 + 128 + 256 + 512 + 1024 + 2048)


def table_i_regressor(num_points: int) -> int:
    return (8192 * 1024 + 1024) + (1024 * 2 * num_points + 2 * num_points)


def table_i_parameter_count(num_points: int) -> int:
    return TABLE_I_CONVS + TABLE_I_BNS + table_i_regressor(num_points)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("num_points", [98, 29])
def test_table_i_parameter_count(num_points):
    assert count(VanillaCNN(num_points)) == table_i_parameter_count(num_points)


def test_single_protocol_landmark_net_is_table_i():
    net = create_model("vanilla", ["cofw29"])
    assert net.model_args["adapter"] is False
    assert count(net) == table_i_parameter_count(29)


def test_cnt_heads_add_one_adapter_each():
    net = create_model("vanilla", ["cofw29", "aflw19"])
    adapter = 2048 * 2048 + 2048  # Conv1x1(2048, 2048) with bias
    expected = TABLE_I_CONVS + TABLE_I_BNS + table_i_regressor(29) + table_i_regressor(19) + 2 * adapter
    assert count(net) == expected


def test_feature_map_sizes_follow_table_i():
    f = VanillaFeatures(width=1 / 32)  # 128 px input, channels 2, 4, ..., 64
    x = torch.randn(2, 3, 128, 128)
    sides = []
    for block in f.blocks:
        x = block(x)
        sides.append(x.shape[-1])
    assert sides == [64, 32, 16, 8, 4, 2]
    assert x.shape == (2, 64, 2, 2) and f.out_size == (2, 2) and f.out_channels == 64


def test_input_size_option_floors_six_halvings():
    f = VanillaFeatures(width=1 / 64, input_size=96)
    assert f(torch.randn(1, 3, 96, 96)).shape[-2:] == (1, 1) == f.out_size
    with pytest.raises(ValueError, match="32"):
        VanillaFeatures(input_size=32)


def test_norm_layer_per_block():
    marked = {1, 4}
    norms = [(lambda c: nn.GroupNorm(1, c)) if i in marked else nn.BatchNorm2d for i in range(6)]
    f = VanillaFeatures(norms, width=1 / 64, input_size=64)
    kinds = {i: type(f.get_submodule(name)) for i, name in enumerate(f.norm_names())}
    assert {i for i, k in kinds.items() if k is nn.GroupNorm} == marked
    assert all(k is nn.BatchNorm2d for i, k in kinds.items() if i not in marked)


def test_forward_backward_tiny():
    net = VanillaCNN(5, width=1 / 32, input_size=64)
    out = net(torch.randn(3, 3, 64, 64))
    assert out.shape == (3, 10)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("bad", [dict(width=0.0), dict(norm_layer=[nn.BatchNorm2d] * 5)])
def test_invalid_arguments(bad):
    with pytest.raises(ValueError):
        VanillaFeatures(**bad)
