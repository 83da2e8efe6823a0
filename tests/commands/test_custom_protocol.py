"""A protocol defined in a .json / .toml file, end to end through the CLI (issue 19).

Train with a validation set, ``eval``, ``predict``, ``export`` (ONNX parity) and a one-variant
``study``; then the protocol file is deleted and the checkpoint, its weights folder and the run's
config.toml still work: the protocol travels as an object and checkpoints carry its definition.
"""

import json

import numpy as np
import pytest

from sepbn.cli import main
from sepbn.data.formats import read_records, write_records

TRI3_JSON = {"name": "tri3", "num_points": 3, "flip_perm": [1, 0, 2],
             "groups": {"eyes": [0, 1], "nose": [2]},
             "normalizer": {"name": "eye centres (0, 1)", "kind": "points", "left": [0], "right": [1]}}

# a custom normaliser: from the mean of both eyes to the nose tip
TRI3_TOML = """
name = "tri3t"
num_points = 3
flip_perm = [1, 0, 2]
point_names = ["eye_l", "eye_r", "nose"]
default_normalizer = "eyes-nose"
[normalizers.eyes-nose]
name = "eyes to nose (mean 0-1, 2)"
kind = "points"
left = [0, 1]
right = [2]
[normalizers.box]
kind = "box"
box_formula = "diagonal"
"""


def _faces(tiny_faces, folder, name):
    """The tiny 5-point faces cut to their first three points (eyes and nose tip), as a CSV."""
    recs = list(read_records("csv", tiny_faces["5pt"]))
    for r in recs:
        r.landmarks, r.protocol, r.visible = r.landmarks[:3], name, None
    path = folder / f"{name}.csv"
    write_records("csv", recs, path)
    return path


def _setup(tmp_path, tiny_faces, kind):
    if kind == "json":
        name, proto = "tri3", tmp_path / "tri3.json"
        proto.write_text(json.dumps(TRI3_JSON))
    else:
        name, proto = "tri3t", tmp_path / "tri3t.toml"
        proto.write_text(TRI3_TOML)
    faces = _faces(tiny_faces, tmp_path, name)
    dataset = f'fmt = "csv"\nsource = "{faces}"\nprotocol = "{proto}"\n'
    cfg = tmp_path / "train.toml"
    cfg.write_text(f"""name = "custom"
[model]
width = 0.0625
input_size = 64
[[data.train]]
{dataset}
[[data.val]]
{dataset}name = "val3"
[schedule]
epochs = 1
warmup_epochs = 0
tau_epochs = 1
[train]
batch_size = 4
progress = false
""")
    return name, proto, faces, cfg


def _eval(tmp_path, capsys, checkpoint, faces, tag, *extra):
    out = tmp_path / f"eval-{tag}.json"
    assert main(["eval", "--checkpoint", str(checkpoint), "--data", f"csv:{faces}", "--json", str(out), *extra]) == 0
    capsys.readouterr()
    return json.loads(out.read_text())["results"][0]


def _predict_and_export(tmp_path, capsys, weights, name, tag):
    image = tmp_path / "photo.png"
    if not image.exists():
        import cv2

        cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    jsonl = tmp_path / f"pred-{tag}.jsonl"
    assert main(["predict", "--checkpoint", str(weights), "--detector", "full", "--jsonl", str(jsonl),
                 "--no-progress", str(image)]) == 0
    (row,) = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert row["protocol"] == name and np.shape(row["faces"][0]["landmarks"]) == (3, 2)
    onnx_file = tmp_path / f"{tag}.onnx"
    assert main(["export", "--checkpoint", str(weights), "--format", "onnx", "--out", str(onnx_file)]) == 0
    assert "OK" in capsys.readouterr().out
    assert json.loads((tmp_path / f"{tag}.onnx.json").read_text())["protocol"] == name


@pytest.mark.parametrize("kind", ["json", "toml"])
def test_protocol_file_end_to_end_and_after_the_file_is_gone(tiny_faces, tmp_path, capsys, kind):
    name, proto, faces, cfg = _setup(tmp_path, tiny_faces, kind)
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(run)]) == 0  # validates after the epoch
    summary = json.loads((run / "summary.json").read_text())
    assert summary["val"][0]["nme/val3"] > 0 and (run / "best.pt").is_file()
    label = "eye centres" if kind == "json" else "eyes to nose"
    res = _eval(tmp_path, capsys, run / "last.pt", faces, "before")
    assert res["protocol"] == name and res["faces"] == 12 and label in res["normalizer"]
    _predict_and_export(tmp_path, capsys, run / "final", name, "before")

    study = tmp_path / "study.toml"
    study.write_text(f'name = "one"\nbase = "{cfg}"\nseeds = [0]\nbaseline = "bn"\n'
                     '[[variant]]\nname = "bn"\nset = ["model.norm=bn"]\n')
    out = tmp_path / "study"
    assert main(["study", "run", str(study), "--out", str(out), "--jobs", "1", "--threads-per-job", "1"]) == 0
    table = json.loads((out / "table.json").read_text())
    assert table["datasets"]["val3"]["variants"]["bn"]["n"] == 1

    proto.unlink()  # the definition now lives in the checkpoints and in the run's config.toml
    assert name in (run / "config.toml").read_text() and str(proto) not in (run / "config.toml").read_text()
    after = _eval(tmp_path, capsys, run / "last.pt", faces, "after", "--protocol", name)
    assert after["nme"] == pytest.approx(res["nme"])
    assert main(["eval", "--checkpoint", str(run / "best"), "--config", str(run / "config.toml")]) == 0
    assert "val3" in capsys.readouterr().out
    _predict_and_export(tmp_path, capsys, run / "last.pt", name, "after")
    run_folder = next(p.parent for p in out.rglob("run.json"))
    (run_folder / "result.json").unlink()
    assert main(["study", "eval", str(run_folder)]) == 0
