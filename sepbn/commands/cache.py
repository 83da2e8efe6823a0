"""``sepbn cache``: build (or check) the decoded face cache of one dataset split.

    sepbn cache --fmt 300w --source DATA/300w --split train --out cache/300w-train

Every face is decoded and cut once (``margin`` x its square box, ``size`` px) into one memmap;
``LandmarkDataset(..., cache=OUT)`` then reads crops instead of photos (see
:mod:`sepbn.data.cache`). Running it again is cheap when nothing changed: the cache is rebuilt
only when the records' files, boxes or points differ.
"""

from __future__ import annotations

import argparse
import sys
import time

from ..data.cache import FaceCache, ensure_cache
from ..data.formats import read_records


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fmt", required=True, help="annotation format (wflw, 300w, 300w-csv, cofw, aflw, wider5, mtfl, csv, coco)")
    parser.add_argument("--source", required=True, help="annotation file or folder")
    parser.add_argument("--images", default=None, help="image root, where the format needs one")
    parser.add_argument("--split", default=None, help="split of the format (e.g. train, test, common)")
    parser.add_argument("--out", required=True, help="cache directory")
    parser.add_argument("--size", type=int, default=256, help="side of each cached crop in px (default 256)")
    parser.add_argument("--margin", type=float, default=2.0,
                        help="cached region as a multiple of the square face box (default 2.0)")
    parser.add_argument("--workers", type=int, default=1, help="decoding threads (default 1)")
    parser.add_argument("--skip-invalid", action="store_true", help="skip malformed records and report them")


def run(args: argparse.Namespace) -> int:
    records = read_records(args.fmt, args.source, images=args.images, split=args.split,
                           skip_invalid=args.skip_invalid)
    for source, reason in getattr(records, "skipped", []):
        print(f"skipped {source}: {reason}", file=sys.stderr)
    if not records:
        raise ValueError(f"{args.source}: no faces")
    try:
        before = FaceCache(args.out).fingerprint
    except (FileNotFoundError, ValueError, KeyError):
        before = None
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done == total or done % 500 == 0:
            print(f"\r{done}/{total} faces", end="\n" if done == total else "", file=sys.stderr, flush=True)

    cache = ensure_cache(records, args.out, size=args.size, margin=args.margin, workers=args.workers,
                         progress=progress)
    state = "up to date" if cache.fingerprint == before else f"built in {time.perf_counter() - start:.1f} s"
    size_mb = cache.data_file.stat().st_size / 2**20
    print(f"{cache.root}: {len(cache)} faces, {cache.size} px, margin {cache.margin}, {size_mb:.0f} MiB ({state})")
    return 0
