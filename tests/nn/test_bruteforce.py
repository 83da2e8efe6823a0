"""sepbn.nn.bruteforce: per-sample routing by domain label, context manager, best-of-branches testing."""

import pytest
import torch
from torch import nn

from sepbn.nn import BruteForceSepBN2d, best_per_sample, current_domains, domains, for_each_domain


def randomised(layer):
    with torch.no_grad():
        for b in layer.branches:
            b.weight.normal_()
            b.bias.normal_()
    return layer


def test_routing_equals_per_branch_batch_norm_on_subsets():
    torch.manual_seed(0)
    layer = randomised(BruteForceSepBN2d(4, num_domains=3))
    refs = [nn.BatchNorm2d(4) for _ in range(3)]
    for ref, branch in zip(refs, layer.branches):
        ref.load_state_dict(branch.state_dict())
    labels = torch.tensor([2, 0, 2, 1, 0, 0])
    x = torch.randn(6, 4, 3, 3)
    with domains(labels):
        y = layer(x)
    for k, ref in enumerate(refs):
        rows = labels == k
        torch.testing.assert_close(y[rows], ref(x[rows]))
        torch.testing.assert_close(layer.branches[k].running_mean, ref.running_mean)
        torch.testing.assert_close(layer.branches[k].running_var, ref.running_var)


def test_int_label_selects_one_branch_for_all_and_gradients_reach_only_used_branches():
    torch.manual_seed(0)
    layer = randomised(BruteForceSepBN2d(4, num_domains=3)).eval()
    x = torch.randn(2, 4, 3, 3)
    with domains(1):
        y = layer(x)
    torch.testing.assert_close(y, layer.branches[1](x))
    layer.train()
    with domains([0, 0, 2]):
        layer(torch.randn(3, 4, 3, 3)).sum().backward()
    assert layer.branches[1].weight.grad is None
    assert layer.branches[0].weight.grad is not None and layer.branches[2].weight.grad is not None


def test_labels_reach_nested_layers_and_reset_after_block():
    net = nn.Sequential(nn.Conv2d(3, 4, 1), BruteForceSepBN2d(4, 2), nn.Sequential(BruteForceSepBN2d(4, 2)))
    with domains(torch.tensor([1, 1])):
        assert current_domains().tolist() == [1, 1]
        with domains(0):
            assert current_domains() == 0
        net(torch.randn(2, 3, 4, 4))
    assert current_domains() is None
    assert [int(m.branches[1].num_batches_tracked) for m in (net[1], net[2][0])] == [1, 1]


def test_missing_or_bad_labels():
    layer = BruteForceSepBN2d(4, num_domains=2)
    x = torch.randn(3, 4, 2, 2)
    with pytest.raises(RuntimeError, match="domains"):
        layer(x)
    with domains([0, 5, 1]), pytest.raises(ValueError, match="5"):
        layer(x)
    with domains([0, 1]), pytest.raises(ValueError, match="3 domain labels"):
        layer(x)
    with domains(7), pytest.raises(ValueError, match="7"):
        layer(x)
    with pytest.raises(ValueError, match="0.5"):
        with domains([0.5, 1.0]):
            pass


def test_for_each_domain_and_best_per_sample():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 1), randomised(BruteForceSepBN2d(4, num_domains=3))).eval()
    x = torch.randn(5, 3, 2, 2)
    outputs = for_each_domain(net, x, num_domains=3)
    target = outputs[2].clone()
    target[0] = outputs[1][0]
    best, choice = best_per_sample(outputs, lambda out: (out - target).flatten(1).abs().mean(1))
    assert choice.tolist() == [1, 2, 2, 2, 2]
    torch.testing.assert_close(best, target)
    dict_best, _ = best_per_sample([{"a": o} for o in outputs],
                                   lambda out: (out["a"] - target).flatten(1).abs().mean(1))
    torch.testing.assert_close(dict_best["a"], target)


def test_from_batchnorm_keeps_eval_output():
    bn = nn.BatchNorm2d(4)
    bn(torch.randn(8, 4, 3, 3) * 3 + 1)
    with torch.no_grad():
        bn.weight.normal_()
    bn.eval()
    layer = BruteForceSepBN2d.from_batchnorm(bn, num_domains=3)
    x = torch.randn(2, 4, 3, 3)
    for k in range(3):
        with domains(k):
            torch.testing.assert_close(layer(x), bn(x))
