"""Where ONNX Runtime spends a folded model's time: per operator type, from ORT's own profiler (issue 18).

Exports a Vanilla CNN (default width 0.25, 128 px, SepBN in all six blocks, or BN) folded by
``fuse_for_inference``, runs it ``--runs`` times in one CPU session (graph optimisation on, so the graph is
the one ORT runs, NCHWc reorders included) and prints milliseconds per run for each operator type and the
slowest nodes. The shares stay meaningful on a loaded machine; the absolute times do not.

    python benchmarks/ort_profile.py --norm sepbn --batch 32 --out benchmarks/results/ort_profile_sepbn.json
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from sepbn.inference.export import SingleProtocolModule, export_onnx
from sepbn.inference.runtime import session_options
from sepbn.io import atomic_write_text
from sepbn.models import create_model
from sepbn.nn import fuse_for_inference

PROTOCOL = "wflw98"


def profile(path: Path, batch: int, size: int, runs: int, threads: int) -> dict:
    """``{"per_op": {op: ms per run}, "per_node": {node: ms per run}, "total_ms": ...}`` of one session."""
    options = session_options(threads)  # the threads of sepbn predict's session
    options.enable_profiling, options.profile_file_prefix = True, str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal((batch, 3, size, size),
                                                                                   dtype=np.float32)}
    session.run(None, feed)  # warm-up: not profiled below (its events are dropped with the first run's)
    for _ in range(runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    kernels = kernels[len(kernels) // (runs + 1):]  # drop the warm-up run
    per_op, per_node = collections.Counter(), collections.Counter()
    for e in kernels:
        per_op[e["args"]["op_name"]] += e["dur"] / runs / 1000
        per_node[e["name"][: -len("_kernel_time")]] += e["dur"] / runs / 1000
    return {"total_ms": sum(per_op.values()), "per_op": dict(per_op.most_common()),
            "per_node": dict(per_node.most_common(15))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--norm", default="sepbn", choices=("bn", "sepbn"))
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="JSON file for the profile")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    model = create_model("vanilla", [PROTOCOL], norm=args.norm, width=args.width, input_size=args.size).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args.norm}.onnx"
        export_onnx(SingleProtocolModule(fuse_for_inference(model), PROTOCOL), path, args.size)
        result = profile(path, args.batch, args.size, args.runs, args.threads)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result.update(vars(args), commit=commit, onnxruntime=ort.__version__)
    print(f"{args.norm}, batch {args.batch}, {args.threads} thread(s), commit {commit}: "
          f"{result['total_ms']:.1f} ms of kernels per run")
    for op, ms in result["per_op"].items():
        print(f"  {op:<16}{ms:9.2f} ms  {100 * ms / result['total_ms']:5.1f} %")
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
