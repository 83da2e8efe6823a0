"""``sepbn predict [--checkpoint CKPT | --model NAME] INPUT...``: landmarks on image files, folders and videos.

Without ``--checkpoint`` it runs a bundled model (``--model``, default ``300w68``; see
``sepbn.inference.pretrained`` and docs/model_card.md).

Writes one JSON line per image or video frame (``--jsonl``) and, with ``--out``, the images and
videos with the landmarks drawn. Face boxes come from ``--boxes FILE`` (in the box convention of
the training data) or a detector (``--detector haar|yunet|full``; detector boxes are converted,
see docs/inference.md). A file that cannot be read is reported, counted and skipped; it never
stops the run. Exit status: 0 when at least one input was processed (or there was nothing to
fail), 1 when every input failed, 2 when the checkpoint or the detector cannot be used.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from tqdm import tqdm

from ..data.records import read_image
from ..errors import UsageError
from ..inference.detector import BoxCalibration, create_detector
from ..inference.draw import draw_faces
from ..inference.predictor import LandmarkDetector
from ..inference.runtime import BACKENDS
from ..inference.pretrained import DEFAULT_MODEL, pretrained_path
from ..io import atomic_open, atomic_write_bytes, publish, temp_path


IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
DETECTOR_CHOICES = ("haar", "yunet", "full")


@contextlib.contextmanager
def _info_to_stderr(prog: str) -> Iterator[None]:
    """Show the package's INFO log records on stderr, prefixed with ``prog``, for the duration."""
    logger = logging.getLogger("sepbn")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{prog}: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or video files")
    parser.add_argument("--checkpoint", help="training checkpoint (.pt) or safetensors folder "
                        "(default: the bundled model, see --model)")
    parser.add_argument("--model", default=None, metavar="NAME",
                        help="bundled model to use when no --checkpoint is given (default: 300w68)")
    parser.add_argument("--protocol", help="which head to use (needed when the checkpoint has several)")
    parser.add_argument("--out", help="folder for images/videos with the landmarks drawn")
    parser.add_argument("--jsonl", help="JSON-lines output: one line per image or video frame")
    parser.add_argument("--boxes", help="face boxes: a .json {image: [[x0, y0, x1, y1], ...]} or a .jsonl "
                        "of {\"image\": ..., \"boxes\": [...]} lines (training box convention)")
    parser.add_argument("--detector", choices=DETECTOR_CHOICES,
                        help="face detector for images without given boxes; 'full': the whole image is "
                        "one face (pre-cropped faces) (default: haar, or none when --boxes is given)")
    parser.add_argument("--yunet-model", help="YuNet ONNX file (face_detection_yunet_2023mar.onnx)")
    parser.add_argument("--haar-cascade", help="Haar cascade XML (default: OpenCV's bundled frontal face)")
    parser.add_argument("--box-scale", type=float, help="detector box -> training box: side scale")
    parser.add_argument("--box-shift", type=float, nargs=2, metavar=("DX", "DY"),
                        help="detector box -> training box: centre shift in box widths/heights")
    parser.add_argument("--min-score", type=float, default=0.0, help="drop detections below this score")
    parser.add_argument("--recursive", "-r", action="store_true", help="search folders recursively")
    parser.add_argument("--frame-step", type=int, default=1, help="process every k-th video frame")
    parser.add_argument("--batch-size", type=int, default=64, help="faces per forward pass")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--domain", type=int, help="branch of brute-force SepBN layers (such checkpoints need it)")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="average each face with its mirror image (default: as the model states; "
                        "bundled models do)")
    parser.add_argument("--no-fuse", action="store_true",
                        help="run the model as trained (default: BN/SepBN folded into the convolutions)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="what runs the network: onnxruntime (CPU; exported once and cached, see "
                        "docs/inference.md), torch, or auto (default: onnxruntime when installed)")
    parser.add_argument("--no-channels-last", action="store_true",
                        help="backend torch: run the fused model on NCHW tensors (default: channels-last, faster on CPU)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


@dataclass
class Summary:
    images: int = 0
    videos: int = 0
    frames: int = 0
    faces: int = 0
    no_face: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"processed {self.images} image(s) and {self.frames} frame(s) of {self.videos} video(s): "
               f"{self.faces} face(s); {len(self.no_face)} without a face; {len(self.errors)} failed "
               "(unreadable or bad input)"]
        out += [f"  failed: {why if why.startswith(path) else f'{path}: {why}'}" for path, why in self.errors]
        return out


def expand_inputs(inputs: list[str], recursive: bool) -> Iterator[tuple[Path, Path | None]]:
    """(file, folder it was found in or None) for every input; folders list images and videos."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            for f in sorted(path.glob(pattern)):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                    yield f, path
        else:
            yield path, None


def read_boxes_file(path: str | Path) -> dict[str, np.ndarray]:
    """Boxes by image key from a ``.json`` mapping or ``.jsonl`` lines (see ``--boxes``)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    entries: dict[str, list] = {}
    try:
        if path.suffix.lower() == ".jsonl":
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    row = json.loads(line)
                    boxes = row.get("boxes", [f["box"] for f in row.get("faces", [])])
                    entries[str(row.get("image", row.get("file")))] = boxes
        else:
            entries = dict(json.loads(text))
        return {k: np.asarray(v, dtype=np.float64).reshape(-1, 4) for k, v in entries.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: cannot read face boxes: {e}") from None


def _lookup(boxes: dict[str, np.ndarray], path: Path) -> np.ndarray | None:
    for key in (str(path), path.as_posix(), str(path.resolve()), path.name):
        if key in boxes:
            return boxes[key]
    return None


def _detector(args: argparse.Namespace):
    name = args.detector or (None if args.boxes else "haar")
    model = args.yunet_model if name == "yunet" else args.haar_cascade
    detector = create_detector(name, model=model) if name else None
    calibration = None
    if args.box_scale is not None or args.box_shift is not None:
        dx, dy = args.box_shift or (0.0, 0.0)
        calibration = BoxCalibration(args.box_scale or 1.0, dx, dy)
    return detector, calibration


class Runner:
    """Reads inputs, batches faces across images, writes JSONL lines and drawn outputs."""

    def __init__(self, args: argparse.Namespace, predictor, boxes: dict[str, np.ndarray] | None,
                 jsonl, summary: Summary) -> None:
        self.args, self.predictor, self.boxes, self.jsonl, self.summary = args, predictor, boxes, jsonl, summary
        self.out = Path(args.out) if args.out else None

    def face_boxes(self, key: Path | None, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.boxes is not None and key is not None:
            given = _lookup(self.boxes, key)
            if given is not None:
                return given, np.ones(len(given))
        if self.predictor.detector is None:
            raise ValueError("no boxes for it in --boxes and no --detector")
        boxes, scores = self.predictor.detect(image)
        keep = scores >= self.args.min_score
        return boxes[keep], scores[keep]

    def record(self, name: str, frame: int | None, image: np.ndarray, faces: list) -> dict:
        self.summary.faces += len(faces)
        if not faces:
            self.summary.no_face.append(name if frame is None else f"{name}#{frame}")
        row = {"file": name, "frame": frame, "width": int(image.shape[1]), "height": int(image.shape[0]),
               "status": "ok" if faces else "no_face", "protocol": self.predictor.protocol.name,
               "faces": [{k: v for k, v in f.to_dict().items() if k != "point_names"} for f in faces],
               "point_names": list(self.predictor.point_names)}
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(row) + "\n")
        return row

    def output_path(self, path: Path, root: Path | None, suffix: str | None = None) -> Path:
        rel = path.relative_to(root) if root is not None else Path(path.name)
        out = self.out / rel
        return out.with_suffix(suffix) if suffix else out

    def images(self, batch: list[tuple[Path, Path | None]]) -> None:
        loaded, boxes, scores = [], [], []
        for path, root in batch:
            try:
                img = read_image(path)
                b, s = self.face_boxes(path, img)
            except Exception as e:  # noqa: BLE001 - one bad file never stops the run
                self.summary.errors.append((str(path), str(e)))
                continue
            loaded.append((path, root, img))
            boxes.append(b)
            scores.append(s)
        if not loaded:
            return
        results = self.predict([im for _, _, im in loaded], boxes, scores)
        for (path, root, img), faces in zip(loaded, results):
            if isinstance(faces, Exception):
                self.summary.errors.append((str(path), str(faces)))
                continue
            self.summary.images += 1
            self.record(str(path), None, img, faces)
            if self.out is not None:
                self.write_image(self.output_path(path, root), draw_faces(img, faces))

    def predict(self, images: list, boxes: list, scores: list) -> list:
        """Faces per image, batched; when the batch fails, image by image so only the bad one is lost."""
        try:
            return self.predictor.predict_many(images, boxes, scores)
        except Exception:  # noqa: BLE001 - e.g. a degenerate box in --boxes
            out: list = []
            for im, b, s in zip(images, boxes, scores):
                try:
                    out += self.predictor.predict_many([im], [b], [s])
                except Exception as e:  # noqa: BLE001
                    out.append(e)
            return out

    def write_image(self, dest: Path, rgb: np.ndarray) -> None:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        ok, data = cv2.imencode(dest.suffix or ".png", bgr)
        if not ok:  # a suffix OpenCV cannot encode: write a PNG beside it
            dest, (ok, data) = dest.with_suffix(".png"), cv2.imencode(".png", bgr)
        atomic_write_bytes(dest, data.tobytes())

    def video(self, path: Path, root: Path | None, progress: bool) -> None:
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            self.summary.errors.append((str(path), "cannot open video"))
            return
        writer = None
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        step = max(1, self.args.frame_step)
        frames_done = 0
        bar = tqdm(total=total, desc=path.name, unit="frame", leave=False, disable=not progress)
        chunk: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []

        def flush() -> None:
            nonlocal writer
            if not chunk:
                return
            results = self.predict([c[1] for c in chunk], [c[2] for c in chunk], [c[3] for c in chunk])
            for (k, rgb, _, _), faces in zip(chunk, results):
                if isinstance(faces, Exception):
                    self.summary.errors.append((f"{path}#{k}", str(faces)))
                    continue
                self.record(str(path), k, rgb, faces)
                if self.out is not None:
                    if writer is None:
                        writer = _VideoOutput(self.output_path(path, root, ".mp4"), fps / step, rgb.shape[1],
                                              rgb.shape[0])
                    writer.write(cv2.cvtColor(draw_faces(rgb, faces), cv2.COLOR_RGB2BGR))
            chunk.clear()

        failure, completed = None, False
        try:
            k = -1
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                k += 1
                bar.update(1)
                if k % step:
                    continue
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                b, s = self.face_boxes(None, rgb)
                chunk.append((k, rgb, b, s))
                frames_done += 1
                if len(chunk) >= max(1, self.args.batch_size // 4):
                    flush()
            flush()
            completed = True
        except Exception as e:  # noqa: BLE001 - one bad video never stops the run
            failure = f"frame {k}: {e}"
        finally:
            cap.release()
            bar.close()
            if writer is not None:
                writer.close(keep=completed)  # interrupted or failed: no half video
        if failure is not None or frames_done == 0:
            self.summary.errors.append((str(path), failure or "no frame could be decoded"))
            return
        self.summary.videos += 1
        self.summary.frames += frames_done


class _VideoOutput:
    """The annotated video, written under a temporary name and renamed only once complete, so a kill
    or a failing video never leaves a half-written file under the output name."""

    def __init__(self, dest: Path, fps: float, width: int, height: int) -> None:
        for suffix, codec in ((dest.suffix, "mp4v"), (".avi", "MJPG")):  # MJPG AVI: builds without MPEG-4
            self.dest = dest.with_suffix(suffix)
            self.tmp = temp_path(self.dest)
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
            if self.writer.isOpened():
                break

    def write(self, bgr: np.ndarray) -> None:
        self.writer.write(bgr)

    def close(self, keep: bool) -> None:
        self.writer.release()
        if keep and self.tmp.is_file():
            publish(self.tmp, self.dest)
        else:
            self.tmp.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1 or args.frame_step < 1:
        raise UsageError("--batch-size and --frame-step must be >= 1")
    boxes = read_boxes_file(args.boxes) if args.boxes else None
    detector, calibration = _detector(args)
    if args.checkpoint and args.model:
        raise UsageError("give --checkpoint or --model (a bundled model), not both")
    weights = args.checkpoint or pretrained_path(args.model or DEFAULT_MODEL)
    options = {} if args.flip is None else {"flip": args.flip}
    with _info_to_stderr("sepbn predict"):  # a first use's ONNX export says so while it runs
        predictor = LandmarkDetector.from_checkpoint(weights, args.protocol, args.device, detector=detector,
                                                     calibration=calibration, batch_size=args.batch_size,
                                                     domain=args.domain, fuse=not args.no_fuse,
                                                     channels_last=not args.no_channels_last,
                                                     backend=args.backend, **options)
    print(f"sepbn predict: {predictor!r}; detector box -> training box: {predictor.detector_calibration()}",
          file=sys.stderr)

    summary = Summary()
    files = list(expand_inputs(args.inputs, args.recursive))
    progress = not args.no_progress
    with contextlib.ExitStack() as stack:
        # the JSON-lines file appears under its name only once the run has ended (sepbn.io)
        jsonl = stack.enter_context(atomic_open(args.jsonl, "w", encoding="utf-8")) if args.jsonl else None
        runner = Runner(args, predictor, boxes, jsonl, summary)
        pending: list[tuple[Path, Path | None]] = []
        bar = tqdm(total=len(files), desc="predict", unit="file", disable=not progress)

        def flush_images() -> None:
            runner.images(pending)
            bar.update(len(pending))
            bar.set_postfix(faces=summary.faces, failed=len(summary.errors))
            pending.clear()

        for path, root in files:
            if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
                flush_images()
                runner.video(path, root, progress)
                bar.update(1)
            else:
                pending.append((path, root))
                if len(pending) >= 16:
                    flush_images()
        flush_images()
        bar.close()
    for line in summary.lines():
        print(line, file=sys.stderr if line.startswith("  ") else sys.stdout)
    done = summary.images + summary.videos
    return 1 if summary.errors and done == 0 else 0
