"""Protocols from names, files and definitions: user-defined protocols load from TOML/JSON, bad ones raise
naming the file, nothing is inferred from a point count, and a stored spec reads back to the same object."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from sepbn.protocols import (FIVE_POINT, PROTOCOLS, W300_68, get_protocol, load_protocol, protocol_from_dict,
                             protocol_spec, require_protocol, spec_name)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


def _points(L: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 63, size=(4, L, 2))


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
