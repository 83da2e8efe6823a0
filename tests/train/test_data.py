"""sepbn.train.data: configured datasets — user-defined protocols, cache folders per role."""

import json
import multiprocessing

import cv2
import numpy as np
import pytest

from sepbn.config import load_config
from sepbn.data import FaceRecord, LandmarkDataset
from sepbn.data.formats import write_records
from sepbn.checkpoint import load_model
from sepbn.train.data import build_datasets
from sepbn.train.loop import train

TRI = {"name": "tri3", "num_points": 3, "flip_perm": [1, 0, 2],
       "normalizer": {"kind": "points", "left": [0], "right": [1]}}


@pytest.fixture()
def tri_faces(tmp_path):
    """A custom 3-point protocol defined in a JSON file, and 8 faces of it in the generic CSV."""
    (tmp_path / "tri3.json").write_text(json.dumps(TRI))
    rng = np.random.default_rng(0)
    records = []
    for i in range(8):
        cv2.imwrite(str(tmp_path / f"{i}.png"), rng.integers(0, 60, (64, 64, 3), dtype=np.uint8))
        pts = np.array([[20.0, 25.0], [44.0, 25.0], [32.0, 44.0]]) + rng.normal(0, 1, (3, 2))
        records.append(FaceRecord(landmarks=pts, box=(10, 10, 54, 54), protocol="tri3",
                                  image_path=str(tmp_path / f"{i}.png")))
    write_records("csv", records, tmp_path / "faces.csv")
    return tmp_path


def _cfg(root, *extra):
    entry = f'{{"fmt": "csv", "source": "{root}/faces.csv", "protocol": "{root}/tri3.json"}}'
    return load_config(None, ["model.width=0.0625", "model.input_size=64", "train.batch_size=4",
                              "train.progress=false", "schedule.epochs=1", "schedule.warmup_epochs=0",
                              "schedule.tau_epochs=1", f"data.train=[{entry}]", *extra])


def test_user_defined_protocol_trains_and_reloads(tri_faces):
    res = train(_cfg(tri_faces, "train.max_steps=2"), tri_faces / "run")
    assert len(res.losses) == 2 and np.isfinite(res.losses).all()
    model, meta = load_model(tri_faces / "run" / "last.pt")
    assert model.output_protocols == ("tri3",) and model.num_points == {"tri3": 3}
    assert meta["protocols"]["tri3"]["flip_perm"] == [1, 0, 2]


def test_train_and_val_entries_of_one_name_get_their_own_cache(tri_faces):
    cfg = _cfg(tri_faces, f"data.cache={tri_faces / 'cache'}")
    train_sets = build_datasets(cfg.data, cfg.data.train, train=True, image_size=64)
    val_sets = build_datasets(cfg.data, cfg.data.train, train=False, image_size=64)
    (name,) = train_sets
    assert set(val_sets) == {name}
    folders = sorted(p.name for p in (tri_faces / "cache").iterdir())
    assert folders == [f"{name}-train", f"{name}-val"]


def test_augment_without_train_is_refused(tri_faces):
    from sepbn.data.transforms import AugmentConfig
    from sepbn.data.formats import read_records

    records = read_records("csv", tri_faces / "faces.csv", protocol=str(tri_faces / "tri3.json"))
    with pytest.raises(ValueError, match="train=False"):
        LandmarkDataset(records, str(tri_faces / "tri3.json"), train=False, augment=AugmentConfig())


def test_pose_domains_option_labels_every_face(tiny_faces):
    cfg = load_config(None, [f'data.train=[{{"fmt": "csv", "source": "{tiny_faces["300w68"]}", "protocol": "300w68", '
                             f'"pose_domains": "yaw"}}]'])
    (ds,) = build_datasets(cfg.data, cfg.data.train, train=False, image_size=32).values()
    ids = [r.attributes["domain_id"] for r in ds.records]
    assert set(ids) <= {0, 1, 2} and len(ids) == len(ds)
    assert all(abs(r.attributes["yaw_score"]) <= 0.55 for r in ds.records if r.attributes["domain_id"] == 1)
    bad = load_config(None, [f'data.train=[{{"fmt": "csv", "source": "{tiny_faces["300w68"]}", "protocol": "300w68", '
                             f'"pose_domains": "tsne"}}]'])
    with pytest.raises(ValueError, match="'tsne'"):
        build_datasets(bad.data, bad.data.train, train=False, image_size=32)


# --- the pre-flight check before training ------------------------------------------------------

def _break_two_images(root):
    """1.png becomes a JPEG cut in half; 2.png disappears."""
    ok, buf = cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))
    (root / "1.png").write_bytes(buf.tobytes()[: len(buf) // 2])
    (root / "2.png").unlink()


def _skipping(root, *extra):
    entry = (f'{{"fmt": "csv", "source": "{root}/faces.csv", "protocol": "{root}/tri3.json", '
             f'"options": {{"skip_invalid": true}}}}')
    return _cfg(root, f"data.train=[{entry}]", *extra)


def test_preflight_lists_every_bad_image_and_stops_before_training(tri_faces):
    from sepbn.train.data import PreflightError

    _break_two_images(tri_faces)
    with pytest.raises(PreflightError) as e:
        train(_cfg(tri_faces), tri_faces / "run")
    lines = str(e.value).splitlines()
    assert lines[0].startswith("2 face(s) cannot be used (train csv-tri3); fix them, or leave them out with "
                               "options = {skip_invalid = true}")
    assert lines[1:] == [f"  {tri_faces}/1.png: truncated JPEG (1 of 2 bytes, no end-of-image marker)".replace(
        "1 of 2", str(len(cv2.imencode('.jpg', np.full((64, 64, 3), 90, np.uint8))[1]) // 2)),
        f"  {tri_faces}/2.png: image file not found"]
    assert not (tri_faces / "run" / "last.pt").exists() and not (tri_faces / "run" / "train.csv").exists()


def test_skip_invalid_leaves_bad_images_out_counts_them_and_trains(tri_faces, capsys, monkeypatch):
    _break_two_images(tri_faces)
    res = train(_skipping(tri_faces, "train.max_steps=1"), tri_faces / "run")
    assert len(res.losses) == 1 and res.skipped == {"train": {"csv-tri3": {"truncated": 1, "missing": 1}}}
    summary = json.loads((tri_faces / "run" / "summary.json").read_text())
    assert summary["skipped_faces"] == 2 and summary["skipped"] == res.skipped
    listed = (tri_faces / "run" / "skipped.txt").read_text().splitlines()
    assert listed == [f"train csv-tri3: {tri_faces}/1.png: truncated JPEG" + listed[0].split("truncated JPEG")[1],
                      f"train csv-tri3: {tri_faces}/2.png: image file not found"]
    out = capsys.readouterr().out
    assert "train csv-tri3: left out 2 face(s) (1 truncated, 1 missing); kept 6" in out
    # a restart reads the cache (keyed by file sizes and mtimes) instead of decoding again
    import sepbn.data.preflight as pf

    calls = []
    monkeypatch.setattr(pf, "probe_image", lambda p: calls.append(p))
    train(_skipping(tri_faces, "train.max_steps=2"), tri_faces / "run", resume=True)
    assert calls == [] and (tri_faces / "run" / "preflight.json").is_file()


@pytest.mark.parametrize("workers", [0, 1])
def test_an_image_broken_during_training_stops_with_one_line(tri_faces, tmp_path, monkeypatch, capsys, workers):
    import sepbn.train.loop as loop
    from sepbn.cli import main

    config = tmp_path / "cfg.toml"
    config.write_text(f'[model]\nwidth = 0.0625\ninput_size = 64\n[[data.train]]\nfmt = "csv"\n'
                      f'source = "{tri_faces}/faces.csv"\nprotocol = "{tri_faces}/tri3.json"\n[data]\n'
                      f'workers = {workers}\n[schedule]\nepochs = 2\nwarmup_epochs = 0\ntau_epochs = 1\n'
                      f'[train]\nbatch_size = 4\nprogress = false\n')
    real = loop.branch_losses

    def break_images(*args, **kwargs):  # after the pre-flight check, before epoch 2 loads its faces
        for i in range(8):
            (tri_faces / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n gone bad")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "branch_losses", break_images)
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"sepbn train: {tri_faces}/") and \
        err.endswith(".png: cannot decode image (17 bytes)"), err
    # no worker left behind: they ignore SIGTERM, so one left alive would hang the interpreter's exit
    assert multiprocessing.active_children() == []
