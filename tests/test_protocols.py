"""Protocols: flips are involutions that swap the right semantic pairs, the 5-point maps are
unique and commute with both flips, user-defined protocols load from TOML/JSON, bad ones raise."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from sepbn.protocols import (FIVE_POINT, PROTOCOLS, W300_68, get_protocol, load_protocol, protocol_from_dict,
                             protocol_spec, require_protocol, spec_name)

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


TOML = """
name = "my7"
num_points = 7
flip_perm = [1, 0, 2, 4, 3, 6, 5]
point_names = ["le", "re", "nose", "ml", "mr", "lear", "rear"]
five_point = [[0], [1], [2], [3], [4]]
[groups]
eyes = [0, 1]
[normalizer]
kind = "points"
left = [0]
right = [1]
"""


def test_user_protocol_from_toml_and_json(tmp_path):
    t = tmp_path / "my7.toml"
    t.write_text(TOML)
    p = load_protocol(t)
    assert (p.name, p.num_points, p.flip_perm) == ("my7", 7, (1, 0, 2, 4, 3, 6, 5))
    assert p.normalizer().left == (0,) and get_protocol(str(t)) == p
    j = tmp_path / "my7.json"
    j.write_text(json.dumps(p.to_dict()))
    q = get_protocol(str(j))
    assert q.to_dict() == p.to_dict()
    pts = _points(7)
    np.testing.assert_allclose(q.flip(q.flip(pts, 64), 64), pts)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"flip_perm": [1, 0, 2, 4, 3, 5, 6, 6]}, "is not a permutation"),
        ({"flip_perm": [1, 2, 0, 4, 3, 6, 5]}, "is not an involution at indices"),
        ({"point_names": ["a"] * 6}, "6 point names for 7 points"),
        ({"groups": {"eyes": [0, 9]}}, "group 'eyes' has an index outside 0..6"),
        ({"groups": {"eyes": [0, 9]}, "point_names": None}, "group 'eyes' has an index outside 0..6"),
        ({"normalizer": {"kind": "points", "left": [0], "right": [8]}}, "index out of range"),
        ({"normalizer": {"kind": "box", "box_formula": "area"}}, "unknown box_formula 'area'"),
        ({"five_point": [[0], [1]]}, "five_point must hold 5"),
        ({"num_points": 0, "flip_perm": [], "point_names": None}, "num_points must be >= 1"),
        ({"flip_perm": None}, "lacks the field 'flip_perm'"),
        ({"normalizer": None}, "give 'normalizers' or 'normalizer'"),
    ],
)
def test_bad_definitions_raise(tmp_path, change, message):
    import tomllib

    d = tomllib.loads(TOML)
    d.update(change)
    d = {k: v for k, v in d.items() if v is not None}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=message) as e:
        load_protocol(path)
    assert str(e.value).startswith(f"{path}: ")


def test_unknown_name_and_no_inference():
    with pytest.raises(ValueError, match="unknown protocol '68'"):
        get_protocol("68")
    assert get_protocol("WFLW") is PROTOCOLS["wflw98"] and get_protocol("mtfl") is FIVE_POINT


def test_models_and_metrics_run_without_opencv():
    # the vocabulary is on the ground floor: building a network and scoring it loads no reader nor cv2
    code = ("import sys, numpy as np\n"
            "from sepbn.models import create_model\n"
            "from sepbn.evaluation.metrics import nme\n"
            "from sepbn.protocols import FIVE_POINT\n"
            "net = create_model('vanilla', [FIVE_POINT], width=1 / 16, input_size=64)\n"
            "gt = np.array([[[0, 0], [10, 0], [5, 5], [2, 8], [8, 8]]], float)\n"
            "assert nme(gt + 1, gt, FIVE_POINT).shape == (1,)\n"
            "print(sorted(m for m in sys.modules if m == 'cv2' or m.startswith('sepbn.data')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_one_resolver_and_the_spec_that_reads_back(tmp_path):
    custom = protocol_from_dict({"name": "tri3", "num_points": 3, "flip_perm": [1, 0, 2],
                                 "normalizer": {"kind": "points", "left": [0], "right": [1]}})
    assert protocol_spec(W300_68) == "300w68" and get_protocol(protocol_spec(W300_68)) is W300_68
    assert get_protocol(protocol_spec(custom)) == custom  # a user's protocol: its full definition
    assert custom.answers_to("tri3") and W300_68.answers_to("300w") and not W300_68.answers_to("tri3")
    assert spec_name(str(tmp_path / "tri3.json")) == "tri3" and spec_name(custom.to_dict()) == "tri3"
    with pytest.raises(TypeError, match="resolve names once"):
        require_protocol("300w68")
    with pytest.raises(ValueError, match="missing.json: cannot read"):
        get_protocol(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: "):
        get_protocol(str(tmp_path / "bad.json"))
