"""sepbn.train.data: configured datasets — user-defined protocols, cache folders per role."""

import json

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
