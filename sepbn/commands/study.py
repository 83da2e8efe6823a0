"""``sepbn study run|table|check|adopt|archive|eval``: variants x seeds, resumable, in parallel, into one table.

    sepbn study run STUDY.toml --out DIR [--jobs N] [--threads-per-job T] [--devices 0,1]
                    [--executor local|slurm|submitit-local] [--only VARIANT ...] [--seeds K ...]
                    [--set KEY=VALUE ...]
    sepbn study table DIR            # markdown on stdout and DIR/table.md, DIR/table.json, DIR/ced.png
    sepbn study check STUDY.toml     # parse the study and resolve every variant's configs (no training)
    sepbn study adopt STUDY.toml --out DIR --variant V RUN [RUN ...]   # count finished runs of another study
    sepbn study archive DIR --to DEST   # copy results, train logs, run.json and the table for committing
    sepbn study eval RUNDIR          # evaluate one run folder (the runner calls it)

The study file format, the folder layout, resuming and the statistics: docs/study.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..config import ConfigError
from ..io import atomic_write_text
from ..study.adopt import adopt_run
from ..study.archive import archive_study
from ..study.evaluate_run import evaluate_run
from ..study.report import write_table
from ..study.runner import run_jobs
from ..study.spec import StudyError, check_study, load_study, study_jobs, study_to_dict


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="study_command", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="train and evaluate every (variant, seed) not finished yet, then the table")
    run.add_argument("study", help="study file (.toml)")
    run.add_argument("--out", default=None, help="study folder (default: runs/study/<study name>)")
    run.add_argument("--jobs", type=int, default=None,
                     help="runs side by side (default: the number of --devices, else 1)")
    run.add_argument("--threads-per-job", type=int, default=None,
                     help="OMP/MKL threads of each run (default: CPU cores / jobs)")
    run.add_argument("--devices", default=None, help="GPUs to use, one per running job, e.g. 0,1,2,3")
    run.add_argument("--executor", choices=("local", "slurm", "submitit-local"), default="local",
                     help="local processes (default), SLURM jobs through submitit, or submitit's local executor")
    run.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                     help="submitit parameter, e.g. slurm_partition=gpu, timeout_min=600, gpus_per_node=1 (repeatable)")
    run.add_argument("--only", nargs="+", default=[], metavar="VARIANT", help="run only these variants")
    run.add_argument("--seeds", nargs="+", type=int, default=[], metavar="K",
                     help="run only these of the study's seeds (a long study a few seeds at a time)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key in every run (e.g. data.root=/data); saved with the study")
    table = sub.add_parser("table", help="the table of a study folder (markdown, JSON, CED plot)")
    table.add_argument("folder", help="study folder (the --out of sepbn study run)")
    table.add_argument("--baseline", default=None,
                       help="compare against this variant instead of the study's baseline (writes table-vs-<name>.*)")
    check = sub.add_parser("check", help="parse a study file and resolve every variant's configs")
    check.add_argument("study", help="study file (.toml)")
    adopt = sub.add_parser("adopt", help="copy finished runs (same configs and seeds) into a study's folder")
    adopt.add_argument("study", help="study file (.toml)")
    adopt.add_argument("runs", nargs="+", metavar="RUN", help="finished run folders (each holds result.json)")
    adopt.add_argument("--out", required=True, help="study folder (the --out of sepbn study run)")
    adopt.add_argument("--variant", required=True, help="the variant the runs belong to in this study")
    archive = sub.add_parser("archive", help="copy a study's results (no weights) to a folder to commit")
    archive.add_argument("folder", help="study folder (the --out of sepbn study run)")
    archive.add_argument("--to", required=True, dest="dest", help="destination, e.g. docs/science/NAME")
    ev = sub.add_parser("eval", help="evaluate one run folder of a study (writes result.json)")
    ev.add_argument("folder", help="run folder DIR/<variant>/seed<k>")


def _parse_parameters(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--slurm expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _run(args: argparse.Namespace) -> int:
    study = load_study(args.study, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / "study" / study.name
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else []
    jobs_n = args.jobs or max(len(devices), 1)
    if jobs_n < 1 or (args.threads_per_job is not None and args.threads_per_job < 1):
        raise ValueError("--jobs and --threads-per-job must be at least 1")
    if devices and jobs_n > len(devices):
        raise ValueError(f"--jobs {jobs_n} needs as many --devices (got {len(devices)}: one GPU per job)")
    threads = args.threads_per_job or max(1, (os.cpu_count() or 1) // jobs_n)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "study.json", json.dumps(study_to_dict(study), indent=2))
    broken = check_study(study)
    jobs = study_jobs(study, out, args.only, seeds=args.seeds)
    todo = [j for j in jobs if j.variant not in broken]
    failed = []
    for j in jobs:
        if j.variant in broken:
            j.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(j.folder / "error.json", json.dumps(
                {"step": "config", "exit_code": 2, "log": str(study.path), "error": broken[j.variant]}, indent=2))
            failed.append(j.id)
    for v, e in broken.items():
        print(f"variant {v}: config does not resolve, its runs are not started: {e}", file=sys.stderr)
    total = len(jobs)
    n_variants, n_seeds = len({j.variant for j in jobs}), len({j.seed for j in jobs})  # --only/--seeds select
    print(f"study {study.name}: {total} runs ({n_variants} variants x {n_seeds} seeds) in {out}; "
          f"{jobs_n} at a time, {threads} threads each" + (f", devices {devices}" if devices else "")
          + f", executor {args.executor}", flush=True)
    count = [len(failed)]
    interrupted: list[str] = []

    def report(o) -> None:
        count[0] += 1
        if o.status == "failed":
            failed.append(o.job)
            print(f"[{count[0]}/{total}] {o.job} FAILED: {o.error} (log: {o.log})", flush=True)
        elif o.status == "interrupted":
            interrupted.append(o.job)
            print(f"[{count[0]}/{total}] {o.job} interrupted (resumes when the study runs again)", flush=True)
        else:
            word = f"already done{f' ({o.error})' if o.error else ''}" if o.status == "skipped" \
                else f"done in {o.seconds:.0f} s"
            print(f"[{count[0]}/{total}] {o.job} {word}", flush=True)

    run_jobs(todo, workers=jobs_n, threads=threads, devices=devices, executor=args.executor,
             submitit_folder=out / ".submitit", parameters=_parse_parameters(args.slurm), report=report)
    print()
    print(write_table(out))
    if interrupted:
        print(f"sepbn study: {len(interrupted)} runs interrupted; run the same command again to continue",
              file=sys.stderr)
    if failed:
        print(f"sepbn study: {len(failed)} of {total} runs failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed or interrupted else 0


def _adopt(args: argparse.Namespace) -> int:
    study = load_study(args.study)
    if args.variant not in [v.name for v in study.variants]:
        raise StudyError(f"--variant {args.variant!r}: not a variant of {study.path}")
    jobs = study_jobs(study, args.out, [args.variant])
    if not (Path(args.out) / "study.json").is_file():  # what `study table` reads; `study run` rewrites it
        Path(args.out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.out) / "study.json", json.dumps(study_to_dict(study), indent=2))
    for source in args.runs:
        job, how = adopt_run(source, jobs, args.variant)
        print(f"{job.id} <- {source} ({how})")
    return 0


def run(args: argparse.Namespace) -> int:
    prog = f"sepbn study {args.study_command}"
    try:
        if args.study_command == "run":
            return _run(args)
        if args.study_command == "table":

            print(write_table(Path(args.folder), args.baseline))
            return 0
        if args.study_command == "check":

            study = load_study(args.study)
            broken = check_study(study)
            for v in study.variants:
                state = f"ERROR {broken[v.name]}" if v.name in broken else "ok"
                print(f"{v.name}: {len(v.stages)} stage(s), {len(study.seeds)} seeds: {state}")
            return 1 if broken else 0
        if args.study_command == "adopt":
            return _adopt(args)
        if args.study_command == "archive":
            done, unfinished = archive_study(args.folder, args.dest)
            print(f"archived {len(done)} finished run(s) to {args.dest}"
                  + (f"; not finished, not copied: {', '.join(unfinished)}" if unfinished else ""))
            return 0

        result = evaluate_run(args.folder)
        for s in result["results"]:
            print(f"{s['dataset']}: {s['faces']} faces, NME {100 * s['nme']:.2f}% ({s['normalizer']})")
        return 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    except (StudyError, ConfigError, FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2 if isinstance(e, (StudyError, ConfigError)) else 1
