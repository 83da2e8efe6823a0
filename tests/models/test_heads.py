"""Regression heads (paper Fig. 5 adapter, Table I regressor, section V-D pooled classifier)."""

import pytest
import torch
from torch import nn

from sepbn.models.heads import FlattenHead, IntegralHead, PooledHead, conv_adapter


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_flatten_head_is_table_i_regressor():
    head = FlattenHead(8, (2, 2), num_points=3, hidden=16)
    assert head(torch.randn(4, 8, 2, 2)).shape == (4, 6)
    assert n_params(head) == (32 * 16 + 16) + (16 * 6 + 6)
    assert isinstance(head.adapter, nn.Identity)


def test_adapter_is_one_1x1_conv_per_branch():
    head = FlattenHead(8, (2, 2), num_points=3, hidden=16, adapter=True)
    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 and convs[0].kernel_size == (1, 1) and convs[0].in_channels == convs[0].out_channels == 8
    assert n_params(head) == n_params(FlattenHead(8, (2, 2), 3, hidden=16)) + 8 * 8 + 8


def test_pooled_head_any_spatial_size():
    head = PooledHead(8, num_points=5, dropout=0.2, adapter=True).eval()
    for side in (1, 3, 4):
        assert head(torch.randn(2, 8, side, side)).shape == (2, 10)
    # global average pooling: a spatially constant map gives the same output at every size
    x = torch.randn(2, 8, 1, 1)
    torch.testing.assert_close(head(x), head(x.expand(2, 8, 4, 4)))


@pytest.mark.parametrize(
    "build",
    [
        lambda: FlattenHead(8, (2, 2), num_points=0),
        lambda: FlattenHead(8, (0, 2), num_points=3),
        lambda: PooledHead(8, num_points=3, dropout=1.0),
        lambda: conv_adapter(0),
    ],
)
def test_invalid_arguments(build):
    with pytest.raises(ValueError):
        build()


def test_integral_head_reads_a_peaked_map_at_its_cell():
    head = IntegralHead(4, num_points=2)
    with torch.no_grad():  # point 0 follows channel 0, point 1 channel 1, sharply
        head.logits.weight.zero_()
        head.logits.bias.zero_()
        head.logits.weight[0, 0] = head.logits.weight[1, 1] = 100.0
    x = torch.zeros(1, 4, 5, 9)
    x[0, 0, 0, 0] = 1.0  # top-left cell: the crop's corner (-1, -1)
    x[0, 1, 2, 6] = 1.0  # row 2 of 5 (y = 0), column 6 of 9 (x = 0.5)
    torch.testing.assert_close(head(x), torch.tensor([[-1.0, -1.0, 0.5, 0.0]]), atol=1e-4, rtol=0)


def test_integral_head_is_differentiable_and_any_size():
    head = IntegralHead(8, num_points=5, adapter=True)
    assert isinstance(head.adapter, nn.Sequential)
    for h, w in ((1, 1), (3, 4), (8, 8)):
        x = torch.randn(2, 8, h, w, requires_grad=True)
        out = head(x)
        assert out.shape == (2, 10) and bool((out.abs() <= 1.0 + 1e-6).all())
        out.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
    assert n_params(head) == (8 * 8 + 8) + (8 * 5 + 5)
