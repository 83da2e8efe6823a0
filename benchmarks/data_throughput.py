"""Augmented samples per second per data-loading worker, from image files and from the face cache.

One process, ``cv2.setNumThreads(1)``: the number is what one DataLoader worker (one core)
delivers. Each sample runs the full section V-A pipeline (augmentation drawn, one matrix, one
warp to 128x128, points, ImageNet normalisation). Inputs are synthetic JPEG photos this script
writes into a temporary folder, or ``--data DIR`` of 300-W style ``.pts`` faces (read in place,
never copied).

    python benchmarks/data_throughput.py                    # synthetic 640x480 photos
    python benchmarks/data_throughput.py --data ../shared/data/300w --box-scale 1.25
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

from sepbn.data import FaceRecord, LandmarkDataset, ensure_cache, read_records


def synthetic_faces(folder: Path, num: int, width: int, height: int, seed: int = 0) -> list[FaceRecord]:
    """``num`` smooth random JPEG photos with one 68-point face each (box about 40% of the height)."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(num):
        small = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
        photo = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        path = folder / f"photo_{i:04d}.jpg"
        cv2.imwrite(str(path), photo, [cv2.IMWRITE_JPEG_QUALITY, 90])
        side = height * rng.uniform(0.3, 0.5)
        x0, y0 = rng.uniform(0, width - side), rng.uniform(0, height - side)
        pts = rng.uniform([x0, y0], [x0 + side, y0 + side], (68, 2))
        records.append(FaceRecord(pts, (x0, y0, x0 + side, y0 + side), "300w68", image_path=str(path),
                                  source=f"{path.name}"))
    return records


def measure(dataset: LandmarkDataset, seconds: float, repeats: int) -> list[float]:
    """Samples per second in each of ``repeats`` runs of about ``seconds`` each."""
    for i in range(min(len(dataset), 16)):  # warm the page cache and cv2
        dataset[i]
    rates, n = [], 0
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            dataset[n % len(dataset)]
            n, count = n + 1, count + 1
            if n % len(dataset) == 0:
                dataset.set_epoch(n // len(dataset))
        rates.append(count / elapsed)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="a folder of 300-W .pts faces (read in place)")
    parser.add_argument("--num", type=int, default=64, help="synthetic photos / faces to use (default 64)")
    parser.add_argument("--photo-size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--box-scale", type=float, default=1.0)
    parser.add_argument("--cache-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per run (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per source; best and median reported")
    parser.add_argument("--work", type=Path, default=None, help="folder for photos and cache (default: a temp dir)")
    args = parser.parse_args(argv)

    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.data is not None:
            records = list(read_records("300w", args.data))[: args.num]
            source = f"{len(records)} faces of {args.data}"
        else:
            records = synthetic_faces(work, args.num, *args.photo_size)
            source = f"{len(records)} synthetic {args.photo_size[0]}x{args.photo_size[1]} JPEG photos"
        start = time.perf_counter()
        cache = ensure_cache(records, work / "cache", size=args.cache_size)
        build_s = time.perf_counter() - start
        common = dict(image_size=args.image_size, box_scale=args.box_scale)
        rows = [
            ("files, train augmentation", LandmarkDataset(records, "300w68", train=True, **common)),
            ("cache, train augmentation", LandmarkDataset(records, "300w68", train=True, cache=cache, **common)),
            ("cache, no augmentation", LandmarkDataset(records, "300w68", cache=cache, **common)),
        ]
        print(f"{source}; {args.image_size}x{args.image_size} crops; cv2 {cv2.__version__}, 1 thread; "
              f"{platform.processor() or platform.machine()}, python {sys.version.split()[0]}")
        print(f"cache build: {build_s:.2f} s for {len(records)} faces ({cache.size} px, margin {cache.margin})")
        print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} cores")
        print(f"{'source':<28}{'best/s':>10}{'median/s':>10}{'us/sample':>11}")
        for name, dataset in rows:
            rates = measure(dataset, args.seconds, args.repeats)
            best = max(rates)
            print(f"{name:<28}{best:>10.0f}{np.median(rates):>10.0f}{1e6 / best:>11.0f}")
        print(f"load average after:  {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
