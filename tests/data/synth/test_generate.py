"""SynthFaces sampling and files: determinism, domains, flags, official formats read back."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from sepbn.data.protocols import WFLW_ATTRIBUTES
from sepbn.data.records import read_image
from sepbn.data.synth.generate import (
    DEFAULT_DOMAINS,
    FORMATS,
    Domain,
    generate,
    load_synth,
    parse_domains,
    sample_face,
    synthesize,
)

SIZE = (64, 64)


def test_a_face_depends_only_on_seed_and_index():
    a = [sample_face(3, i, size=SIZE) for i in (0, 1, 2)]
    b = [sample_face(3, i, size=SIZE) for i in (2, 1, 0)][::-1]  # other order: same faces
    for x, y in zip(a, b):
        assert (x.shape, x.expr, x.pose, x.look, x.domain) == (y.shape, y.expr, y.pose, y.look, y.domain)
    assert sample_face(4, 0, size=SIZE).pose != a[0].pose


def test_synthesize_is_deterministic():
    f = synthesize(2, seed=9, size=SIZE)
    g = synthesize(2, seed=9, size=SIZE)
    np.testing.assert_array_equal(f.image, g.image)
    for name in FORMATS:
        np.testing.assert_array_equal(f.points[name], g.points[name])
        np.testing.assert_array_equal(f.visible[name], g.visible[name])
    assert not np.array_equal(f.image, synthesize(2, seed=10, size=SIZE).image)


def test_domain_proportions_follow_the_weights():
    doms = [sample_face(0, i, size=SIZE) for i in range(300)]
    share = {d.name: np.mean([f.domain == d.name for f in doms]) for d in DEFAULT_DOMAINS}
    assert 0.6 < share["frontal"] < 0.8
    assert 0.07 < share["left-profile"] < 0.24 and 0.07 < share["right-profile"] < 0.24
    for f in doms:
        d = DEFAULT_DOMAINS[f.domain_id]
        assert d.name == f.domain and d.yaw[0] <= f.pose.yaw <= d.yaw[1]
    only_left = (Domain("left-profile", 1.0, (-90.0, -40.0)), Domain("frontal", 0.0, (-40.0, 40.0)))
    assert {sample_face(0, i, only_left, SIZE).domain for i in range(20)} == {"left-profile"}


def test_wflw_flags_follow_the_generation_parameters():
    faces = [synthesize(i, seed=1, size=SIZE, protocols=["wflw98"]) for i in range(40)]
    for f in faces:
        assert set(f.flags) == set(WFLW_ATTRIBUTES)
        assert f.flags["pose"] == (abs(f.pose.yaw) > 45 or max(abs(f.pose.pitch), abs(f.pose.roll)) > 22)
        assert f.flags["make-up"] == (f.look.eye_shadow is not None)
        if f.look.occluder is None:
            assert not f.flags["occlusion"]
        if f.flags["occlusion"]:
            assert not f.visible["wflw98"].all()
    assert any(f.flags["pose"] for f in faces) and any(f.flags["occlusion"] for f in faces)


def test_parse_domains():
    doms = parse_domains("left-profile:0.3,frontal:0.4,right-profile:0.3")
    assert [d.weight for d in doms] == [0.3, 0.4, 0.3] and doms[0].yaw == (-90.0, -40.0)
    custom = parse_domains("near:1:-20:20,far:2:60:90")
    assert custom[1] == Domain("far", 2.0, (60.0, 90.0))
    for bad in ("frontal", "x:1", "a:1:0:10,a:1:0:10", "a:0:0:10", "a:1:-100:0", "a:one:0:10"):
        with pytest.raises(ValueError):
            parse_domains(bad)


def _by_index(records):
    return {r.attributes["synth_index"]: r for r in records}


def test_generate_writes_official_formats_that_read_back(tmp_path):
    summary = generate(tmp_path, list(FORMATS), 6, seed=2, size=64, test_fraction=0.34)
    assert (summary["num_train"], summary["num_test"]) == (4, 2)
    assert json.loads((tmp_path / "synth.json").read_text())["counts"] == summary["counts"]
    faces = {i: synthesize(i, seed=2, size=SIZE) for i in range(6)}
    for name in FORMATS:
        for split, idx in (("train", range(0, 4)), ("test", range(4, 6))):
            recs = _by_index(load_synth(tmp_path, name, split))
            assert sorted(recs) == list(idx)
            for i, rec in recs.items():
                f = faces[i]
                assert rec.protocol == name
                np.testing.assert_allclose(rec.landmarks, f.points[name], atol=1e-9)
                assert rec.attributes["domain"] == f.domain and rec.attributes["domain_id"] == f.domain_id
                assert rec.attributes["mirror_domain_id"] == 2 - f.domain_id  # left <-> right profile
                assert all(rec.attributes[a] == f.flags[a] for a in WFLW_ATTRIBUTES)
                if name in ("cofw29", "aflw19", "5pt"):  # formats that carry visibility
                    np.testing.assert_array_equal(rec.visible, f.visible[name])
                img = rec.load_image()
                assert img.shape == (64, 64, 3)
                if rec.image_path is not None:  # the JPEG on disk is the rendered image
                    assert np.abs(read_image(rec.image_path).astype(int) - f.image).mean() < 12
    with open(tmp_path / "domains.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["index"]) for r in rows] == list(range(6))


def test_mtfl_labels_come_from_the_pose(tmp_path):
    from sepbn.data.formats import read_records

    generate(tmp_path, ["5pt"], 8, seed=4, size=64)
    recs = read_records("mtfl", tmp_path / "5pt" / "mtfl", split="train", images=tmp_path / "images")
    faces = [synthesize(i, seed=4, size=SIZE, protocols=["5pt"]) for i in range(len(recs))]
    for r, f in zip(recs, faces):
        assert r.attributes["pose"] == int(np.digitize(f.pose.yaw, [-45, -15, 15, 45]) + 1)
        np.testing.assert_allclose(r.landmarks, f.points["5pt"], atol=1e-9)


def test_workers_do_not_change_the_output(tmp_path):
    generate(tmp_path / "a", ["5pt"], 3, seed=5, size=48)
    generate(tmp_path / "b", ["5pt"], 3, seed=5, size=48, workers=2)
    for split in ("train", "test"):
        for p in sorted((tmp_path / "a" / "images" / split).iterdir()):
            assert p.read_bytes() == (tmp_path / "b" / "images" / split / p.name).read_bytes()
    assert (tmp_path / "a" / "5pt/wider/train/label.txt").read_text() == \
        (tmp_path / "b" / "5pt/wider/train/label.txt").read_text()


def test_generate_rejects_bad_arguments(tmp_path):
    from sepbn.data.protocols import protocol_from_dict

    custom = protocol_from_dict({"name": "two", "num_points": 2, "flip_perm": [1, 0],
                                 "normalizer": {"kind": "points", "left": [0], "right": [1]}})
    with pytest.raises(ValueError, match="cannot write"):
        generate(tmp_path, [custom], 4)
    with pytest.raises(ValueError, match="unknown protocol"):
        generate(tmp_path, ["nope"], 4)
    with pytest.raises(ValueError, match="num"):
        generate(tmp_path, ["5pt"], 1)
    with pytest.raises(ValueError, match="test_fraction"):
        generate(tmp_path, ["5pt"], 4, test_fraction=1.0)


def test_a_new_run_replaces_the_old_one(tmp_path):
    generate(tmp_path, ["300w68"], 6, seed=1, size=48)
    (tmp_path / "notes.txt").write_text("mine")
    generate(tmp_path, ["300w68", "5pt"], 4, seed=1, size=48)
    assert len(load_synth(tmp_path, "300w68", "train")) == 3  # no stale .pts from the first run
    assert sorted(p.name for p in (tmp_path / "images" / "test").iterdir()) == ["000003.jpg"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_load_synth_explains_missing_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a SynthFaces folder .* make one with: sepbn synth --out"):
        load_synth(tmp_path, "5pt", "train")
    generate(tmp_path, ["5pt"], 3, size=48)
    with pytest.raises(ValueError, match="without protocol"):
        load_synth(tmp_path, "wflw98", "train")
    with pytest.raises(ValueError, match="split"):
        load_synth(tmp_path, "5pt", "val")


def test_missing_synth_folder_suggests_the_command(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_synth(tmp_path / "synth", "5pt")
    assert str(e.value) == (f"{tmp_path / 'synth'} is not a SynthFaces folder (no synth.json); "
                            f"make one with: sepbn synth --out {tmp_path / 'synth'}")
