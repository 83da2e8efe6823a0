"""One writer per run folder: a second `sepbn train` on a held folder is refused in one line naming the
holder's PID; the lock dies with its holder (no stale lock after a kill)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

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
