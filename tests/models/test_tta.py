"""Flip averaging (sepbn.models.tta): the averaged predictor is mirror-equivariant by construction."""

import torch

from sepbn.data.protocols import get_protocol
from sepbn.models import create_model
from sepbn.models.tta import flip_average, unflip_points


def test_unflip_is_an_involution_for_every_builtin_protocol():
    for name in ("300w68", "wflw98", "cofw29", "aflw19", "5pt"):
        p = get_protocol(name)
        u = torch.randn(3, p.num_points, 2)
        assert torch.equal(unflip_points(unflip_points(u, p.flip_perm), p.flip_perm), u)


def test_flip_average_of_a_random_network_is_mirror_equivariant():
    torch.manual_seed(0)
    p = get_protocol("300w68")
    net = create_model("vanilla", [p.name], width=1 / 16, input_size=64).eval()

    def forward(x):
        return net(x, protocols=p.name)[p.name]

    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain = flip_average(forward, x, p.flip_perm)
        mirrored = flip_average(forward, x.flip(-1), p.flip_perm)
        assert not torch.allclose(forward(x), plain, atol=1e-4)  # the network alone is not equivariant
    # prediction on the mirror image, mapped back, equals the prediction on the image
    assert torch.allclose(unflip_points(mirrored, p.flip_perm), plain, atol=1e-5)


def test_wrong_permutation_breaks_equivariance():
    """A test that can fail: the identity permutation is wrong for 68 points."""
    torch.manual_seed(1)
    p = get_protocol("300w68")
    net = create_model("vanilla", [p.name], width=1 / 16, input_size=64).eval()
    forward = lambda x: net(x, protocols=p.name)[p.name]  # noqa: E731
    x = torch.randn(2, 3, 64, 64)
    ident = list(range(68))
    with torch.no_grad():
        plain = flip_average(forward, x, p.flip_perm)
        mirrored = flip_average(forward, x.flip(-1), ident)
    assert not torch.allclose(unflip_points(mirrored, p.flip_perm), plain, atol=1e-3)
