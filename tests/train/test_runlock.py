"""One writer per run folder: a second `sepbn train` on a held folder is refused in one line naming the
holder's PID, from a plain run, under torchrun (rank 0 holds the lock) and from a study; the lock dies
with its holder (no stale lock after a kill)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sepbn.cli import main
from sepbn.train.runlock import RunLock
from tinycfg import tiny_config


def _hold(folder, ready):
    """A separate process that takes the run folder's lock and keeps it until killed."""
    code = textwrap.dedent(f"""
        import time
        from sepbn.train.runlock import RunLock
        with RunLock({str(folder)!r}):
            open({str(ready)!r}, "w").close()
            time.sleep(300)
    """)
    child = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 120
    while not ready.exists():
        assert child.poll() is None and time.time() < deadline, "the holder did not start"
        time.sleep(0.05)
    return child


def test_second_writer_of_a_run_folder_is_refused_until_the_holder_dies(tiny_faces, tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config(tiny_faces, progress=False))
    run = tmp_path / "run"
    holder = _hold(run, tmp_path / "ready")
    try:
        assert main(["train", str(cfg), "--out", str(run), "--set", "train.max_steps=1"]) == 1
        err = capsys.readouterr().err.strip()
        assert err == (f"sepbn train: {run}: another sepbn process (PID {holder.pid}) is writing this run folder; "
                       "wait for it to end or choose another --out")
        assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing of the refused run
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert main(["train", str(cfg), "--out", str(run), "--set", "train.max_steps=1"]) == 0  # no stale lock
    assert (run / "last.pt").is_file()


def test_locks_are_per_folder_and_do_nothing_off_rank_0(tmp_path):
    with RunLock(tmp_path / "a"), RunLock(tmp_path / "b"), RunLock(tmp_path / "a", enabled=False):
        assert (tmp_path / "a" / ".lock").read_text().strip().isdigit()
    with RunLock(tmp_path / "a"):  # released on exit
        pass


def _refusal(run, pid) -> str:
    return f"{run}: another sepbn process (PID {pid}) is writing this run folder"


def test_torchrun_ranks_stop_when_the_folder_is_held(tiny_faces, tmp_path):
    """Rank 0 is refused before any collective; the launch fails fast and writes nothing."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config(tiny_faces, progress=False))
    run = tmp_path / "run"
    holder = _hold(run, tmp_path / "ready")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[2]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "sepbn",
           "train", str(cfg), "--out", str(run), "--set", "train.max_steps=1", "--set", "dist.timeout_s=30"]
    try:
        start = time.monotonic()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
        elapsed = time.monotonic() - start
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert proc.returncode != 0 and _refusal(run, holder.pid) in proc.stderr, proc.stderr[-3000:]
    assert sorted(p.name for p in run.iterdir()) == [".lock"]
    assert elapsed < 30 + 60  # no rank waits past the collective timeout


def test_a_study_run_on_a_held_folder_fails_with_the_holder_named(tiny_faces, tmp_path, capsys):
    (tmp_path / "base.toml").write_text(tiny_config(tiny_faces, progress=False))
    study = tmp_path / "study.toml"
    study.write_text('name = "tiny"\nbase = "base.toml"\nseeds = [0]\nbaseline = "bn"\n'
                     '[[variant]]\nname = "bn"\nset = ["model.norm=bn", "train.max_steps=1"]\n')
    out = tmp_path / "out"
    holder = _hold(out / "bn" / "seed0", tmp_path / "ready")
    try:
        assert main(["study", "run", str(study), "--out", str(out), "--jobs", "1"]) == 1
    finally:
        holder.kill()
        holder.wait(timeout=30)
    error = json.loads((out / "bn" / "seed0" / "error.json").read_text())
    assert error["step"] == "train" and _refusal(out / "bn" / "seed0", holder.pid) in error["error"]
    assert not (out / "bn" / "seed0" / "last.pt").exists()
    capsys.readouterr()
    assert main(["study", "run", str(study), "--out", str(out), "--jobs", "1"]) == 0  # free again: it runs
    assert (out / "bn" / "seed0" / "result.json").is_file()
