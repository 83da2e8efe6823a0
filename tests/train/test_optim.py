"""Parameter groups: exhaustive and exclusive; weight decay per group; CNT stage-2 learning rates."""

import pytest
import torch
from torch import nn

from sepbn.config import OptimConfig
from sepbn.models import create_model
from sepbn.train.optim import build_optimizer, classify_parameters, param_groups, set_lr


@pytest.fixture(scope="module")
def sepbn_net():
    return create_model("vanilla", ["300w68", "5pt"], norm="sepbn", width=1 / 16, input_size=64)


def _names(groups, key):
    return [n for n, _ in groups[key]]


def test_every_parameter_placed_exactly_once(sepbn_net):
    groups = classify_parameters(sepbn_net)
    placed = [n for g in groups.values() for n, _ in g]
    assert sorted(placed) == sorted(n for n, _ in sepbn_net.named_parameters())
    assert len(placed) == len(set(placed))


def test_groups_follow_the_owning_module(sepbn_net):
    groups = classify_parameters(sepbn_net)
    assert all(n.startswith("heads.") for n in _names(groups, "heads"))
    mapping = _names(groups, "sepbn_mapping")
    assert mapping and all(n.endswith((".weight", ".bias")) and "attention" not in n for n in mapping)
    assert all(p.dim() == 2 for _, p in groups["sepbn_mapping"])  # (K, C)
    assert _names(groups, "sepbn_attention") and all("attention" in n for n in _names(groups, "sepbn_attention"))
    assert not any(n.startswith("heads.") for g in ("backbone", "sepbn_mapping", "sepbn_attention")
                   for n in _names(groups, g))


def test_plain_bn_goes_to_norm_group():
    net = create_model("vanilla", ["5pt"], norm="bn", width=1 / 16, input_size=64)
    groups = classify_parameters(net)
    bn = [n for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert sorted(_names(groups, "norm")) == sorted(f"{m}.{p}" for m in bn for p in ("weight", "bias"))
    assert not groups["sepbn_mapping"]


def test_weight_decay_decision_is_explicit(sepbn_net):
    default = {g["name"]: g["weight_decay"] for g in param_groups(sepbn_net, OptimConfig())}
    assert set(default.values()) == {5e-4}  # the paper's single value for every group
    custom = {g["name"]: g["weight_decay"]
              for g in param_groups(sepbn_net, OptimConfig(sepbn_weight_decay=0.0, norm_weight_decay=0.0))}
    assert custom["sepbn_mapping"] == 0.0 and custom["backbone"] == 5e-4 and custom["sepbn_attention"] == 5e-4


def test_stage2_learning_rates_per_group(sepbn_net):
    opt = build_optimizer(sepbn_net, OptimConfig(backbone_lr=1e-7))
    set_lr(opt, 3e-4)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"backbone": 1e-7, "sepbn_mapping": 1e-7, "sepbn_attention": 1e-7, "heads": 3e-4}
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9


def test_stage1_all_groups_follow_schedule(sepbn_net):
    opt = build_optimizer(sepbn_net, OptimConfig())
    set_lr(opt, 2e-4)
    assert {g["lr"] for g in opt.param_groups} == {2e-4}


def test_frozen_parameters_are_left_out():
    net = create_model("vanilla", ["5pt"], norm="bn", width=1 / 16, input_size=64)
    net.backbone.requires_grad_(False)
    groups = classify_parameters(net)
    assert all(not v for k, v in groups.items() if k != "heads") and groups["heads"]
