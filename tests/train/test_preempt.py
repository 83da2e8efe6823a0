"""Stopping a run: SIGTERM / SIGINT mid-epoch then a resume equal to an uninterrupted run, a second
Ctrl-C during the checkpoint write, checkpoints on wall time (fake clock), a full disk (simulated
ENOSPC), the real signal to a `sepbn train` process (exit status 75, the resume command), and the SLURM
script (configs/slurm/train.sbatch) stopping, requeueing and resuming."""

from __future__ import annotations

import csv
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import sepbn.train.loop as loop
from sepbn.checkpoint import load_checkpoint
from sepbn.cli import main
from sepbn.config import load_config
from sepbn.io import write_failed
from sepbn.train.preempt import (EXIT_PREEMPTED, CheckpointWriteError, Preempted, SaveClock, StopSignals,
                                 checkpoint_write_failed)

BASE = ["model.width=0.0625", "model.input_size=64", "train.batch_size=4", "train.progress=false",
        "train.log_every=1", "schedule.epochs=2", "schedule.warmup_epochs=1", "schedule.tau_epochs=2",
        "model.norm=sepbn", "data.augment=true"]
ROOT = Path(__file__).parents[2]


def _cfg(faces, *extra):
    items = ",".join(f'{{"fmt": "csv", "source": "{faces[p]}", "protocol": "{p}"}}' for p in ("300w68", "5pt"))
    return load_config(None, BASE + [f"data.train=[{items}]", *extra])


def _at_step(monkeypatch, plan: dict[int, list]):
    """Run ``plan[k]`` (signals to send to this process, or callables) inside the k-th training step (1-based)."""
    real, calls = loop.branch_losses, [0]

    def hook(*args, **kwargs):
        calls[0] += 1
        for action in plan.get(calls[0], []):
            action() if callable(action) else os.kill(os.getpid(), action)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "branch_losses", hook)
    return calls


@pytest.fixture(scope="module")
def uninterrupted(tiny_faces, tmp_path_factory):
    return loop.train(_cfg(tiny_faces), tmp_path_factory.mktemp("full")).losses


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_epoch_saves_and_resume_equals_uninterrupted(tiny_faces, tmp_path, monkeypatch, sig,
                                                                uninterrupted):
    steps_per_epoch = len(uninterrupted) // 2
    at = steps_per_epoch + 2  # in the middle of epoch 2
    _at_step(monkeypatch, {at: [sig]})
    with pytest.raises(Preempted) as e:
        loop.train(_cfg(tiny_faces), tmp_path)
    assert e.value.step == at and e.value.exit_code == EXIT_PREEMPTED == 75
    assert str(e.value).startswith(f"{signal.Signals(sig).name}: stopped after step {at} (epoch 2, batch 2)")
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert (ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]) == (at, 1, 2)
    assert not (tmp_path / "final").exists()  # an unfinished run exports nothing
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    monkeypatch.undo()
    with open(tmp_path / "train.csv") as f:
        part = [float(r["loss"]) for r in csv.DictReader(f)]
    rest = loop.train(_cfg(tiny_faces), tmp_path, resume=True).losses
    assert len(part) == at and part + rest == pytest.approx(uninterrupted, abs=1e-6)


def test_second_ctrl_c_during_the_checkpoint_write_quits_and_keeps_the_previous_one(tiny_faces, tmp_path,
                                                                                     monkeypatch):
    loop.train(_cfg(tiny_faces, "train.max_steps=2"), tmp_path)
    before = (tmp_path / "last.pt").read_bytes()
    real_save = torch.save

    def save_with_ctrl_c(obj, f, *args, **kwargs):
        f.write(b"the first bytes")
        os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C again while the checkpoint is written
        return real_save(obj, f, *args, **kwargs)

    _at_step(monkeypatch, {2: [signal.SIGINT, lambda: monkeypatch.setattr(torch, "save", save_with_ctrl_c)]})
    handler = signal.getsignal(signal.SIGINT)  # SIG_IGN, not Python's, where a shell starts pytest in the background
    with pytest.raises(KeyboardInterrupt):
        loop.train(_cfg(tiny_faces), tmp_path, resume=True)
    monkeypatch.undo()
    assert (tmp_path / "last.pt").read_bytes() == before and load_checkpoint(tmp_path / "last.pt")["step"] == 2
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no half-written file left
    assert signal.getsignal(signal.SIGINT) is handler  # restored


def test_checkpoint_on_wall_time(tiny_faces, tmp_path, monkeypatch):
    """A fake clock advances 10 s a step; save_every_minutes = 0.5 saves mid-epoch every third step."""
    now = [0.0]
    monkeypatch.setattr(loop, "_clock", lambda: now[0])
    saved = []
    real = loop.save_checkpoint

    def record(path, state):
        saved.append((Path(path).name, state["step"], state["batch_in_epoch"]))
        return real(path, state)

    monkeypatch.setattr(loop, "save_checkpoint", record)
    steps = {k: [lambda: now.__setitem__(0, now[0] + 10.0)] for k in range(1, 100)}
    _at_step(monkeypatch, steps)
    res = loop.train(_cfg(tiny_faces, "train.save_every_minutes=0.5", "train.save_every=5"), tmp_path)
    spe = len(res.losses) // 2  # 6 steps an epoch: time saves at 3; at the end of epoch 1 (step 6, due
    # again); then 9 and the end of the run at 12
    assert spe == 6 and saved == [("last.pt", 3, 3), ("last.pt", 6, 0), ("last.pt", 9, 3), ("last.pt", 12, 0)]
    saved.clear()
    loop.train(_cfg(tiny_faces, "train.save_every_minutes=0", "train.save_every=5"), tmp_path / "off")
    assert saved == [("last.pt", 12, 0)]  # epochs only (the last one)


def test_full_disk_stops_the_run_and_keeps_the_previous_checkpoint(tiny_faces, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    config = tmp_path / "cfg.json"
    import json

    from sepbn.config import config_to_dict

    config.write_text(json.dumps(config_to_dict(_cfg(tiny_faces, "train.max_steps=2"))))
    assert main(["train", str(config), "--out", str(run)]) == 0
    before = (run / "last.pt").read_bytes()

    def full_disk(obj, f, *args, **kwargs):  # what torch's zip writer raises when a write fails
        f.write(b"x" * 1000)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", full_disk)
    capsys.readouterr()
    assert main(["train", str(config), "--out", str(run), "--resume", "--set", "train.max_steps=4"]) == 1
    err = capsys.readouterr().err.strip()
    monkeypatch.undo()
    assert err.startswith(f"sepbn train: {run / 'last.pt'}: cannot write it (") and "unexpected pos" in err
    assert "needs about " in err and " free)" in err and len(err.splitlines()) == 1
    assert "previous version is intact" in err and err.endswith("with --resume")
    assert (run / "last.pt").read_bytes() == before and load_checkpoint(run / "last.pt")["step"] == 2
    assert not [p.name for p in run.iterdir() if ".tmp-" in p.name]


def test_real_sigterm_to_sepbn_train_exits_75_and_says_how_to_resume(tiny_faces, tmp_path):
    config = tmp_path / "cfg.toml"
    config.write_text(f'[model]\nwidth = 0.0625\ninput_size = 64\n[[data.train]]\nfmt = "csv"\n'
                      f'source = "{tiny_faces["5pt"]}"\nprotocol = "5pt"\n[schedule]\nepochs = 200\n'
                      f'warmup_epochs = 0\n[train]\nbatch_size = 2\nprogress = false\nlog_every = 1\n')
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "sepbn", "train", str(config), "--out", str(run)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ((run / "train.csv").is_file() and len((run / "train.csv").read_text().splitlines()) > 2):
            assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 75, err[-2000:]
    assert "SIGTERM received: stopping after this step" in err
    assert f"resume with: sepbn train {config} --out {run} --resume" in err
    step = load_checkpoint(run / "last.pt")["step"]
    with open(run / "train.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)][-1] == step  # saved right after the last step done


# --- the pure pieces -------------------------------------------------------------------------

def test_stop_signals_first_is_a_request_second_ctrl_c_quits():
    with StopSignals(announce=False) as stop:
        assert stop.received is None
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.received == "SIGUSR1"
        os.kill(os.getpid(), signal.SIGTERM)  # already stopping: ignored
        assert stop.received == "SIGUSR1"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_save_clock_and_write_failure_message(tmp_path):
    now = [100.0]
    clock = SaveClock(1.0, lambda: now[0])
    now[0] += 59
    assert not clock.due()
    now[0] += 1
    assert clock.due()
    clock.reset()
    assert not clock.due() and not SaveClock(0, lambda: now[0] + 1e9).due()
    failed = write_failed(tmp_path / "last.pt", OSError(errno.ENOSPC, "No space left"), 3 * 2**20)
    err = checkpoint_write_failed(failed, tmp_path)
    assert isinstance(err, CheckpointWriteError) and isinstance(err, OSError)
    assert str(err).startswith(f"{tmp_path / 'last.pt'}: cannot write it (no space left on the device; needs about 3.0 MiB, ")
    assert "nothing was written there; make room and start the run again (there is no last.pt" in str(err)
    (tmp_path / "last.pt").write_bytes(b"old")
    other = checkpoint_write_failed(write_failed(tmp_path / "last.pt", OSError(errno.EACCES, "Permission denied"), 2**20),
                                    tmp_path)
    assert "(Permission denied; needs about 1.0 MiB" in str(other) and "previous version is intact" in str(other)
    assert str(other).endswith(f"resume from {tmp_path / 'last.pt'} with --resume")


def test_slurm_script_stops_requeues_and_resumes(tiny_faces, tmp_path):
    """configs/slurm/train.sbatch with stand-ins for torchrun (runs the command as its child) and scontrol
    (records the call): SIGUSR1 to the batch script (``--signal=B:USR1``) stops training with a checkpoint
    and requeues the job; the next start of the same script resumes from it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "torchrun").write_text(
        '#!/bin/bash\nwhile [ "$1" != "-m" ]; do shift; done\n"$PYTHON" "$@" &\nchild=$!\ntrap "" USR1\n'
        'wait $child; st=$?\nwhile kill -0 $child 2>/dev/null; do wait $child; st=$?; done\nexit $st\n')
    (bin_dir / "scontrol").write_text(f'#!/bin/bash\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    config = tmp_path / "cfg.toml"
    config.write_text(f'[model]\nwidth = 0.0625\ninput_size = 64\n[[data.train]]\nfmt = "csv"\n'
                      f'source = "{tiny_faces["5pt"]}"\nprotocol = "5pt"\n[schedule]\nepochs = 200\n'
                      f'warmup_epochs = 0\n[train]\nbatch_size = 2\nprogress = false\nlog_every = 1\n')
    run = tmp_path / "run"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": sys.executable, "SLURM_JOB_ID": "4242",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    script = ["bash", str(ROOT / "configs" / "slurm" / "train.sbatch"), str(config), str(run)]
    job = subprocess.Popen(script, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ((run / "train.csv").is_file() and len((run / "train.csv").read_text().splitlines()) > 2):
            assert job.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.1)
        job.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@300 does 5 minutes before the time limit
        _, err = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 75 and "SIGUSR1 received" in err, err[-2000:]
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    step = load_checkpoint(run / "last.pt")["step"]
    again = subprocess.run(script + ["--set", f"train.max_steps={step + 2}", "--set", "train.progress=true"], env=env,
                           capture_output=True, text=True, timeout=180)  # the requeued job starts the same script
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resumed from {run / 'last.pt'}: epoch" in again.stdout
    assert load_checkpoint(run / "last.pt")["step"] == step + 2
    with open(run / "train.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(1, step + 3))
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]  # finished: no requeue
