"""fuse_for_inference on the three networks at every placement: same eval outputs, no foldable norm left."""

import pytest
import torch
from torch import nn

from sepbn.models import create_model
from sepbn.nn import BruteForceSepBN2d, MixtureBatchNorm2d, SepBatchNorm2d, domains, fuse_for_inference
from tests.nn.test_fuse import assert_same, randomize

NORM_TYPES = (nn.BatchNorm2d, SepBatchNorm2d, MixtureBatchNorm2d, BruteForceSepBN2d)

CASES = [
    ("vanilla", "bn", None, dict(width=1 / 16, input_size=64)),
    *[("vanilla", "sepbn", [i], dict(width=1 / 16, input_size=64)) for i in range(6)],
    ("vanilla", "sepbn", [0, 1, 2, 3, 4, 5], dict(width=1 / 16, input_size=64)),
    ("vanilla", "sepbn", [2, 3], dict(width=1 / 16, input_size=64, norm_kwargs=dict(attention="se"))),
    ("vanilla", "sepbn", [1, 4], dict(width=1 / 16, input_size=64, norm_kwargs=dict(aggregation="hard"))),
    ("vanilla", "mixture", [0, 3], dict(width=1 / 16, input_size=64)),
    ("vanilla", "bruteforce", [1], dict(width=1 / 16, input_size=64)),
    *[("mobilenetv2", "sepbn", p, dict(width=0.25, input_size=32)) for p in (["bn1"], ["bn2"], ["bn3"], ["bn1", "bn2", "bn3"])],
    # ResNeXt-50 has a fixed width (slow to build and run on CPU): all three slots at once fold every pair kind
    ("resnext50", "sepbn", ["bn1", "bn2", "bn3"], dict(input_size=32)),
]


@pytest.mark.parametrize("arch, norm, placement, kwargs", CASES,
                         ids=[f"{a}-{n}-{p}-{k.get('norm_kwargs', '')}" for a, n, p, k in CASES])
def test_fused_network_equals_eval_network(arch, norm, placement, kwargs):
    torch.manual_seed(0)
    net = randomize(create_model(arch, ["cofw29", "aflw19"], norm=norm, placement=placement, **kwargs))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fused = fuse_for_inference(net)
    left = [name for name, m in fused.named_modules() if type(m) in NORM_TYPES]
    assert left == [], f"norm layers left unfolded: {left}"  # every norm of these networks follows a conv
    size = kwargs["input_size"]
    x = torch.randn(2, 3, size, size)
    with domains(1), torch.no_grad():
        want, got = net(x), fused(x)
        for protocol in ("aflw19", None):
            assert_same(fused(x, protocol)[protocol or "cofw29"], net(x, protocol)[protocol or "cofw29"])
    assert want.keys() == got.keys()
    for key in want:
        assert_same(got[key], want[key])
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # the original is unchanged
    assert not any(type(m).__name__ in ("FoldedAway", "MixedAffine2d") for m in net.modules())
