"""`sepbn study run` end to end on tiny data: runs + table, failing runs counted, a killed study resumed, submitit.

Each run is two real processes (`sepbn train`, `sepbn study eval`), so the study is as small as
it can be: 12 faces, 1 epoch of 3 steps, 2 variants x 2 seeds.
"""

import json
import signal
import subprocess
import sys
import time

import numpy as np

from sepbn.checkpoint import load_checkpoint
from sepbn.cli import main
from sepbn.study.table import load_errors
from tinycfg import tiny_config


def _study(tmp_path, faces, variants: str, seeds: str = "[0, 1]", baseline: str = "bn"):
    (tmp_path / "base.toml").write_text(tiny_config(faces))
    path = tmp_path / "study.toml"
    path.write_text(f'name = "tiny"\nbase = "base.toml"\nseeds = {seeds}\nbaseline = "{baseline}"\n'
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


def test_run_table_and_failures(tiny_faces, tmp_path, capsys):
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


def test_killed_study_resumes(tiny_faces, tmp_path):
    variants = """
[[variant]]
name = "short"
[[variant]]
name = "long"
set = ["schedule.epochs=40", "train.val_every=1000"]
"""
    study, out = _study(tmp_path, tiny_faces, variants, seeds="[0]", baseline="short"), tmp_path / "out"
    argv = [sys.executable, "-m", "sepbn", "study", "run", str(study), "--out", str(out), "--jobs", "1"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = out / "long" / "seed0"
    deadline = time.monotonic() + 300
    while not (run / "last.pt").is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)  # short/seed0 finishes first, then long/seed0 writes its first checkpoint
    proc.send_signal(signal.SIGTERM)  # as `kill PID`: the running training checkpoints and stops
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130 and "interrupted" in output, output
    assert (out / "short" / "seed0" / "result.json").is_file() and not (run / "result.json").exists()
    steps_done = load_checkpoint(run / "last.pt")["step"]
    assert 3 <= steps_done < 120
    finished = (out / "short" / "seed0" / "result.json").stat().st_mtime_ns

    assert main(["study", "run", str(study), "--out", str(out), "--jobs", "1"]) == 0
    assert "--resume" in (run / "train.log").read_text()
    assert json.loads((run / "summary.json").read_text())["step"] == 120  # 40 epochs of 3 steps
    assert json.loads((run / "time.json").read_text())["stage1"]["attempts"] == 2
    assert (out / "short" / "seed0" / "result.json").stat().st_mtime_ns == finished  # never redone


def test_submitit_local_executor(tiny_faces, tmp_path, capsys):
    study = _study(tmp_path, tiny_faces, VARIANTS.split("[[variant]]\nname = \"sepbn\"")[0], seeds="[0]")
    out = tmp_path / "out"
    assert main(["study", "run", str(study), "--out", str(out), "--executor", "submitit-local"]) == 0
    assert (out / "bn" / "seed0" / "result.json").is_file() and any((out / ".submitit").iterdir())
    assert "bn/seed0 done" in capsys.readouterr().out
    assert main(["study", "table", str(out)]) == 0 and "| bn | 1/1 |" in capsys.readouterr().out


def _job(tmp_path, name, overrides=("model.norm=bn",)):
    from sepbn.study.spec import Job

    folder = tmp_path / name / "seed0"
    return Job(name, 0, folder, ({"config": "c.toml", "overrides": list(overrides), "out": str(folder)},),
               {"sets": []}, str(tmp_path))


def test_device_pool_gives_each_running_job_its_own_device(tmp_path, monkeypatch):
    import threading
    import time

    from sepbn.study import runner

    running, seen, lock = {}, [], threading.Lock()

    def fake(job, threads, device):
        with lock:
            assert device not in running.values()  # no two jobs share a GPU
            running[job.id] = device
            seen.append((job.id, device, threads))
        time.sleep(0.05)
        with lock:
            del running[job.id]
        return runner.Outcome(job.id, "done", str(job.folder))

    monkeypatch.setattr(runner, "run_job", fake)
    jobs = [_job(tmp_path, f"v{i}") for i in range(5)]
    outcomes = runner.run_jobs(jobs, workers=2, threads=3, devices=["3", "5"])
    assert sorted(o.job for o in outcomes) == sorted(j.id for j in jobs)
    assert {d for _, d, _ in seen} == {"3", "5"} and {t for _, _, t in seen} == {3}
    env = runner._env(3, "5")
    assert env["OMP_NUM_THREADS"] == "3" and env["MKL_NUM_THREADS"] == "3" and env["CUDA_VISIBLE_DEVICES"] == "5"


def test_changed_settings_are_not_resumed(tmp_path):
    from sepbn.study.runner import run_job, run_jobs

    old = _job(tmp_path, "a")
    old.folder.mkdir(parents=True)
    (old.folder / "run.json").write_text(json.dumps(old.to_dict()))
    (old.folder / "last.pt").write_bytes(b"x")
    new = _job(tmp_path, "a", overrides=("model.norm=sepbn",))
    outcome = run_job(new)
    assert outcome.status == "failed" and "changed since it started" in outcome.error
    assert json.loads((old.folder / "run.json").read_text())["stages"][0]["overrides"] == ["model.norm=bn"]
    (old.folder / "result.json").write_text("{}")  # a finished run is kept, with a note
    (skipped,) = run_jobs([new])
    assert skipped.status == "skipped" and "stages changed" in skipped.error
