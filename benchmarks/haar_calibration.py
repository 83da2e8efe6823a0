"""Fit a Haar -> training-box calibration on real annotated faces.

    python benchmarks/haar_calibration.py --data ../shared/data/300w
    python benchmarks/haar_calibration.py --format csv --data runs/real_splits/mtfl_train.csv --images / \
        --protocol 5pt

Runs OpenCV's bundled frontal-face cascade on each image, keeps the detection that best overlaps the
annotated box (IoU > 0.3), and fits ``BoxCalibration`` (sepbn.inference.detector). The first command is
the 300-W landmark box ("landmarks"); the second MTFL's square box ("mtfl") on the training faces of
the fixed real split (benchmarks/real_splits.py), never its held-out faces.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sepbn.data import read_records
from sepbn.inference.detector import HaarDetector, fit_calibration


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(a[:, 2], b[2]) - np.maximum(a[:, 0], b[0]), 0, None)
    iy = np.clip(np.minimum(a[:, 3], b[3]) - np.maximum(a[:, 1], b[1]), 0, None)
    inter = ix * iy
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="300-W root (afw/, helen/, ...), or --format's source")
    ap.add_argument("--format", default="300w", help="a reader of sepbn.data (default: 300w)")
    ap.add_argument("--split", default=None, help="the format's split (300w default: train)")
    ap.add_argument("--images", default=None, help="image root of the source (csv: / for absolute paths)")
    ap.add_argument("--protocol", default=None, help="the protocol of a csv / jsonl source")
    args = ap.parse_args()
    options = {"protocol": args.protocol} if args.protocol else {}
    if args.format == "300w":
        options["missing_ok"] = True
    split = args.split or ("train" if args.format == "300w" else None)
    records = read_records(args.format, args.data, split=split, images=args.images, **options)
    det = HaarDetector()
    found, ref = [], []
    t0 = time.perf_counter()
    for r in records:
        boxes = det(r.load_image()).boxes
        if len(boxes):
            box = np.asarray(r.box, dtype=np.float64)
            o = iou(np.asarray(boxes, dtype=np.float64), box)
            if o.max() > 0.3:
                found.append(boxes[int(o.argmax())])
                ref.append(box)
    dt = time.perf_counter() - t0
    cal = fit_calibration(np.asarray(found), np.asarray(ref))
    after = cal.apply(np.asarray(found))
    mean_iou_before = np.mean([iou(np.asarray([f]), r)[0] for f, r in zip(found, ref)])
    mean_iou_after = np.mean([iou(a[None], r)[0] for a, r in zip(after, ref)])
    print(f"faces {len(records)}, matched detections {len(found)} ({len(found) / len(records):.1%}), "
          f"{len(records) / dt:.1f} images/s")
    print(f"fitted {cal}")
    print(f"mean IoU with the annotated box: before {mean_iou_before:.3f}, after {mean_iou_after:.3f}")


if __name__ == "__main__":
    main()
