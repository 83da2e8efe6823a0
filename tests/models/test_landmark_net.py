"""LandmarkNet (paper Fig. 5): output dict per protocol and per-sample routing."""

import pytest
import torch
from torch import nn

from sepbn.models import LandmarkNet, create_model


@pytest.fixture
def net():
    torch.manual_seed(0)
    return create_model("vanilla", ["wflw98", "cofw29", "aflw19"], width=1 / 32, input_size=64)


def test_all_heads_on_all_samples(net):
    out = net(torch.randn(4, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"wflw98": (4, 98, 2), "cofw29": (4, 29, 2), "aflw19": (4, 19, 2)}
    assert net.output_protocols == ("wflw98", "cofw29", "aflw19")
    assert net.num_points == {"wflw98": 98, "cofw29": 29, "aflw19": 19}


def test_output_is_head_vector_as_xy_pairs(net):
    x = torch.randn(2, 3, 64, 64)
    flat = net.heads["cofw29"](net.backbone(x))
    out = net(x, "cofw29")
    assert list(out) == ["cofw29"]
    torch.testing.assert_close(out["cofw29"][:, :, 0], flat[:, 0::2])  # [x1, y1, x2, y2, ...]
    torch.testing.assert_close(out["cofw29"][:, :, 1], flat[:, 1::2])


@pytest.mark.parametrize("train", [True, False])
def test_per_sample_routing_equals_each_head_on_its_rows(net, train):
    net.train(train)
    x = torch.randn(6, 3, 64, 64)
    names = ["aflw19", "wflw98", "aflw19", "aflw19", "wflw98", "aflw19"]
    seen = {}
    hooks = [h.register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, i[0].shape[0])) for n, h in net.heads.items()]
    out = net(x, names)
    for h in hooks:
        h.remove()
    assert seen == {"wflw98": 2, "aflw19": 4}  # each head ran on its own rows only; cofw29 not at all
    assert set(out) == {"wflw98", "aflw19"}
    with torch.no_grad():
        features = net.backbone(x)  # train mode: BN batch statistics over the whole batch, as in forward
    for name in out:
        rows = [i for i, p in enumerate(names) if p == name]
        expected = net.heads[name](features[rows]).unflatten(-1, (net.num_points[name], 2))
        torch.testing.assert_close(out[name], expected)


def test_routing_gradients_reach_only_used_heads(net):
    out = net(torch.randn(2, 3, 64, 64), ["cofw29", "cofw29"])
    out["cofw29"].sum().backward()
    assert all(p.grad is not None for p in net.heads["cofw29"].parameters())
    assert all(p.grad is None for p in net.heads["wflw98"].parameters())


@pytest.mark.parametrize(
    "protocols, match",
    [("wflw", "unknown protocol"), (["cofw29"], "1 per-sample protocols for a batch of 2"), (["cofw29", 3], "unknown")],
)
def test_bad_protocols(net, protocols, match):
    with pytest.raises(ValueError, match=match):
        net(torch.randn(2, 3, 64, 64), protocols)


def test_select_keeps_one_branch_and_rebuilds(net):
    single = net.select("cofw29")
    assert single.output_protocols == ("cofw29",)
    assert single.backbone is net.backbone and single.heads["cofw29"] is net.heads["cofw29"]
    assert single.model_args["protocols"] == ["cofw29"] and single.model_args["adapter"] is True
    rebuilt = create_model(**single.model_args)
    rebuilt.load_state_dict(single.state_dict())  # strict: same architecture, adapter included
    x = torch.randn(2, 3, 64, 64)
    net.eval(), rebuilt.eval()
    torch.testing.assert_close(rebuilt(x)["cofw29"], net(x, "cofw29")["cofw29"])


def test_heads_must_be_a_moduledict_with_num_points():
    with pytest.raises(ValueError, match="ModuleDict"):
        LandmarkNet(nn.Identity(), nn.ModuleDict())
    with pytest.raises(ValueError, match="num_points"):
        LandmarkNet(nn.Identity(), nn.ModuleDict({"a": nn.Linear(2, 2)}))
