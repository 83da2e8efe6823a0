"""SynthFaces files: the official formats read back, workers, replacement, clear errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from sepbn.data.protocols import WFLW_ATTRIBUTES
from sepbn.data.records import read_image
from sepbn.data.synth.generate import FORMATS, generate, load_synth
from sepbn.data.synth.sample import synthesize

SIZE = (64, 64)


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
