"""Run a study's jobs: each (variant, seed) is ordinary ``sepbn train`` processes plus ``sepbn study eval``.

A job runs in its folder ``DIR/<variant>/seed<k>/`` (stages in ``stage1/``, ``stage2/``):

1. ``run.json`` records the job (configs, overrides in order, evaluation);
2. every stage is ``python -m sepbn train CONFIG --set ... --out STAGE`` with its output in
   ``STAGE/train.log``; a stage whose ``summary.json`` exists is done (skipped), one with a
   ``last.pt`` is continued with ``--resume``; wall and CPU seconds add up in ``time.json``;
3. ``python -m sepbn study eval FOLDER`` (log ``eval.log``) writes ``result.json``, the mark of a
   finished job: a job with one is never run again.

A folder started with other configs or overrides (its ``run.json``) is never resumed under the
new ones: a finished job is kept with a note, one with a checkpoint is refused (delete it to redo).

A train process stopped by a signal (SIGTERM from SLURM or from this runner, Ctrl-C) saves
``last.pt`` and exits 75: the job is "interrupted", not failed, and resumes next time. A failing
step writes ``error.json`` (step, log, last line of the log) and ends its job; other
jobs go on. Jobs run side by side in a ``ThreadPoolExecutor`` (each thread waits on its
processes), with ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` set to the threads per job and, with
devices, ``CUDA_VISIBLE_DEVICES`` set to one device taken from a pool for the job's length.
``executor="slurm"`` submits each job through submitit instead (``submitit-local`` runs the same
path with submitit's local executor, for tests and single machines).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..io import atomic_write_text
from .spec import Job

__all__ = ["Outcome", "run_job", "run_jobs", "is_done", "changed", "last_line"]

EXECUTORS = ("local", "slurm", "submitit-local")
EXIT_PREEMPTED = 75  # `sepbn train` stopped by a signal after writing last.pt (sepbn.train.preempt)
_ACTIVE: set[subprocess.Popen] = set()  # processes to end when the study is interrupted
_LOCK = threading.Lock()
_STOP = threading.Event()


@dataclass
class Outcome:
    job: str
    status: str  # "done" | "skipped" (finished before) | "failed" | "interrupted"
    folder: str
    log: str | None = None
    error: str | None = None
    seconds: float = 0.0


def is_done(folder: str | Path) -> bool:
    return (Path(folder) / "result.json").is_file()


def last_line(log: str | Path) -> str:
    """The last non-empty line of a log (the error, usually), or a note that there is none."""
    try:
        lines = [ln.strip() for ln in Path(log).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


def _env(threads: int, device: str | None) -> dict:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    return env


def _spawn(cmd: list[str], log: Path, env: dict, cwd: str) -> tuple[int, float, float]:
    """Run ``cmd`` with its output appended to ``log``: (exit code, wall seconds, CPU seconds)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        with _LOCK:
            _ACTIVE.add(proc)
        try:
            if hasattr(os, "wait4"):  # this child's own CPU time, even with other jobs running
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                cpu = usage.ru_utime + usage.ru_stime
            else:  # pragma: no cover - Windows
                proc.wait()
                cpu = float("nan")
        finally:
            with _LOCK:
                _ACTIVE.discard(proc)
    return proc.returncode, time.perf_counter() - t0, cpu


def _add_time(folder: Path, stage: str, wall: float, cpu: float) -> None:
    path = folder / "time.json"
    times = json.loads(path.read_text()) if path.is_file() else {}
    entry = times.setdefault(stage, {"wall": 0.0, "cpu": 0.0, "attempts": 0})
    entry["wall"] += wall
    entry["cpu"] += cpu
    entry["attempts"] += 1
    atomic_write_text(path, json.dumps(times, indent=2))


def _fail(job: Job, step: str, log: Path, t0: float, code: int) -> Outcome:
    if _STOP.is_set() or code == EXIT_PREEMPTED:  # stopped with a checkpoint: the next study run resumes it
        return Outcome(job.id, "interrupted", str(job.folder), str(log), seconds=time.perf_counter() - t0)
    line = last_line(log)
    atomic_write_text(job.folder / "error.json", json.dumps(
        {"step": step, "exit_code": code, "log": str(log), "error": line}, indent=2))
    return Outcome(job.id, "failed", str(job.folder), str(log), f"{step}: {line}", time.perf_counter() - t0)


def changed(job: Job) -> list[str]:
    """What of ``job`` ("stages", "eval") differs from the run.json its folder was started with."""
    path = job.folder / "run.json"
    if not path.is_file():
        return []
    old, new = json.loads(path.read_text()), json.loads(json.dumps(job.to_dict()))
    return [k for k in ("stages", "eval") if old.get(k) != new[k]]


def run_job(job: Job, threads: int = 1, device: str | None = None) -> Outcome:
    """Train every stage of ``job`` not yet finished, then evaluate it (see the module doc)."""
    t0 = time.perf_counter()
    if is_done(job.folder):
        return Outcome(job.id, "skipped", str(job.folder))
    if "stages" in changed(job) and any((Path(st["out"]) / "last.pt").is_file() for st in job.stages):
        return Outcome(job.id, "failed", str(job.folder), str(job.folder / "run.json"),
                       f"its configs or overrides changed since it started; delete {job.folder} to start it afresh")
    job.folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(job.folder / "run.json", json.dumps(job.to_dict(), indent=2))
    env = _env(threads, device)
    python = [sys.executable, "-m", "sepbn"]
    for k, st in enumerate(job.stages):
        out = Path(st["out"])
        if (out / "summary.json").is_file() and (out / "final").is_dir():
            continue
        if _STOP.is_set():  # the study is being stopped: start nothing new
            return Outcome(job.id, "interrupted", str(job.folder), seconds=time.perf_counter() - t0)
        cmd = python + ["train", st["config"], "--out", str(out)]
        for o in st["overrides"]:
            cmd += ["--set", o]
        if (out / "last.pt").is_file():
            cmd.append("--resume")
        log = out / "train.log"
        code, wall, cpu = _spawn(cmd, log, env, job.cwd)
        _add_time(job.folder, f"stage{k + 1}", wall, cpu)
        if code != 0:
            return _fail(job, f"train stage {k + 1}" if len(job.stages) > 1 else "train", log, t0, code)
    if _STOP.is_set():
        return Outcome(job.id, "interrupted", str(job.folder), seconds=time.perf_counter() - t0)
    log = job.folder / "eval.log"
    code, _, _ = _spawn(python + ["study", "eval", str(job.folder)], log, env, job.cwd)
    if code != 0 or not is_done(job.folder):
        return _fail(job, "eval", log, t0, code)
    (job.folder / "error.json").unlink(missing_ok=True)
    return Outcome(job.id, "done", str(job.folder), seconds=time.perf_counter() - t0)


def _terminate_active() -> None:
    _STOP.set()
    with _LOCK:
        procs = list(_ACTIVE)
    for p in procs:
        p.terminate()


def _local(jobs: Sequence[Job], workers: int, threads: int, devices: Sequence[str], report):
    pool: queue.Queue = queue.Queue()
    for d in devices:
        pool.put(d)

    def one(job: Job) -> Outcome:
        if _STOP.is_set():
            return Outcome(job.id, "interrupted", str(job.folder))
        device = pool.get() if devices else None
        try:
            return run_job(job, threads, device)
        finally:
            if devices:
                pool.put(device)

    with ThreadPoolExecutor(max_workers=workers) as ex:
        futures = [ex.submit(one, j) for j in jobs]
        try:
            for fut in as_completed(futures):
                report(fut.result())
        except BaseException:
            _terminate_active()
            ex.shutdown(wait=True, cancel_futures=True)
            raise


def _submitit(jobs: Sequence[Job], workers: int, threads: int, folder: Path, cluster: str | None,
              parameters: dict, report):
    try:
        import submitit
    except ModuleNotFoundError:
        raise RuntimeError("--executor slurm needs submitit: pip install 'sepbn[study]'") from None
    ex = submitit.AutoExecutor(folder=folder, cluster=cluster)
    ex.update_parameters(**{"name": "sepbn-study", "cpus_per_task": threads, "timeout_min": 24 * 60,
                            "slurm_array_parallelism": workers, **parameters})
    with ex.batch():  # one job array: slurm_array_parallelism caps the runs at once
        handles = [ex.submit(run_job, j, threads, None) for j in jobs]
    submitted = dict(zip(handles, jobs))
    try:
        for sj in submitit.helpers.as_completed(list(submitted)):
            job = submitted[sj]
            try:
                report(sj.result())
            except Exception as e:  # the job died outside run_job (killed, out of time, node failure)
                log = str(sj.paths.stderr)
                error = f"submitit: {last_line(log)} ({type(e).__name__})"
                report(Outcome(job.id, "failed", str(job.folder), log, error))
    except BaseException:
        for sj in submitted:
            sj.cancel(check=False)
        raise


def run_jobs(jobs: Sequence[Job], *, workers: int = 1, threads: int = 1, devices: Sequence[str] = (),
             executor: str = "local", submitit_folder: Path | None = None, parameters: dict | None = None,
             report: Callable[[Outcome], None] = lambda o: None) -> list[Outcome]:
    """Run ``jobs`` (finished ones are skipped at once); every outcome goes to ``report`` as it arrives."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {list(EXECUTORS)}, got {executor!r}")
    outcomes: list[Outcome] = []

    def record(o: Outcome) -> None:
        outcomes.append(o)
        report(o)

    for j in jobs:
        if is_done(j.folder):
            diff = changed(j)
            note = f"kept, though its {' and '.join(diff)} changed since (delete the folder to redo it)"
            record(Outcome(j.id, "skipped", str(j.folder), error=note if diff else None))
    todo = [j for j in jobs if not is_done(j.folder)]
    if not todo:
        return outcomes
    _STOP.clear()
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if main else None
    try:
        if executor == "local":
            _local(todo, workers, threads, devices, record)
        else:
            _submitit(todo, workers, threads, submitit_folder or Path(".submitit"),
                      "slurm" if executor == "slurm" else "local", parameters or {}, record)
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    return outcomes


def _raise_interrupt(signum, frame):  # SIGTERM ends the study like Ctrl-C: running trainings are stopped
    raise KeyboardInterrupt
