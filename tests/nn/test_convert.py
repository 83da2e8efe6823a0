"""sepbn.nn.convert: conversion preserves outputs, selection by pattern/predicate, temperature, listing."""

import pytest
import torch
from torch import nn

from sepbn.nn import (BruteForceSepBN2d, MixtureBatchNorm2d, SepBatchNorm2d, convert_to_sepbn, domains,
                      sepbn_modules, set_temperature)


def trained_net():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8, affine=False), nn.ReLU()),
        nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4),
    )
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d) and m.affine:
                m.weight.normal_(), m.bias.normal_()
    for _ in range(3):
        net(torch.randn(4, 3, 6, 6) * 2 + 1)
    return net.eval()


@pytest.mark.parametrize("layer, kwargs", [
    (SepBatchNorm2d, dict(num_branches=3, num_groups=2)),
    (SepBatchNorm2d, dict(num_branches=2, attention="se")),
    (BruteForceSepBN2d, dict(num_domains=3)),
    (MixtureBatchNorm2d, dict(num_branches=3)),
])
def test_conversion_preserves_eval_output(layer, kwargs):
    net = trained_net()
    x = torch.randn(3, 3, 6, 6)
    before = net(x)
    convert_to_sepbn(net, layer=layer, **kwargs)
    assert [type(m) for _, m in sepbn_modules(net)] == [layer] * 3
    with domains(1):
        torch.testing.assert_close(net(x), before, atol=1e-5, rtol=1e-4)


def test_statistics_copied_and_training_mode_kept():
    net = trained_net().train()
    bn = net[1]
    convert_to_sepbn(net, where=r"^1$")
    layer = net[1]
    assert layer.training and layer.weight.shape == (3, 8)
    torch.testing.assert_close(layer.norm.running_var, bn.running_var)
    assert int(layer.norm.num_batches_tracked) == int(bn.num_batches_tracked)
    torch.testing.assert_close(layer.weight, bn.weight.expand(3, 8))


def test_selection_by_pattern_and_predicate():
    net = convert_to_sepbn(trained_net(), where=r"^3\.")
    assert [n for n, _ in sepbn_modules(net)] == ["3.1"]
    net = convert_to_sepbn(trained_net(), where=lambda name, m: m.num_features == 4, num_groups=1)
    assert [n for n, _ in sepbn_modules(net)] == ["5"]
    with pytest.raises(ValueError, match="42"):
        convert_to_sepbn(trained_net(), where=42)


def test_conversion_is_idempotent_and_converts_bare_layer():
    net = convert_to_sepbn(trained_net())
    again = convert_to_sepbn(net)
    assert [type(m.norm) for _, m in sepbn_modules(again)] == [nn.BatchNorm2d] * 3
    assert isinstance(convert_to_sepbn(nn.BatchNorm2d(4)), SepBatchNorm2d)


def test_kwargs_reach_layers_and_set_temperature():
    net = convert_to_sepbn(trained_net(), num_branches=5, temperature=30.0, num_groups=1)
    assert all(m.num_branches == 5 and m.temperature == 30.0 for _, m in sepbn_modules(net))
    assert set_temperature(net, 1.0) == 3
    assert all(m.temperature == 1.0 for _, m in sepbn_modules(net))
