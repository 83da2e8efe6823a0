"""The built-in protocols: flips are involutions that swap the right semantic pairs, normalisers are
flip-symmetric, and the 5-point maps are unique and commute with both flips."""

from __future__ import annotations

import numpy as np
import pytest

from sepbn.protocols import FIVE_POINT, PROTOCOLS, get_protocol

ALL = sorted(PROTOCOLS)


def _points(L: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 63, size=(4, L, 2))


@pytest.mark.parametrize("name", ALL)
def test_flip_twice_is_identity(name):
    p = get_protocol(name)
    pts = _points(p.num_points)
    once = p.flip(pts, 64)
    assert not np.allclose(once, pts)
    np.testing.assert_allclose(p.flip(once, 64), pts, atol=1e-12)
    np.testing.assert_allclose(once[..., 0], 63 - pts[..., list(p.flip_perm), 0])  # x' = W - 1 - x


def _left_right_groups(p):
    return [(g, g.replace("left", "right")) for g in p.groups if "left" in g and g.replace("left", "right") in p.groups]


@pytest.mark.parametrize("name", ALL)
def test_flip_swaps_left_and_right_groups(name):
    p = get_protocol(name)
    pairs = _left_right_groups(p)
    for left, right in pairs:
        assert {p.flip_perm[i] for i in p.groups[left]} == set(p.groups[right]), (left, right)
    # Groups without a side map onto themselves (contour, nose, mouth, chin ...).
    sided = {g for pair in pairs for g in pair}
    for g, idx in p.groups.items():
        if g not in sided and "left" not in g and "right" not in g:
            assert {p.flip_perm[i] for i in idx} == set(idx), g


@pytest.mark.parametrize("name", ["cofw29", "aflw19", "5pt"])
def test_flip_swaps_named_points(name):
    p = get_protocol(name)
    names = list(p.point_names)
    swapped = 0
    for i, n in enumerate(names):
        for a, b in (("left", "right"), ("right", "left")):
            if a in n and n.replace(a, b) in names:
                assert names[p.flip_perm[i]] == n.replace(a, b), n
                swapped += 1
    assert swapped >= 4
    for i, n in enumerate(names):
        if "left" not in n and "right" not in n:
            assert p.flip_perm[i] == i, n


@pytest.mark.parametrize(
    "name, pairs",
    [
        ("wflw98", [(0, 32), (60, 72), (76, 82), (96, 97)]),  # jaw ends, outer eye corners, mouth corners, pupils
        ("300w68", [(0, 16), (36, 45), (48, 54), (17, 26)]),  # jaw ends, outer eye corners, mouth corners, brow ends
        ("cofw29", [(8, 9), (16, 17), (22, 23)]),
        ("aflw19", [(0, 5), (6, 11), (15, 17)]),
        ("5pt", [(0, 1), (3, 4)]),
    ],
)
def test_documented_semantic_pairs(name, pairs):
    p = get_protocol(name)
    for a, b in pairs:
        assert p.flip_perm[a] == b and p.flip_perm[b] == a


@pytest.mark.parametrize("name", ALL)
def test_point_normalisers_are_flip_symmetric(name):
    p = get_protocol(name)
    for n in p.normalizers.values():
        if n.kind == "points":
            assert {p.flip_perm[i] for i in n.left} == set(n.right), n.name


@pytest.mark.parametrize("name", ALL)
def test_five_point_map_unique_and_commutes_with_flips(name):
    p = get_protocol(name)
    groups = [tuple(sorted(g)) for g in p.five_point]
    assert len(set(groups)) == 5 and len({i for g in groups for i in g}) == sum(len(g) for g in groups)
    pts = _points(p.num_points, seed=1)
    np.testing.assert_allclose(p.to_five_points(p.flip(pts, 64)), FIVE_POINT.flip(p.to_five_points(pts), 64),
                               atol=1e-12)


def test_five_point_map_semantics():
    # Left eye of every protocol lands on image-left of its right eye for a frontal face.
    for name in ALL:
        p = get_protocol(name)
        assert "left" in " ".join(p.point_names[i] for i in p.five_point[0])
        assert "right" in " ".join(p.point_names[i] for i in p.five_point[1])
