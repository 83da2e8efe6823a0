"""`sepbn study run` end to end on tiny data: runs + table, a failing run counted, resume, submitit's local executor.

Each run is two real processes (`sepbn train`, `sepbn study eval`), so the study is as small as
it can be: 12 faces, 1 epoch of 3 steps, 2 variants x 2 seeds.
"""

import json

import numpy as np

from sepbn.cli import main
from sepbn.study.evaluate_run import load_errors


def _study(tmp_path, faces, variants: str, seeds: str = "[0, 1]"):
    (tmp_path / "base.toml").write_text(f"""
name = "tiny"
[model]
width = 0.0625
input_size = 64
[[data.train]]
fmt = "csv"
source = "{faces['5pt']}"
protocol = "5pt"
[[data.val]]
fmt = "csv"
source = "{faces['5pt']}"
protocol = "5pt"
name = "val"
[schedule]
epochs = 1
warmup_epochs = 0
tau_epochs = 1
[train]
batch_size = 4
""")
    path = tmp_path / "study.toml"
    path.write_text(f'name = "tiny"\nbase = "base.toml"\nseeds = {seeds}\nbaseline = "bn"\n'
                    f'[eval]\nfr_thresholds = [0.08, 0.10]\n{variants}')
    return path


VARIANTS = """
[[variant]]
name = "bn"
set = ["model.norm=bn"]
[[variant]]
name = "sepbn"
set = ["model.norm=sepbn"]
[[variant]]
name = "broken"
set = ["data.train.0.source=nowhere.csv"]
[[variant]]
name = "badkey"
set = ["model.nope=1"]
"""


def test_run_table_failures_and_resume(tiny_faces, tmp_path, capsys):
    study, out = _study(tmp_path, tiny_faces, VARIANTS), tmp_path / "out"
    argv = ["study", "run", str(study), "--out", str(out), "--jobs", "2", "--threads-per-job", "1"]
    assert main(argv) == 1  # the broken variants fail; the others finish
    captured = capsys.readouterr()
    assert "4 of 8 runs failed" in captured.err and "unknown key 'nope'" in captured.err
    assert "broken/seed0 FAILED: train: " in captured.out and "nowhere.csv" in captured.out
    error = json.loads((out / "broken" / "seed1" / "error.json").read_text())
    assert error["log"].endswith("broken/seed1/train.log") and "nowhere.csv" in error["error"]
    result = json.loads((out / "bn" / "seed0" / "result.json").read_text())
    (val,) = result["results"]
    assert val["dataset"] == "val" and val["faces"] == 12 and set(val["domains"]) == {"left", "frontal"}
    assert {"nme", "fr@8", "fr@10", "auc@10"} <= set(val)
    assert result["train_seconds"]["wall"] > 0 and result["train_seconds"]["cpu"] > 0
    errors = load_errors(out / "bn" / "seed0")["val"]
    assert np.isclose(errors["errors"].mean(), val["nme"]) and sorted(errors["face_ids"]) == list(range(12))
    table = json.loads((out / "table.json").read_text())
    row = table["datasets"]["val"]["variants"]["sepbn"]
    assert row["n"] == 2 and row["vs_baseline"]["seeds"] == [0, 1] and row["vs_baseline"]["nme_faces"]["n"] > 0
    assert "| bn | 2/2 |" in captured.out and "| broken | 0/2 (2 failed) |" in captured.out
    assert (out / "table.md").is_file() and (out / "ced.png").is_file()
    assert json.loads((out / "study.json").read_text())["baseline"] == "bn"

    # a study killed while sepbn/seed1 trained: its folder holds last.pt but no final weights
    run = out / "sepbn" / "seed1"
    for name in ("result.json", "errors.npz", "summary.json"):
        (run / name).unlink()
    for f in (run / "final").iterdir():
        f.unlink()
    (run / "final").rmdir()
    finished = {p: p.stat().st_mtime_ns for p in out.glob("*/seed*/result.json")}
    assert main(argv) == 1
    text = capsys.readouterr().out
    assert "bn/seed0 already done" in text and "sepbn/seed1 done" in text
    assert "--resume" in (run / "train.log").read_text() and (run / "result.json").is_file()
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # finished runs are never redone


def test_submitit_local_executor(tiny_faces, tmp_path, capsys):
    study = _study(tmp_path, tiny_faces, VARIANTS.split("[[variant]]\nname = \"sepbn\"")[0], seeds="[0]")
    out = tmp_path / "out"
    assert main(["study", "run", str(study), "--out", str(out), "--executor", "submitit-local"]) == 0
    assert (out / "bn" / "seed0" / "result.json").is_file() and any((out / ".submitit").iterdir())
    assert "bn/seed0 done" in capsys.readouterr().out
    assert main(["study", "table", str(out)]) == 0 and "| bn | 1/1 |" in capsys.readouterr().out
