"""benchmarks/real_splits.py and benchmarks/dlib_peer.py on tiny fake faces (dlib from the dev extra)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from sepbn.data.formats import read_records, write_records

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import each other as their folder's modules
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_split_is_seeded_disjoint_and_holds_out_15_percent(monkeypatch):
    splits = load("real_splits", monkeypatch)
    a, b = splits.split_indices(1207), splits.split_indices(1207)
    assert len(a["val"]) == 181 and len(a["train"]) == 1026  # the project's 300-W split
    assert len(splits.split_indices(10000)["val"]) == 1500
    np.testing.assert_array_equal(a["val"], b["val"])
    assert set(a["val"]).isdisjoint(a["train"]) and set(a["val"]) | set(a["train"]) == set(range(1207))
    assert not np.array_equal(splits.split_indices(1207, seed=1)["val"], a["val"])
    with pytest.raises(ValueError, match="val_fraction"):
        splits.split_indices(10, val_fraction=1.0)


def fake_split(tiny_faces, folder):
    """300w_train.csv / 300w_val.csv from the tiny 300w68 faces (8 train, 4 held out)."""
    records = list(read_records("csv", tiny_faces["300w68"], protocol="300w68"))
    folder.mkdir()
    write_records("csv", records[:8], folder / "300w_train.csv", images=Path("/"))
    write_records("csv", records[8:], folder / "300w_val.csv", images=Path("/"))
    return records


def test_scores_are_sepbn_metrics_of_the_held_out_faces(tiny_faces, tmp_path, monkeypatch):
    peer = load("dlib_peer", monkeypatch)
    records = fake_split(tiny_faces, tmp_path / "splits")
    paths = peer.split_files("300w68", tmp_path / "splits", None)
    val = peer.load_faces(paths["val"], "300w68")
    assert [r.image_path for r in val] == [r.image_path for r in records[8:]]
    truth = np.stack([r.landmarks for r in val])
    perfect = peer.score(truth, val, "300w68", name="300w-val")
    assert perfect["nme"] == 0 and perfect["fr@10"] == 0 and perfect["auc@10"] == pytest.approx(1.0, abs=1e-3)
    d = np.linalg.norm(truth[:, 36] - truth[:, 45], axis=1)  # inter-ocular, outer eye corners
    shifted = truth + np.array([0.0, 1.0])  # every point 1 px down: NME = 1 / d per face
    s = peer.score(shifted, val, "300w68", name="300w-val")
    assert s["nme"] == pytest.approx(np.mean(1 / d)) and s["faces"] == 4 and "36, 45" in s["normalizer"]
    row = peer.markdown_row({"scores": s, "protocol": "300w68", "train_faces": 8, "train_cpu_s": 1.0,
                             "train_wall_s": 2.0, "options": {"oversampling_amount": 20, "num_threads": 2}})
    assert row.count("|") == peer.MARKDOWN_HEADER.splitlines()[0].count("|") and f"{100 * s['nme']:.2f}" in row
    with pytest.raises(FileNotFoundError, match="--data"):
        peer.split_files("5pt", tmp_path / "splits", None)
    with pytest.raises(ValueError, match="protocol"):
        peer.split_files("wflw98", tmp_path / "splits", None)


def test_face_box_is_the_record_box_or_sepbns_enlarged_square(monkeypatch):
    peer = load("dlib_peer", monkeypatch)
    assert peer.face_box((10, 20, 30, 60)) == (10.0, 20.0, 30.0, 60.0)
    assert peer.face_box((10, 20, 30, 60), 1.25) == (-5.0, 15.0, 45.0, 65.0)  # side 1.25 * 40 around (20, 40)


def test_dlib_trains_and_predicts_on_the_split(tiny_faces, tmp_path, monkeypatch):
    peer = load("dlib_peer", monkeypatch)
    fake_split(tiny_faces, tmp_path / "splits")
    tiny = {"cascade_depth": 2, "num_trees_per_cascade_level": 5, "oversampling_amount": 2}
    result = peer.run("300w68", tmp_path / "splits", None, threads=1, overrides=tiny)
    assert result["train_faces"] == 8 and result["scores"]["faces"] == 4
    assert result["options"]["num_threads"] == 1 and result["options"]["cascade_depth"] == 2
    assert 0 < result["scores"]["nme"] < 1 and result["train_cpu_s"] > 0
    assert json.loads(json.dumps(result)) == result


def test_tuning_split_divides_the_training_faces_only(monkeypatch):
    """fit + tune = train exactly, disjoint; no held-out face ever reaches the recipe search."""
    splits = load("real_splits", monkeypatch)
    train = splits.split_indices(1207)["train"]
    tune = splits.split_indices(len(train), seed=splits.TUNE_SEED)
    fit_faces, tune_faces = set(train[tune["train"]]), set(train[tune["val"]])
    assert len(tune_faces) == 154 and len(fit_faces) == 872 and fit_faces.isdisjoint(tune_faces)
    assert fit_faces | tune_faces == set(train)
    assert tune_faces.isdisjoint(splits.split_indices(1207)["val"])


def test_model_card_boxes_follow_each_bundled_models_convention(monkeypatch):
    card = load("model_card", monkeypatch)
    points = np.array([[10.0, 20.0], [30.0, 20.0], [20.0, 30.0], [12.0, 40.0], [28.0, 40.0]])
    np.testing.assert_allclose(card.training_box(points, "landmarks"), [10, 20, 30, 40])  # 300-W: tight box
    np.testing.assert_allclose(card.training_box(points, "mtfl"), [0, 10, 40, 50])  # 2x the 20-pixel span
    # each card's dataset and protocol agree with the split script and the protocol table
    splits = load("real_splits", monkeypatch)
    for name, (dataset, protocol, _, _, _) in card.CARDS.items():
        assert splits.DATASETS[dataset][3] == protocol
