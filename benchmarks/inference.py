"""Inference speed on CPU: latency per face (batch 1) and throughput (batch 64), BN vs SepBN.

Backends: eager PyTorch (``torch.inference_mode``), ``torch.compile`` (inductor, one compile per
batch size, compile time reported apart) and ONNX Runtime (CPU provider) on the file
``sepbn.inference.export`` writes. Model: the Table I Vanilla CNN (128 x 128 input; SepBN in all
six blocks, K=3, G=2, T=3) with one protocol head, in eval mode: SepBN's attention runs for every
face. BN and SepBN runs are interleaved round by round so a noisy, shared machine hurts both
alike; each number is the median over rounds. Also the per-face preprocessing of the predictor
(crop matrix, warp from a 640 x 480 photo, normalisation).

    python benchmarks/inference.py                         # full Table I width
    python benchmarks/inference.py --width 0.25 --rounds 3 # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sepbn.inference.export import SingleProtocolModule, export_onnx
from sepbn.inference.predictor import CropSpec, LandmarkDetector
from sepbn.models import create_model


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def build(norm: str, args: argparse.Namespace) -> SingleProtocolModule:
    torch.manual_seed(0)
    model = create_model("vanilla", [args.protocol], norm=norm, width=args.width, input_size=args.size)
    return SingleProtocolModule(model.eval(), args.protocol).eval()


def runners(module: SingleProtocolModule, backend: str, args: argparse.Namespace, tmp: Path) -> tuple[dict, float]:
    """batch size -> callable on a fixed input, and the set-up time (compile / export)."""
    t0 = time.perf_counter()
    inputs = {b: torch.randn(b, 3, args.size, args.size) for b in (1, args.batch)}
    if backend == "eager":
        def make(x):
            return lambda: module(x)
    elif backend == "compile":
        compiled = torch.compile(module)

        def make(x):
            return lambda: compiled(x)
    elif backend == "onnx":
        import onnxruntime as ort

        path = export_onnx(module, tmp / f"{id(module)}.onnx", args.size)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

        def make(x):
            feed = {"image": x.numpy()}
            return lambda: session.run(None, feed)
    else:
        raise ValueError(f"unknown backend {backend!r}")
    calls = {b: make(x) for b, x in inputs.items()}
    with torch.inference_mode():
        for fn in calls.values():  # compile / first-run costs stay out of the timings
            fn()
            fn()
    return calls, time.perf_counter() - t0


def preprocessing_per_face(args: argparse.Namespace) -> float:
    """Seconds per face for crop + warp + normalisation (the predictor's numpy side)."""
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    boxes = np.array([[100.0 + 5 * i, 80.0, 260.0 + 5 * i, 260.0] for i in range(args.batch)])
    det = LandmarkDetector(torch.nn.Identity(), args.protocol, CropSpec(args.size))
    return timed(lambda: det.crops(photo, boxes), 5) / len(boxes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=float, default=1.0, help="Vanilla CNN width multiplier (1.0 = Table I)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--protocol", default="300w68")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5, help="interleaved BN/SepBN rounds")
    p.add_argument("--repeats", type=int, default=5, help="batch-1 calls per round (batch 64: 1 call)")
    p.add_argument("--backends", default="eager,compile,onnx")
    p.add_argument("--threads", type=int, default=None, help="torch / ORT threads (default: torch's)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    backends = [b for b in args.backends.split(",") if b]
    norms = ("bn", "sepbn")
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs visible, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; shared with other jobs, so noisy")
    print(f"model: Vanilla CNN width {args.width}, {args.size}x{args.size}, protocol {args.protocol}")
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            calls, setup = {}, {}
            for norm in norms:
                calls[norm], setup[norm] = runners(build(norm, args), backend, args, Path(tmp))
            lat = {n: [] for n in norms}
            thr = {n: [] for n in norms}
            with torch.inference_mode():
                for _ in range(args.rounds):
                    for norm in norms:
                        lat[norm].append(timed(calls[norm][1], args.repeats))
                        thr[norm].append(args.batch / timed(calls[norm][args.batch], 1))
            results[backend] = {
                n: {"latency_ms": 1e3 * statistics.median(lat[n]), "faces_per_s": statistics.median(thr[n]),
                    "setup_s": setup[n]} for n in norms
            }
            r = results[backend]
            print(f"{backend:8s} " + "  ".join(
                f"{n}: {r[n]['latency_ms']:7.2f} ms/face (b=1), {r[n]['faces_per_s']:7.1f} faces/s (b={args.batch}),"
                f" set-up {r[n]['setup_s']:.1f} s" for n in norms)
                + f"  | SepBN/BN latency x{r['sepbn']['latency_ms'] / r['bn']['latency_ms']:.2f},"
                  f" throughput x{r['sepbn']['faces_per_s'] / r['bn']['faces_per_s']:.2f}", flush=True)
    pre = preprocessing_per_face(args)
    print(f"predictor preprocessing (crop matrix + warp from 640x480 + normalise): {1e3 * pre:.3f} ms/face")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results,
                                               "preprocessing_ms_per_face": 1e3 * pre}, indent=2))


if __name__ == "__main__":
    main()
