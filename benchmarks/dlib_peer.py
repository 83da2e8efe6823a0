"""The peer a CPU user would train instead: dlib's ERT shape predictor on the project's real split (issue 11).

Benchmark-only dependency: ``dlib-bin`` (``python -m pip install dlib-bin``, prebuilt wheels of dlib).
It is declared nowhere in sepbn's dependencies or extras; only this script imports it.

dlib's ``train_shape_predictor`` (Kazemi & Sullivan's ensemble of regression trees) with its default
options except ``num_threads`` (default 2) and, where given, ``--oversampling``, trained on the training
faces of the fixed split (``real_splits.py``: ``{300w,mtfl}_train.csv``) and scored on its held-out faces
(``{300w,mtfl}_val.csv``), the same files sepbn's real-data runs and studies read:

- ``--protocol 300w68``: 300-W, 1,026 train / 181 held-out faces, NME inter-ocular (outer eye corners 36, 45);
- ``--protocol 5pt``: MTFL, 8,500 train / 1,500 held-out faces, NME by the eye-centre distance (PROTOCOLS.md).

Boxes: dlib gets each record's box unscaled, as the readers give it (300-W: the tight box of the 68
points, there being no detector boxes in the data; MTFL: the square of 2x the 5 points' longer extent).
sepbn crops the same box made square and enlarged by ``box_scale`` (1.25 in the 300-W runs); the
enlargement is a crop margin for the CNN, while ERT expresses its shapes relative to the box itself, so
the unscaled box is the like-for-like input (``--box-scale 1.25`` gives dlib sepbn's crop box instead, to
measure how much the choice matters). Both methods see the same (ground-truth derived) box at test time. dlib stores part coordinates as integer pixels, so training targets and predictions
are rounded to whole pixels (dlib's own format); errors are measured against the unrounded points.

Scores come from sepbn's own metric code (``sepbn.evaluation.evaluate.summarize``: NME, FR@8/10 %,
AUC@8/10), so the row is comparable with ``sepbn eval`` on the same held-out CSV. Training time is
reported as process CPU seconds (all threads) and wall seconds; on a shared machine both are only
indicative.

    python benchmarks/dlib_peer.py --protocol 300w68 --data ../shared/data --out benchmarks/results/dlib_300w68.json
    python benchmarks/dlib_peer.py --protocol 5pt --data ../shared/data --oversampling 10 \\
        --out benchmarks/results/dlib_5pt.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from sepbn.data.formats import read_records
from sepbn.evaluation.evaluate import summarize
from sepbn.protocols import get_protocol
from sepbn.io import atomic_write_text

from real_splits import DATASETS, write_split  # noqa: E402  (benchmarks/ is the script's folder)

DATASET_OF = {protocol: name for name, (*_, protocol) in DATASETS.items()}


def split_files(protocol: str, splits: Path, data: Path | None) -> dict[str, Path]:
    """``{"train": csv, "val": csv}`` of the protocol's dataset; written from ``data`` when absent."""
    if protocol not in DATASET_OF:
        raise ValueError(f"protocol must be one of {sorted(DATASET_OF)}, got {protocol!r}")
    name = DATASET_OF[protocol]
    paths = {part: Path(splits) / f"{name}_{part}.csv" for part in ("train", "val")}
    if not all(p.is_file() for p in paths.values()):
        if data is None:
            raise FileNotFoundError(f"{paths['train']}: split files missing; give --data to write them")
        paths = write_split(name, data, splits)
    return paths


def load_faces(path: Path, protocol: str, limit: int | None = None) -> list:
    records = list(read_records("csv", path, images=Path("/"), protocol=protocol))
    return records[:limit] if limit else records


def face_box(box, scale: float = 1.0) -> tuple[float, float, float, float]:
    """The record's box (``scale`` 1, the default), or sepbn's crop box: its square of side
    ``scale * max(w, h)`` around the same centre (``--box-scale``, to test how much the box matters)."""
    if scale == 1.0:
        return tuple(float(v) for v in box)
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, scale * max(x1 - x0, y1 - y0) / 2
    return (cx - half, cy - half, cx + half, cy + half)


def _rectangle(dlib, box) -> object:
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    return dlib.rectangle(x0, y0, x1, y1)


def to_dlib(dlib, records: list, box_scale: float = 1.0) -> tuple[list, list]:
    """Images (RGB uint8) and one ``full_object_detection`` per image: the record's box and points."""
    images, objects = [], []
    for r in records:
        points = [dlib.point(int(round(x)), int(round(y))) for x, y in np.asarray(r.landmarks)]
        images.append(r.load_image())
        objects.append([dlib.full_object_detection(_rectangle(dlib, face_box(r.box, box_scale)), points)])
    return images, objects


def train(dlib, records: list, threads: int, oversampling: int | None, overrides: dict | None = None,
          box_scale: float = 1.0):
    """``(predictor, options, cpu_seconds, wall_seconds)``; the times cover training only."""
    options = dlib.shape_predictor_training_options()
    options.num_threads = threads
    if oversampling is not None:
        options.oversampling_amount = oversampling
    for key, value in (overrides or {}).items():  # tests shrink the model; the benchmark never does
        setattr(options, key, value)
    images, objects = to_dlib(dlib, records, box_scale)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    predictor = dlib.train_shape_predictor(images, objects, options)
    return predictor, options, time.process_time() - cpu0, time.perf_counter() - wall0


def predict(dlib, predictor, records: list, box_scale: float = 1.0) -> np.ndarray:
    """(N, L, 2) predicted points in original pixels, from each record's box."""
    out = []
    for r in records:
        shape = predictor(r.load_image(), _rectangle(dlib, face_box(r.box, box_scale)))
        out.append([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)])
    return np.asarray(out, dtype=np.float64)


def score(predictions: np.ndarray, records: list, protocol: str, name: str) -> dict:
    """sepbn's summary (NME, FR@8/10, AUC@8/10 as fractions, normaliser named) of ``predictions``."""
    from sepbn.evaluation.metrics import nme

    landmarks = np.stack([np.asarray(r.landmarks, dtype=np.float64) for r in records])
    boxes = np.asarray([r.box for r in records], dtype=np.float64)
    p = get_protocol(protocol)  # the script's edge: the --protocol name becomes the object once
    errors = nme(predictions, landmarks, p, boxes=boxes)
    return summarize(errors, p, name=name)


def markdown_row(result: dict) -> str:
    s = result["scores"]
    box = "" if result.get("box_scale", 1.0) == 1.0 else f", box x{result['box_scale']:g}"
    return (f"| dlib ERT (default options, oversampling {result['options']['oversampling_amount']}, "
            f"{result['options']['num_threads']} threads{box}) | {result['protocol']} | {result['train_faces']} | "
            f"{s['faces']} | {100 * s['nme']:.2f} | {100 * s['fr@8']:.2f} | {100 * s['fr@10']:.2f} | "
            f"{100 * s['auc@10']:.2f} | {result['train_cpu_s']:.0f} | {result['train_wall_s']:.0f} |")


MARKDOWN_HEADER = ("| model | protocol | train faces | held-out faces | NME % | FR@8 % | FR@10 % | AUC@10 % | "
                   "train CPU s | train wall s |\n|---|---|---|---|---|---|---|---|---|---|")


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _options_dict(options) -> dict:
    keys = ("cascade_depth", "tree_depth", "num_trees_per_cascade_level", "nu", "oversampling_amount",
            "oversampling_translation_jitter", "feature_pool_size", "lambda_param", "num_test_splits",
            "feature_pool_region_padding", "num_threads")
    return {k: getattr(options, k) for k in keys}


def run(protocol: str, splits: Path, data: Path | None, threads: int = 2, oversampling: int | None = None,
        limit: int | None = None, overrides: dict | None = None, box_scale: float = 1.0) -> dict:
    import dlib

    paths = split_files(protocol, splits, data)
    train_set = load_faces(paths["train"], protocol, limit)
    val_set = load_faces(paths["val"], protocol, limit)
    predictor, options, cpu_s, wall_s = train(dlib, train_set, threads, oversampling, overrides, box_scale)
    scores = score(predict(dlib, predictor, val_set, box_scale), val_set, protocol, name=f"{DATASET_OF[protocol]}-val")
    return {
        "model": "dlib ERT shape predictor", "dlib_version": dlib.__version__, "protocol": protocol,
        "split": {part: {"file": str(p), "sha256": _sha256(p)} for part, p in paths.items()},
        "train_faces": len(train_set), "box_scale": box_scale, "options": _options_dict(options), "scores": scores,
        "train_cpu_s": cpu_s, "train_wall_s": wall_s,
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores; shared with other jobs (times indicative)",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", required=True, choices=sorted(DATASET_OF))
    ap.add_argument("--data", default=None, help="folder with 300w/ and mtfl/ (writes the split when missing)")
    ap.add_argument("--splits", default="runs/real_splits", help="folder of the split CSVs (real_splits.py)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--oversampling", type=int, default=None, help="oversampling_amount (default: dlib's, 20)")
    ap.add_argument("--box-scale", type=float, default=1.0,
                    help="1: the record's box (default); s: its square of side s * max(w, h), as sepbn crops")
    ap.add_argument("--limit", type=int, default=None, help="first N faces of each part (smoke runs only)")
    ap.add_argument("--out", required=True, help="JSON file for the result")
    args = ap.parse_args()
    result = run(args.protocol, Path(args.splits), Path(args.data).resolve() if args.data else None,
                 args.threads, args.oversampling, args.limit, box_scale=args.box_scale)
    result["command"] = "python benchmarks/dlib_peer.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None)
    result["markdown"] = markdown_row(result)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(MARKDOWN_HEADER)
    print(result["markdown"])
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
