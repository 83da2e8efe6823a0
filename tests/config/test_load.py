"""sepbn.config.load: file (+ its base) + overrides -> typed frozen dataclasses; unknown keys and bad types fail
clearly."""

import json
import re
from pathlib import Path

import pytest

from sepbn.config import ConfigError, config_from_dict, config_to_dict, format_config, load_config
from sepbn.protocols import Protocol
from sepbn.study.spec import check_study, load_study

TOML = """
name = "tiny"
[model]
arch = "vanilla"
norm = "sepbn"
norm_kwargs = {num_branches = 3}
width = 0.25
input_size = 32

[[data.train]]
fmt = "300w"
source = "faces"
protocol = "300w68"

[[data.train]]
fmt = "mtfl"
source = "mtfl/training.txt"
protocol = "5pt"

[optim]
lr = 2e-3
"""


def _write(tmp_path, text, name="c.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_load_toml_with_overrides(tmp_path):
    c = load_config(_write(tmp_path, TOML), ["optim.lr=0.01", "data.train.1.limit=5", "train.amp=bf16",
                                             "model.norm_kwargs.num_groups=2", "data.root=/x"])
    assert c.optim.lr == 0.01 and isinstance(c.optim.lr, float)
    assert [d.protocol.name for d in c.data.train] == ["300w68", "5pt"]
    assert c.data.train[1].limit == 5 and c.data.train[0].limit is None
    assert c.model.norm_kwargs == {"num_branches": 3, "num_groups": 2}
    assert c.train.amp == "bf16" and c.data.root == "/x"


def test_round_trip_through_printed_toml_and_json(tmp_path):
    c = load_config(_write(tmp_path, TOML), ["train.init_from=a.pt"])
    assert load_config(_write(tmp_path, format_config(c), "back.toml")) == c
    assert config_from_dict(json.loads(json.dumps(config_to_dict(c)))) == c
    assert load_config(_write(tmp_path, json.dumps(config_to_dict(c)), "c.json")) == c


@pytest.mark.parametrize("override, words", [
    ("optim.lrr=1", ["unknown key", "lrr", "known keys"]),
    ("nope=1", ["unknown key", "nope"]),
    ("optim.lr=fast", ["optim.lr", "float"]),
    ("train.batch_size=2.5", ["train.batch_size", "int"]),
    ("train.progress=maybe", ["train.progress", "bool"]),
    ("data.train.7.limit=1", ["index 7 out of range"]),
    ("model.width=-1", ["model.width", "-1"]),
    ("train.amp=fp8", ["train.amp", "fp8"]),
    ("optim.lr", ["key=value"]),
])
def test_bad_overrides_name_the_key(tmp_path, override, words):
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, TOML), [override])
    for w in words:
        assert w in str(e.value)


def test_unknown_key_in_file_names_section(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lerning_rate'\] in \[optim\]"):
        load_config(_write(tmp_path, TOML + "lerning_rate = 1\n"))
    with pytest.raises(ConfigError, match="lacks required key"):
        load_config(_write(tmp_path, '[[data.train]]\nfmt = "300w"\n'))


def test_string_fields_keep_numeric_looking_text(tmp_path):
    c = load_config(_write(tmp_path, TOML), ["data.train.0.split=1", "name=007"])
    assert c.data.train[0].split == "1" and c.name == "007"


def test_every_shipped_config_loads():
    root = Path(__file__).resolve().parents[2] / "configs"
    files = sorted(root.rglob("*.toml"))
    assert len(files) >= 70  # paper rows (Tables II-XI) + demo
    for f in files:
        if re.search(r"(?m)^\[\[variant\]\]", f.read_text()):  # a study file: its variants resolve, each a config
            assert check_study(load_study(f)) == {}, f
            continue
        c = load_config(f)
        assert c.data.train, f


def test_protocol_resolved_once_and_written_with_its_definition(tmp_path):
    proto = tmp_path / "tri3.json"
    proto.write_text(json.dumps({"name": "tri3", "num_points": 3, "flip_perm": [1, 0, 2],
                                 "normalizer": {"kind": "points", "left": [0], "right": [1]}}))
    table = '[[data.train]]\nfmt = "csv"\nsource = "a.csv"\nprotocol = "{}"\n'
    c = load_config(_write(tmp_path, table.format(proto) + table.format("300w")))
    tri3, w300 = (d.protocol for d in c.data.train)
    assert isinstance(tri3, Protocol) and tri3.num_points == 3 and w300.name == "300w68"
    text = format_config(c)
    assert 'protocol = "300w68"' in text and str(proto) not in text  # built-in by name, a user's inline
    proto.unlink()
    again = tmp_path / "again.toml"
    again.write_text(text)
    assert load_config(again) == c
    with pytest.raises(ConfigError, match=r"data.train\[0\].protocol: .*tri3.json: cannot read"):
        load_config(_write(tmp_path, table.format(proto)))
    with pytest.raises(ConfigError, match=r"data.train.0.protocol=nope: expected Protocol|unknown protocol 'nope'"):
        load_config(_write(tmp_path, table.format("300w")), ["data.train.0.protocol=nope"])


def test_a_base_file_lies_under_the_config(tmp_path):
    (tmp_path / "shared").mkdir()
    _write(tmp_path / "shared", TOML, "base.toml")
    _write(tmp_path, 'base = "shared/base.toml"\nname = "mid"\n[model]\nwidth = 0.5\n', "mid.toml")
    top = _write(tmp_path, 'base = "mid.toml"\n[optim]\nname = "adamw"\n'
                           '[[data.train]]\nfmt = "300w"\nsource = "other"\nprotocol = "300w68"\n', "top.toml")
    c = load_config(top, ["train.seed=3"])
    assert c.name == "mid" and c.model.width == 0.5 and c.model.norm == "sepbn"  # tables merge key by key
    assert c.model.norm_kwargs == {"num_branches": 3} and c.optim.lr == 2e-3 and c.optim.name == "adamw"
    assert [d.source for d in c.data.train] == ["other"]  # a list is replaced, not appended to
    assert c.train.seed == 3
    assert "base" not in format_config(c) and load_config(_write(tmp_path, format_config(c), "r.toml")) == c


def test_a_base_loop_or_a_missing_base_is_an_error(tmp_path):
    a = _write(tmp_path, 'base = "b.toml"\n', "a.toml")
    _write(tmp_path, 'base = "a.toml"\n', "b.toml")
    with pytest.raises(ConfigError, match=r"b.toml: base: the bases form a loop: .*a.toml -> .*b.toml -> .*a.toml"):
        load_config(a)
    with pytest.raises(ConfigError, match=r"nowhere.toml: config file not found"):
        load_config(_write(tmp_path, 'base = "nowhere.toml"\n', "c.toml"))
    with pytest.raises(ConfigError, match=r"d.toml: base: expected the path of a config file, got 3"):
        load_config(_write(tmp_path, "base = 3\n", "d.toml"))
