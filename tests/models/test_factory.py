"""create_model: every network x norm trains a step, SepBN sits where asked, model_args rebuilds."""

import json

import pytest
import torch
from torch import nn

from sepbn.models import create_model
from sepbn.nn import BruteForceSepBN2d, MixtureBatchNorm2d, SepBatchNorm2d, domains, sepbn_modules

SMALL = {  # tiny settings per arch: (kwargs, input side)
    "vanilla": (dict(width=1 / 32, input_size=64), 64),
    "mobilenetv2": (dict(width=0.25, input_size=64), 64),
    "resnext50": (dict(input_size=64), 64),
}
SEPBN = dict(num_branches=3, num_groups=2, pool_size=3)


def names_of(net: nn.Module, cls: type) -> set[str]:
    """Names of ``cls`` modules, not counting the BatchNorm2d inside SepBN-family layers."""
    family = [name + "." for name, _ in sepbn_modules(net)]
    return {n for n, m in net.named_modules() if type(m) is cls and not any(n.startswith(f) for f in family)}


@pytest.mark.parametrize("norm", ["bn", "sepbn"])
@pytest.mark.parametrize("arch", sorted(SMALL))
def test_forward_backward_without_nan(arch, norm):
    torch.manual_seed(0)
    kwargs, side = SMALL[arch]
    net = create_model(arch, ["wflw98", "cofw29"], norm=norm, norm_kwargs=SEPBN if norm == "sepbn" else None, **kwargs)
    x = torch.randn(2, 3, side, side)
    out = net(x, ["cofw29", "wflw98"])
    assert {k: tuple(v.shape) for k, v in out.items()} == {"wflw98": (1, 98, 2), "cofw29": (1, 29, 2)}
    sum(v.abs().mean() for v in out.values()).backward()
    grads = [p.grad for p in net.backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    net.eval()
    with torch.no_grad():
        assert all(torch.isfinite(v).all() for v in net(x).values())


@pytest.mark.parametrize("arch", ["vanilla", "mobilenetv2"])
def test_norm_kwargs_reach_every_placed_layer(arch):
    kwargs, side = SMALL[arch]
    nk = dict(num_branches=4, num_groups=1, attention="se", aggregation="hard", temperature=30.0)
    net = create_model(arch, ["cofw29"], norm="sepbn", norm_kwargs=nk, **kwargs)
    layers = [m for _, m in sepbn_modules(net)]
    assert layers and all(
        (m.num_branches, m.num_groups, m.attention_type, m.aggregation, m.temperature) == (4, 1, "se", "hard", 30.0)
        for m in layers
    )
    net(torch.randn(2, 3, side, side))["cofw29"].sum().backward()


def test_vanilla_placement_by_block_index():
    kwargs, _ = SMALL["vanilla"]
    net = create_model("vanilla", ["cofw29"], norm="sepbn", placement=[4, 0], **kwargs)
    assert names_of(net, SepBatchNorm2d) == {"backbone.blocks.0.1", "backbone.blocks.4.1"}
    assert names_of(net, nn.BatchNorm2d) == {f"backbone.blocks.{i}.1" for i in (1, 2, 3, 5)}
    assert net.model_args["placement"] == [0, 4]
    assert names_of(create_model("vanilla", ["cofw29"], norm="sepbn", **kwargs), SepBatchNorm2d) == {
        f"backbone.blocks.{i}.1" for i in range(6)
    }  # default: every block (Table VI)


RESNEXT_BLOCKS = [f"backbone.layer{i + 1}.{j}" for i, n in enumerate((3, 4, 6, 3)) for j in range(n)]


@pytest.mark.parametrize("placement", [["bn3"], ["bn1", "bn2"], ["bn1", "bn2", "bn3"]])
def test_resnext_placement_counts(placement):
    net = create_model("resnext50", ["cofw29"], norm="sepbn", placement=placement)
    assert names_of(net, SepBatchNorm2d) == {f"{b}.{s}" for b in RESNEXT_BLOCKS for s in placement}
    assert len(names_of(net, SepBatchNorm2d)) == 16 * len(placement)
    bns = names_of(net, nn.BatchNorm2d)
    assert "backbone.bn1" in bns and "backbone.layer1.0.downsample.1" in bns  # stem and shortcuts stay BN
    assert len(bns) == 1 + 4 + 16 * (3 - len(placement))


# MobileNetV2: features.1 has no expansion (BN2 = conv.0.1, BN3 = conv.2); features.2..17 have all three.
MOBILENET_SLOTS = {
    "bn1": {f"backbone.features.{i}.conv.0.1" for i in range(2, 18)},
    "bn2": {"backbone.features.1.conv.0.1"} | {f"backbone.features.{i}.conv.1.1" for i in range(2, 18)},
    "bn3": {"backbone.features.1.conv.2"} | {f"backbone.features.{i}.conv.3" for i in range(2, 18)},
}


@pytest.mark.parametrize("slot", ["bn1", "bn2", "bn3"])
def test_mobilenet_placement_per_slot(slot):
    net = create_model("mobilenetv2", ["cofw29"], norm="sepbn", placement=[slot], width=0.25)
    placed = names_of(net, SepBatchNorm2d)
    assert placed == MOBILENET_SLOTS[slot]
    for name in placed:  # the conv before each placed norm is the stage the slot names (Fig. 6, right)
        parent, _, idx = name.rpartition(".")
        conv = net.get_submodule(parent)[int(idx) - 1]
        if slot == "bn2":  # depthwise 3x3
            assert conv.kernel_size == (3, 3) and conv.groups == conv.in_channels == conv.out_channels
        else:  # 1x1: expansion (BN1) widens, projection (BN3) narrows
            assert conv.kernel_size == (1, 1) and conv.groups == 1
            assert (conv.out_channels > conv.in_channels) == (slot == "bn1")
    assert {"backbone.features.0.1", "backbone.features.18.1"} <= names_of(net, nn.BatchNorm2d)


def test_bruteforce_norm():
    kwargs, side = SMALL["vanilla"]
    net = create_model("vanilla", ["cofw29"], norm="bruteforce", norm_kwargs={"num_domains": 2}, placement=[5], **kwargs)
    assert names_of(net, BruteForceSepBN2d) == {"backbone.blocks.5.1"}
    with domains(torch.tensor([1, 0, 1])):
        assert net(torch.randn(3, 3, side, side))["cofw29"].shape == (3, 29, 2)
    net = create_model("mobilenetv2", ["cofw29"], norm="bruteforce", norm_kwargs={"num_domains": 2}, width=0.25)
    assert names_of(net, BruteForceSepBN2d) == MOBILENET_SLOTS["bn3"]


def test_mixture_norm_is_the_authors_variant():
    kwargs, side = SMALL["vanilla"]
    net = create_model("vanilla", ["cofw29"], norm="mixture", norm_kwargs={"num_branches": 3}, **kwargs)
    assert len(names_of(net, MixtureBatchNorm2d)) == 6
    net(torch.randn(2, 3, side, side))["cofw29"].sum().backward()
    net = create_model("resnext50", ["cofw29"], norm="mixture", placement=["bn2"])
    assert names_of(net, MixtureBatchNorm2d) == {f"{b}.bn2" for b in RESNEXT_BLOCKS}


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_model_args_rebuild_same_state_dict_and_outputs(arch):
    kwargs, side = SMALL[arch]
    torch.manual_seed(0)
    net = create_model(arch, ["cofw29", "aflw19"], norm="sepbn", norm_kwargs=SEPBN, **kwargs)
    args = json.loads(json.dumps(net.model_args))  # what a checkpoint stores
    twin = create_model(**args)
    twin.load_state_dict(net.state_dict())  # strict
    assert twin.model_args == net.model_args
    x = torch.randn(2, 3, side, side)
    net.eval(), twin.eval()
    with torch.no_grad():
        a, b = net(x), twin(x)
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_adapter_default_and_override():
    kwargs, _ = SMALL["vanilla"]
    assert create_model("vanilla", ["cofw"], **kwargs).model_args["adapter"] is False
    assert create_model("vanilla", ["cofw", "wflw"], **kwargs).model_args["adapter"] is True
    net = create_model("vanilla", ["cofw"], adapter=True, **kwargs)
    assert isinstance(net.heads["cofw29"].adapter[0], nn.Conv2d)


def test_protocol_objects_rebuild_without_their_file():
    from sepbn.data.protocols import COFW29, protocol_from_dict

    custom = protocol_from_dict({"name": "tri3", "num_points": 3, "flip_perm": [1, 0, 2],
                                 "normalizer": {"kind": "points", "left": [0], "right": [1]}})
    net = create_model("vanilla", [custom, COFW29], width=1 / 64, input_size=64)
    assert net.num_points == {"tri3": 3, "cofw29": 29}
    assert net.model_args["protocols"] == ["tri3", "cofw29"]
    assert create_model(**json.loads(json.dumps(net.model_args))).num_points == net.num_points


def test_custom_protocol_names_need_num_points():
    kwargs, _ = SMALL["vanilla"]
    net = create_model("vanilla", ["my7"], num_points={"my7": 7}, **kwargs)
    assert net.num_points == {"my7": 7} and create_model(**net.model_args).num_points == {"my7": 7}
    with pytest.raises(ValueError, match="unknown protocol"):
        create_model("vanilla", ["my7"], **kwargs)
    with pytest.raises(ValueError, match="contradicts"):
        create_model("vanilla", ["cofw29"], num_points={"cofw29": 7}, **kwargs)


@pytest.mark.parametrize(
    "arch, kwargs, match",
    [
        ("vgg", {}, "unknown arch"),
        ("vanilla", dict(norm="ln"), "unknown norm"),
        ("vanilla", dict(placement=[0]), "norm other than 'bn'"),
        ("vanilla", dict(norm="sepbn", placement=[6]), "subset of"),
        ("resnext50", dict(norm="sepbn", placement=["bn4"]), "subset of"),
        ("resnext50", dict(width=0.5), "width"),
        ("vanilla", dict(norm="sepbn", norm_kwargs={"x": object()}), "JSON"),
        ("vanilla", dict(width=-1.0), "width"),
        ("vanilla", dict(head="heatmap"), "unknown head"),
    ],
)
def test_invalid_arguments(arch, kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model(arch, ["cofw29"], **kwargs)


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_integral_head_reads_a_map_and_rebuilds(arch):
    kwargs, side = SMALL[arch]
    torch.manual_seed(0)
    net = create_model(arch, ["cofw29", "5pt"], norm="sepbn", norm_kwargs=SEPBN, head="integral", **kwargs)
    x = torch.randn(2, 3, side, side)
    features = net.backbone(x)
    expected_side = side // 16 if arch == "vanilla" else side // 32  # the Vanilla CNN drops its last two pools
    assert features.shape[-2:] == (expected_side, expected_side)
    out = net(x, ["5pt", "cofw29"])
    assert {k: tuple(v.shape) for k, v in out.items()} == {"5pt": (1, 5, 2), "cofw29": (1, 29, 2)}
    sum(v.abs().mean() for v in out.values()).backward()
    assert all(p.grad is not None for p in net.parameters())
    twin = create_model(**json.loads(json.dumps(net.model_args)))
    twin.load_state_dict(net.state_dict())  # strict: the same modules
    assert twin.model_args["head"] == "integral"
    net.eval(), twin.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x)["5pt"], twin(x)["5pt"])


@pytest.mark.parametrize("side", [64, 72, 90])  # even sides, and ones whose skip map has an odd side
def test_integral_fine_head_reads_the_skip_map_twice_as_fine(side):
    torch.manual_seed(0)
    kwargs = dict(norm="sepbn", norm_kwargs=SEPBN, width=1 / 32, input_size=side)
    net = create_model("vanilla", ["5pt"], head="integral_fine", **kwargs).eval()
    coarse = create_model("vanilla", ["5pt"], head="integral", **kwargs)
    f = net.backbone
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        skip = f.blocks[:4](x)  # block 3 before its pool
        top = f.blocks[4:](f.skip_pool(skip))
        expected = skip + torch.nn.functional.interpolate(f.top_down(top), size=skip.shape[-2:], mode="bilinear")
        torch.testing.assert_close(f(x), expected)
    side8 = side // 2 // 2 // 2
    assert f.out_size == (side8, side8) == tuple(f(x).shape[-2:])
    assert f.out_channels == f.blocks[3][0].out_channels == net.heads["5pt"].logits.in_channels
    assert coarse.backbone(x).shape[-1] == side8 // 2  # the plain integral head: half as fine
    extra = sum(p.numel() for p in net.parameters()) - sum(p.numel() for p in coarse.parameters())
    c3, c5, points = f.out_channels, f.blocks[5][0].out_channels, 5
    assert extra == (c5 * c3 + c3) + (c3 - c5) * points  # the 1x1 top-down conv; a head on fewer channels
    twin = create_model(**json.loads(json.dumps(net.model_args)))
    twin.load_state_dict(net.state_dict())
    assert twin.model_args["head"] == "integral_fine"


@pytest.mark.parametrize("arch", ["mobilenetv2", "resnext50"])
def test_integral_fine_head_is_vanilla_only(arch):
    kwargs, _ = SMALL[arch]
    with pytest.raises(ValueError, match="Vanilla CNN only"):
        create_model(arch, ["5pt"], head="integral_fine", **kwargs)


def test_duplicate_protocols_rejected():
    with pytest.raises(ValueError, match="twice"):
        create_model("vanilla", ["cofw", "cofw29"], width=1 / 64, input_size=64)


def test_importing_models_does_not_load_the_data_stack():
    import subprocess
    import sys

    code = "import sys, sepbn.models; print(sorted(m for m in ('cv2', 'sepbn.data') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"
