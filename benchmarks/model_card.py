"""The numbers of docs/model_card.md: a bundled model's accuracy on held-out real faces and its speed.

Accuracy, on the held-out faces of the fixed split (``benchmarks/real_splits.py``), scored once:

- through the ground-truth boxes (the box the model was trained with: the tight box of the 68
  points, made square and enlarged by the training ``box_scale``), as in the study tables;
- through the bundled face detector (OpenCV's Haar cascade and the stated Haar -> 300-W box
  conversion): per image the detection that overlaps the ground-truth box most (IoU >= 0.3) is
  used; the images where none does are counted as missed and reported apart.

Speed per face at batch 1, one thread, medians of interleaved rounds: the network alone in both backends
of ``LandmarkDetector`` (eager PyTorch, folded, channels-last; ONNX Runtime, ``sepbn.inference.runtime``),
with and without flip averaging, and the whole ``LandmarkDetector.predict`` with a given box (crop, network,
mapping back) in the backend ``sepbn predict`` uses by default (``--backend auto``), next to dlib's
ERT predictor with its default forest (10 cascades x 500 trees of depth 4: its speed depends on
that structure only, so the forest is trained quickly on a few faces with oversampling 1 and its
accuracy is not used). A figure of the worst held-out faces shows points only (the 300-W photos
may not be copied; see docs/model_card.md); the overlay picture is a SynthFaces render.

    python benchmarks/model_card.py --data ../shared/data --out benchmarks/results/model_card_300w68.json
    python benchmarks/model_card.py --model 5pt --data ../shared/data --out benchmarks/results/model_card_5pt.json

The 5-point model is scored the same way on MTFL's held-out faces (its box: MTFL's square, twice the
five points' span; the Haar boxes through the Haar -> mtfl conversion measured on the training faces).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from dlib_peer import face_box, load_faces, to_dlib
from real_splits import write_split
from sepbn.data.synth.sample import synthesize
from sepbn.evaluation.evaluate import summarize
from sepbn.evaluation.metrics import nme
from sepbn.inference.draw import draw_faces
from sepbn.inference.pretrained import load_pretrained
from sepbn.io import atomic_write_text
from sepbn.protocols import get_protocol

NORMALIZER = "inter-ocular"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


# bundled model -> (dataset of benchmarks/real_splits.py, protocol, the studies' normalizer, dlib's box scale
# as in its study, file prefix)
CARDS = {"300w68": ("300w", "300w68", NORMALIZER, 1.25, "model_card"),
         "5pt": ("mtfl", "5pt", "eye-centres", 1.0, "model_card_5pt")}


def training_box(points: np.ndarray, convention: str) -> list[float]:
    """A face's box in the model's training convention, from its points (for the SynthFaces overlay)."""
    lo, hi = points.min(0), points.max(0)
    if convention == "mtfl":  # MTFL's square: twice the longer side of the points' box, same centre
        centre, half = (lo + hi) / 2, np.ptp(points, axis=0).max()
        return [*(centre - half), *(centre + half)]
    return [*lo, *hi]  # 300-W: the tight box of the points


def accuracy(det, records: list, protocol, name: str, normalizer: str) -> dict:
    """Scores through ground-truth boxes and through the detector; per-face errors kept for the figure."""
    truth = np.stack([r.landmarks for r in records])
    boxes = np.asarray([r.box for r in records], dtype=np.float64)
    gt_pred, det_pred, found = [], [], []
    for r in records:
        image = r.load_image()
        gt_pred.append(det.predict(image, boxes=[r.box])[0].landmarks)
        found_boxes, _ = det.detect(image)  # Haar boxes converted to the training box convention
        overlaps = [iou(b, np.asarray(r.box)) for b in found_boxes]
        best = int(np.argmax(overlaps)) if overlaps else -1
        found.append(best >= 0 and overlaps[best] >= 0.3)
        det_pred.append(det.predict(image, boxes=[found_boxes[best]])[0].landmarks if found[-1] else gt_pred[-1])
    found = np.asarray(found)
    gt_err = nme(np.stack(gt_pred), truth, protocol, boxes=boxes, normalizer=normalizer)
    det_err = nme(np.stack(det_pred), truth, protocol, boxes=boxes, normalizer=normalizer)[found]
    return {
        "ground_truth_boxes": summarize(gt_err, protocol, normalizer=normalizer, name=name),
        "detector": {"detected": int(found.sum()), "missed": int((~found).sum()),
                     **summarize(det_err, protocol, normalizer=normalizer, name=f"{name}, Haar boxes")},
        "errors": gt_err, "predictions": np.stack(gt_pred),
    }


def _median_ms(fns: dict, rounds: int, repeats: int) -> dict:
    """Interleaved rounds; each cell the median over rounds of the mean of ``repeats`` calls, in ms."""
    times: dict = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            fn()
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()
            times[key].append(1000 * (time.perf_counter() - t0) / repeats)
    return {k: statistics.median(v) for k, v in times.items()}


def speed(name: str, records: list, dlib_predictor, rounds: int, repeats: int) -> dict:
    import dlib

    nets = {f"{backend}{'_flip' if flip else ''}": load_pretrained(name, detector=None, backend=backend, flip=flip)
            for backend in ("torch", "onnxruntime") for flip in (False, True)}
    shipped = load_pretrained(name, detector=None)  # sepbn predict's default backend and flip
    r = records[0]
    image = r.load_image()
    x, _ = shipped.crops(image, np.asarray([r.box]))
    rect = dlib.rectangle(*(int(round(v)) for v in face_box(r.box, shipped.crop.box_scale)))
    fns = {key.replace("torch", "eager"): (lambda det=det: det.forward_crops(x)) for key, det in nets.items()}
    fns["predict_with_box"] = lambda: shipped.predict(image, boxes=[r.box])
    fns["dlib_predictor"] = lambda: dlib_predictor(image, rect)
    out = _median_ms(fns, rounds, repeats)
    out["predict_backend"] = shipped.backend
    return out


def dlib_speed_model(records: list, faces: int, box_scale: float):
    """dlib's default forest trained fast (oversampling 1, ``faces`` faces): for timing only."""
    import dlib

    options = dlib.shape_predictor_training_options()
    options.oversampling_amount, options.num_threads = 1, 2
    images, objects = to_dlib(dlib, records[:faces], box_scale)
    return dlib.train_shape_predictor(images, objects, options), options


def figures(det, records: list, acc: dict, out_dir: Path, prefix: str) -> list[str]:
    """Points-only plot of the 4 worst held-out faces, and an overlay on a SynthFaces render."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worst = np.argsort(acc["errors"])[::-1][:4]
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    for ax, i in zip(axes, worst):
        gt, pr = records[i].landmarks, acc["predictions"][i]
        ax.scatter(gt[:, 0], gt[:, 1], s=6, c="tab:green", label="truth")
        ax.scatter(pr[:, 0], pr[:, 1], s=6, c="tab:red", label="prediction")
        ax.set_title(f"NME {100 * acc['errors'][i]:.1f} %", fontsize=9)
        ax.invert_yaxis()
        ax.set_aspect("equal")
        ax.axis("off")
    axes[0].legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    worst_path = out_dir / f"{prefix}_worst.png"
    fig.savefig(worst_path, dpi=90)
    plt.close(fig)
    face = synthesize(7, seed=3, size=(512, 512), protocols=[det.protocol.name])
    pts = face.points[det.protocol.name]
    centre, half = (pts.min(0) + pts.max(0)) / 2, 0.9 * np.ptp(pts, axis=0).max()
    x0, y0 = np.maximum(0, np.round(centre - half)).astype(int)
    x1, y1 = np.minimum(face.image.shape[1::-1], np.round(centre + half)).astype(int)
    zoom = 320 / max(x1 - x0, y1 - y0)  # the face large enough to see the points
    image = cv2.resize(face.image[y0:y1, x0:x1], None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
    pts = (pts - [x0, y0]) * zoom
    drawn = draw_faces(image, det.predict(image, boxes=[training_box(pts, det.crop.box_convention)]))
    overlay = out_dir / f"{prefix}_synth_overlay.png"
    plt.imsave(overlay, drawn)
    return [str(worst_path), str(overlay)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="300w68", choices=sorted(CARDS), help="bundled model name")
    ap.add_argument("--data", default=None, help="folder with 300w/ and mtfl/ (writes the split when missing)")
    ap.add_argument("--splits", default="runs/real_splits")
    ap.add_argument("--out", default=None, help="default: benchmarks/results/model_card_MODEL.json")
    ap.add_argument("--figures", default="docs/img")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--dlib-faces", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    dataset, protocol_name, normalizer, dlib_box_scale, prefix = CARDS[args.model]
    val = Path(args.splits) / f"{dataset}_val.csv"
    if not val.is_file():
        write_split(dataset, Path(args.data), Path(args.splits))
    protocol = get_protocol(protocol_name)
    records = load_faces(val, protocol_name)
    det = load_pretrained(args.model, detector="haar")
    acc = accuracy(det, records, protocol, f"{dataset}-val", normalizer)
    train = load_faces(Path(args.splits) / f"{dataset}_train.csv", protocol_name)
    predictor, options = dlib_speed_model(train, args.dlib_faces, dlib_box_scale)
    result = {
        "model": args.model, "held_out_faces": len(records), "flip": det.flip, "normalizer": normalizer,
        "accuracy": {k: v for k, v in acc.items() if k not in ("errors", "predictions")},
        "speed_ms_per_face_batch1_1thread": speed(args.model, records, predictor, args.rounds, args.repeats),
        "dlib_forest": {"cascade_depth": options.cascade_depth, "trees": options.num_trees_per_cascade_level,
                        "tree_depth": options.tree_depth},
        "figures": figures(det, records, acc, Path(args.figures), prefix),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}",
    }
    atomic_write_text(args.out or f"benchmarks/results/model_card_{args.model}.json", json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
