"""Sanity check of the annotation readers on the real files in ../shared/data (not a test).

Reads the 300-W subset (afw + helen/trainset .pts, split "train" with the absent
lfpw/trainset allowed) and MTFL training.txt, decodes every image once with
``check_images=True`` (decodable, points and box within half an image of its edges) and
prints counts, timings and a few coordinate statistics. Usage::

    python benchmarks/read_real_annotations.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from sepbn.data import read_records


def _report(name: str, recs, seconds: float, seconds_checked: float) -> None:
    pts = np.stack([r.landmarks for r in recs])
    boxes = np.array([r.box for r in recs])
    side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    print(f"{name}: {len(recs)} faces, {len(recs.skipped)} skipped; read {seconds:.2f} s, "
          f"with check_images {seconds_checked:.2f} s; points x in [{pts[..., 0].min():.1f}, "
          f"{pts[..., 0].max():.1f}], box sqrt(w*h) median {np.median(side):.1f} px")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, fmt, src, kw in [
        ("300-W train (afw + helen/trainset)", "300w", args.data / "300w", {"split": "train", "missing_ok": True}),
        ("300-W afw folder", "300w", args.data / "300w" / "afw", {}),
        ("MTFL training.txt", "mtfl", args.data / "mtfl" / "training.txt", {}),
    ]:
        t = time.perf_counter()
        recs = read_records(fmt, src, **kw)
        t1 = time.perf_counter()
        checked = read_records(fmt, src, check_images=True, **kw)
        t2 = time.perf_counter()
        assert len(checked) == len(recs)
        _report(name, recs, t1 - t, t2 - t1)


if __name__ == "__main__":
    main()
