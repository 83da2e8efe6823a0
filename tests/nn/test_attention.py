"""sepbn.nn.attention: shapes, temperature softmax, hard aggregation, sparse max-pool gradient."""

import pytest
import torch
import torch.nn.functional as F

from sepbn.nn.attention import (GroupedAttention, SqueezeExcitationAttention, adaptive_max_pool, branch_weights,
                               window_max)


def test_grouped_attention_shapes_and_pooling():
    att = GroupedAttention(8, num_branches=3, num_groups=2, pool_size=3)
    x = torch.randn(4, 8, 10, 7)
    assert att(x).shape == (4, 2, 3)
    assert att.fc1.in_features == 2 * 3 * 3


def test_se_attention_gate_bounds_logits():
    att = SqueezeExcitationAttention(16, num_branches=4, gate=True)
    logits = att(torch.randn(5, 16, 3, 3))
    assert logits.shape == (5, 1, 4)
    assert bool(((logits > 0) & (logits < 1)).all())


def test_temperature_flattens_softmax():
    logits = torch.randn(6, 2, 3) * 3
    sharp, flat = branch_weights(logits, 1.0), branch_weights(logits, 30.0)
    torch.testing.assert_close(sharp.sum(-1), torch.ones(6, 2))
    assert (flat - 1 / 3).abs().max() < (sharp - 1 / 3).abs().max()
    torch.testing.assert_close(branch_weights(logits, 2.0), torch.softmax(logits / 2, -1))


def test_hard_aggregation_is_one_hot_with_straight_through_gradient():
    logits = torch.randn(4, 2, 3, requires_grad=True)
    hard = branch_weights(logits, 1.0, "hard")
    assert set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(hard.argmax(-1), logits.argmax(-1))
    weights = torch.randn(4, 2, 3)
    (hard * weights).sum().backward()
    soft = logits.detach().clone().requires_grad_(True)
    (torch.softmax(soft, -1) * weights).sum().backward()
    torch.testing.assert_close(logits.grad, soft.grad)


def test_unknown_aggregation_names_value():
    with pytest.raises(ValueError, match="'median'"):
        branch_weights(torch.randn(1, 1, 2), 1.0, "median")


def test_sparse_pool_gradient_equals_dense():
    x = torch.randn(2, 3, 9, 7, requires_grad=True)
    w = torch.randn(2, 3, 3, 3)
    ((x * 2).sum() + (adaptive_max_pool(x, 3) * w).sum()).backward()
    y = x.detach().clone().requires_grad_(True)
    ((y * 2).sum() + (F.adaptive_max_pool2d(y, 3) * w).sum()).backward()
    assert x.grad.layout == torch.strided
    torch.testing.assert_close(x.grad, y.grad)


@pytest.mark.parametrize("shape, size", [((2, 3, 128, 128), 3), ((1, 2, 7, 5), 3), ((2, 2, 4, 4), 4),
                                         ((1, 1, 9, 9), 1)])
def test_window_max_equals_adaptive_max_pool(shape, size):
    x = torch.randn(*shape)
    torch.testing.assert_close(window_max(x, size), F.adaptive_max_pool2d(x, size), rtol=0, atol=0)


@pytest.mark.parametrize("channels_last", [False, True])
def test_pool_tap_gradient_is_exact_with_overlapping_windows(channels_last):
    from sepbn.nn.attention import pool_tap

    x = torch.randn(2, 3, 7, 5, dtype=torch.float64)  # T = 3 on 7x5: windows overlap, maxima can repeat
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_(True)

    def fn(x):
        tapped, pooled = pool_tap(x, 3)
        return tapped * 1.5, pooled.square()

    assert torch.autograd.gradcheck(fn, (x,))
    tapped, pooled = pool_tap(x, 3)
    torch.testing.assert_close(pooled, F.adaptive_max_pool2d(x, 3), rtol=0, atol=0)
    w = torch.randn_like(pooled)
    ((tapped * 2).sum() + (pooled * w).sum()).backward()
    y = x.detach().clone().requires_grad_(True)
    ((y * 2).sum() + (F.adaptive_max_pool2d(y, 3) * w).sum()).backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=0, atol=1e-12)
    z = x.detach().clone().requires_grad_(True)
    pool_tap(z, 3)[1].sum().backward()  # the tapped alias unused: its gradient starts from zeros
    assert z.grad.count_nonzero() > 0
