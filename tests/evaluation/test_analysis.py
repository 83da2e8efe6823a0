"""sepbn.evaluation.analysis: entropy of pi, mean pi per sub-domain, mapping-set similarity, captures, t-SNE."""

import math

import numpy as np
import pytest
import torch

from sepbn.evaluation.analysis import (
    attention_summary, attentive_layers, capture, entropy, mapping_similarity, relative_spread, training_setup, tsne,
)
from sepbn.models import create_model
from sepbn.nn import SepBatchNorm2d


def tiny_net(norm="sepbn", **norm_kwargs):
    torch.manual_seed(0)
    return create_model("vanilla", ["5pt"], norm=norm, norm_kwargs=norm_kwargs or None, width=1 / 16,
                        input_size=64).eval()


def test_entropy_of_one_hot_is_zero_and_of_uniform_is_log_k():
    k = 4
    one_hot = np.eye(k)[[0, 2, 3]]
    assert entropy(one_hot).tolist() == [0.0, 0.0, 0.0]
    assert entropy(np.full((2, 3, k), 1 / k)) == pytest.approx(np.full((2, 3), math.log(k)))
    assert entropy([0.5, 0.5, 0.0]) == pytest.approx(math.log(2))


def test_attention_summary_hand_computed():
    # 4 faces, G = 1, K = 2: faces 0, 1 one-hot on branch 0 ("a"), faces 2, 3 uniform ("b")
    pi = np.array([[[1.0, 0.0]], [[1.0, 0.0]], [[0.5, 0.5]], [[0.5, 0.5]]])
    s = attention_summary(pi, {"pose": np.array(["a", "a", "b", "b"])})
    assert s["entropy"] == pytest.approx(math.log(2) / 2)
    assert s["entropy_normalised"] == pytest.approx(0.5)
    np.testing.assert_allclose(s["mean_pi"], [[0.75, 0.25]])
    assert s["by"]["pose"]["a"] == {"faces": 2, "entropy": 0.0, "entropy_normalised": 0.0, "mean_pi": [[1.0, 0.0]]}
    assert s["by"]["pose"]["b"]["entropy_normalised"] == pytest.approx(1.0)
    assert (s["groups"], s["branches"], s["faces"]) == (1, 2, 4)
    with pytest.raises(ValueError, match="3 labels for 4 faces"):
        attention_summary(pi, {"pose": np.array(["a", "a", "b"])})
    with pytest.raises(ValueError, match=r"\(N, G, K\)"):
        attention_summary(pi[:, 0])


def test_identical_mapping_sets_have_similarity_one_and_no_spread():
    model = tiny_net()
    layers = attentive_layers(model)
    assert layers and all(isinstance(m, SepBatchNorm2d) for _, m in layers)
    with torch.no_grad():
        for _, m in layers:
            m.weight.copy_(m.weight[:1].expand_as(m.weight))
            m.bias.copy_(torch.randn_like(m.bias[:1]).expand_as(m.bias))
    sims = mapping_similarity(model)
    assert list(sims) == [name for name, _ in layers]
    for per_kind in sims.values():
        for kind in ("weight", "bias"):
            assert per_kind[kind]["cosine"] == pytest.approx(1.0)
            assert per_kind[kind]["relative_spread"] == pytest.approx(0.0, abs=1e-12)
    # sets that differ: spread > 0
    with torch.no_grad():
        layers[0][1].weight[1] += 0.5
    assert mapping_similarity(model)[layers[0][0]]["weight"]["relative_spread"] > 0


def test_relative_spread_hand_computed():
    v = torch.tensor([[3.0, 4.0], [3.0, 4.0], [0.0, 0.0]])  # pair distances 0, 5, 5; mean norm 10 / 3
    assert relative_spread(v) == pytest.approx((10 / 3) / (10 / 3))
    assert math.isnan(relative_spread(torch.ones(1, 3)))


def test_capture_returns_the_layers_own_pi_and_pooled_backbone_features():
    model = tiny_net()
    x = torch.randn(5, 3, 64, 64)
    expected_pi, expected_feat = {}, []
    hooks = [m.register_forward_pre_hook(lambda m, a, n=n: expected_pi.__setitem__(n, m.attention_weights(a[0])))
             for n, m in attentive_layers(model)]
    hooks.append(model.backbone.register_forward_hook(lambda m, a, o: expected_feat.append(o.mean(dim=(2, 3)))))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    got = capture(model, [(x[:3], "5pt"), (x[3:], None)])
    assert got.features.shape == expected_feat[0].shape
    np.testing.assert_allclose(got.features, expected_feat[0].numpy(), rtol=1e-5, atol=1e-6)
    assert list(got.pi) == list(expected_pi)
    for name, pi in got.pi.items():
        np.testing.assert_allclose(pi, expected_pi[name].numpy(), rtol=1e-5, atol=1e-6)
        assert pi.shape == (5, 2, 3)
    # hooks are gone: a later forward leaves no trace and behaves as before
    assert all(not m._forward_pre_hooks for _, m in attentive_layers(model)) and not model.backbone._forward_hooks


def test_capture_of_a_bn_network_has_features_but_no_pi():
    model = tiny_net("bn")
    got = capture(model, [(torch.randn(2, 3, 64, 64), "5pt")])
    assert got.pi == {} and got.features.shape[0] == 2
    with pytest.raises(ValueError, match="no faces"):
        capture(model, [])


def test_training_setup_reports_the_decay_applied_to_mapping_sets_and_tau():
    model = tiny_net()
    for _, m in attentive_layers(model):
        m.temperature = 2.5
    config = {"optim": {"name": "sgd", "weight_decay": 5e-4, "sepbn_weight_decay": None},
              "schedule": {"tau_start": 30.0, "tau_end": 1.0, "tau_epochs": 30, "epochs": 500}}
    opt = {"param_groups": [{"name": "backbone", "weight_decay": 5e-4}, {"name": "sepbn_mapping", "weight_decay": 0.0}]}
    s = training_setup(config, opt, model)
    assert s["sepbn_weight_decay"] == 5e-4 and "optim.weight_decay" in s["sepbn_weight_decay_from"]
    assert s["sepbn_weight_decay_in_optimizer_state"] == 0.0
    assert set(s["tau"].values()) == {2.5} and len(s["tau"]) == len(attentive_layers(model))
    assert s["tau_schedule"] == config["schedule"]
    config["optim"]["sepbn_weight_decay"] = 0.0
    assert training_setup(config, None, model)["sepbn_weight_decay"] == 0.0


def test_tsne_separates_two_clusters():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (15, 6)), rng.normal(3, 0.1, (15, 6))])
    y = tsne(x, seed=0)
    assert y.shape == (30, 2)
    a, b = y[:15].mean(0), y[15:].mean(0)
    assert np.linalg.norm(a - b) > 3 * max(y[:15].std(0).max(), y[15:].std(0).max())
    with pytest.raises(ValueError, match="at least 4"):
        tsne(x[:3])
