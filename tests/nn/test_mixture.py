"""sepbn.nn.mixture.MixtureBatchNorm2d (authors' public-code variant) against its definition."""

import copy

import pytest
import torch
from torch import nn

from sepbn.nn import MixtureBatchNorm2d


def reference(layer, x):
    """y = sum_k pi[n, k] * BN_k(x)[n] with copies of the branches (updates their own statistics)."""
    pi = layer.attention_weights(x)[:, 0]
    outs = torch.stack([b(x) for b in layer.branches])
    return torch.einsum("nk,knchw->nchw", pi, outs)


@pytest.mark.parametrize("training", [True, False])
def test_mixture_equals_mixed_branch_outputs(training):
    torch.manual_seed(0)
    layer = MixtureBatchNorm2d(8, num_branches=3, temperature=2.0)
    with torch.no_grad():
        for b in layer.branches:
            b.weight.normal_(), b.bias.normal_(), b.running_mean.normal_(), b.running_var.uniform_(0.5, 2)
    layer.train(training)
    ref = copy.deepcopy(layer)
    x = torch.randn(5, 8, 4, 4) * 2 + 1
    torch.testing.assert_close(layer(x), reference(ref, x), atol=1e-5, rtol=1e-4)
    for a, b in zip(layer.branches, ref.branches):
        torch.testing.assert_close(a.running_var, b.running_var)
        assert int(a.num_batches_tracked) == int(b.num_batches_tracked)


def test_public_code_attention_shape_and_backward():
    layer = MixtureBatchNorm2d(20, num_branches=4)
    assert layer.attention.squeeze.out_features == 2  # 0.1 C
    x = torch.randn(3, 20, 4, 4, requires_grad=True)
    layer(x).sum().backward()
    assert layer.attention.excite.weight.grad is not None and x.grad is not None
    assert layer.extra_repr() == "20, K=4, tau=1.0"


def test_sync_batchnorm_branches_fall_back_to_mixing_outputs():
    torch.manual_seed(0)
    layer = MixtureBatchNorm2d(4, num_branches=2).eval()
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(layer))
    assert all(isinstance(b, nn.SyncBatchNorm) for b in synced.branches)
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(synced(x), layer(x))


def test_rejects_non_affine():
    with pytest.raises(ValueError, match="False"):
        MixtureBatchNorm2d(4, affine=False)
