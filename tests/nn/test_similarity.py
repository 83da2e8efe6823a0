"""sepbn.nn.similarity: paper eq. (2) by hand, and per-layer similarities of every family layer."""

import math

import torch
from torch import nn

from sepbn.nn import BruteForceSepBN2d, SepBatchNorm2d, branch_similarity, mean_pairwise_cosine


def test_eq2_by_hand_for_three_branches():
    p = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    expected = (1 / math.sqrt(2) + 0.0 + 0.0) / 3
    assert math.isclose(mean_pairwise_cosine(p), expected, rel_tol=1e-9)
    assert math.isnan(mean_pairwise_cosine(p[:1]))


def test_branch_similarity_per_layer():
    torch.manual_seed(0)
    brute = BruteForceSepBN2d(4, num_domains=3)
    with torch.no_grad():
        brute.branches[2].weight.mul_(-1)
    sep = SepBatchNorm2d(4, num_branches=2, num_groups=1)
    sims = branch_similarity(nn.Sequential(brute, nn.ReLU(), sep))
    assert set(sims) == {"0", "2"}
    assert math.isclose(sims["0"]["weight"], (1 - 1 - 1) / 3, abs_tol=1e-6)
    assert math.isclose(sims["0"]["running_var"], 1.0, abs_tol=1e-6)
    assert set(sims["2"]) == {"weight", "bias"}
    expected = torch.cosine_similarity(sep.weight[0], sep.weight[1], dim=0).item()
    assert math.isclose(sims["2"]["weight"], expected, rel_tol=1e-5)
