"""SynthFaces throughput: faces per second on one core, in memory and written to disk.

One process, ``cv2.setNumThreads(1)``: the number is what one core delivers. "in memory" is
``synthesize`` (sampling, geometry of every protocol, rendering, occlusion flags); "to disk"
adds the JPEG encode and write per face (``generate``'s worker, no annotation files). Each
measurement is repeated; the best and median wall-clock rates are printed with the rate per
CPU-second of the process, which on a shared machine is the closest to one core's own speed.

    python benchmarks/synth_throughput.py                  # 256x256, 200 faces x 5 repeats
    python benchmarks/synth_throughput.py --size 128 --num 500
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from sepbn.data.synth import FORMATS, synthesize
from sepbn.data.synth.generate import _render_and_save
from sepbn.data.synth.sample import DEFAULT_DOMAINS


def _rate(fn, num: int, repeats: int) -> tuple[float, float, float]:
    """Best and median wall-clock rate, and the rate per CPU-second of this process (what one
    core delivers when it is not shared: the scheduler's time slices are not counted)."""
    rates, cpu = [], 0.0
    for r in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn(r)
        rates.append(num / (time.perf_counter() - t))
        cpu += time.process_time() - c
    return max(rates), float(np.median(rates)), num * repeats / cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--num", type=int, default=200, help="faces per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    size = (args.size, args.size)
    protocols = list(FORMATS)
    synthesize(0, size=size, protocols=protocols)  # warm-up (imports, caches)

    def in_memory(r: int) -> None:
        for i in range(args.num):
            synthesize(r * args.num + i, size=size, protocols=protocols)

    with tempfile.TemporaryDirectory() as tmp:
        for split in ("train", "test"):
            (Path(tmp) / "images" / split).mkdir(parents=True)

        def to_disk(r: int) -> None:
            idx = list(range(r * args.num, (r + 1) * args.num))
            _render_and_save((idx, 0, DEFAULT_DOMAINS, size, protocols, tmp, 10**9))

        mem = _rate(in_memory, args.num, args.repeats)
        disk = _rate(to_disk, args.num, args.repeats)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"SynthFaces {args.size}x{args.size}, all 5 protocols, one core "
          f"({platform.machine()}, {os.cpu_count()} CPUs, load average {load:.1f}; python {sys.version.split()[0]}, "
          f"opencv {cv2.__version__}, numpy {np.__version__})")
    for name, r in (("in memory", mem), ("to disk  ", disk)):
        print(f"  {name}: wall clock best {r[0]:6.1f} / median {r[1]:6.1f} faces/s; "
              f"per CPU-second {r[2]:6.1f} faces/s")
    print("  (to disk = + JPEG encode and write; wall-clock rates drop when other jobs share the core)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
