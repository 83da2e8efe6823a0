"""Face boxes for inference: from the caller, OpenCV's Haar cascade, or OpenCV's YuNet.

Paper, section V-A: faces are "cropped according to the official bounding box" and the crop is
enlarged by the dataset's box scale. A landmark model only works on crops like those it saw, so a
box from a face detector is first converted to the box convention of the training data with a
:class:`BoxCalibration` (a centre shift and a scale, in units of the detector box's size)::

    c' = c + (shift_x * w, shift_y * h),     (w', h') = scale * (w, h)

The crop is then taken from the converted box exactly as in training
(``sepbn.data.transforms.crop_matrix(box, size, box_scale)``).

Boxes are ``(x_min, y_min, x_max, y_max)`` float pixels (package convention). OpenCV detectors
return ``(x, y, w, h)`` with ``(x, y)`` the top-left pixel; we take ``x_max = x + w``.

Detectors that work offline:

* Haar cascade: ``cv2.CascadeClassifier`` with ``haarcascade_frontalface_default.xml`` from
  ``cv2.data.haarcascades``. opencv-python(-headless) 4.x ships both; OpenCV 5 moved the cascade
  classifier out of the main modules and its wheels ship no cascade files, so with OpenCV 5 this
  detector raises :class:`DetectorUnavailable` with that explanation (pass a cascade XML and an
  OpenCV that still has ``CascadeClassifier``, or use YuNet or caller-given boxes).
* YuNet: ``cv2.FaceDetectorYN`` with the ONNX file the user passes
  (``face_detection_yunet_2023mar.onnx`` from the OpenCV model zoo); never downloaded here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol as TypingProtocol

import cv2
import numpy as np

from ..errors import UserError

__all__ = [
    "BOX_CONVENTIONS",
    "BoxCalibration",
    "Detections",
    "DetectorUnavailable",
    "FaceDetector",
    "HaarDetector",
    "YuNetDetector",
    "WholeImageDetector",
    "DETECTORS",
    "DETECTOR_CALIBRATION",
    "create_detector",
    "fit_calibration",
    "parse_yunet",
    "xywh_to_xyxy",
]


class DetectorUnavailable(UserError, RuntimeError):
    """The requested face detector cannot run in this installation (the message says why)."""

    exit_code = 2


@dataclass(frozen=True)
class Detections:
    """Faces found in one image: boxes (N, 4) xyxy float64, scores (N,) float64, best first."""

    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)


class FaceDetector(TypingProtocol):
    """Anything with ``name`` and ``__call__(image RGB uint8 (H, W, 3)) -> Detections``."""

    name: str

    def __call__(self, image: np.ndarray) -> Detections: ...


@dataclass(frozen=True)
class BoxCalibration:
    """Detector box -> training box: centre moved by ``shift`` (fractions of w, h), sides x ``scale``.

    >>> BoxCalibration(scale=0.5, shift_y=0.25).apply([[0, 0, 4, 8]]).tolist()
    [[1.0, 4.0, 3.0, 8.0]]
    """

    scale: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"calibration scale must be > 0, got {self.scale}")

    def apply(self, boxes) -> np.ndarray:
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        cx = (b[:, 0] + b[:, 2]) / 2 + self.shift_x * w
        cy = (b[:, 1] + b[:, 3]) / 2 + self.shift_y * h
        hw, hh = self.scale * w / 2, self.scale * h / 2
        return np.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=1)


def fit_calibration(detected, reference) -> BoxCalibration:
    """Least-squares :class:`BoxCalibration` mapping ``detected`` boxes onto ``reference`` boxes.

    Both (N, 4) xyxy, matched row by row (e.g. a detector run on annotated faces and the boxes
    the training data uses). Scale: the geometric mean of the ratios of sqrt(w*h); shifts: the
    mean centre offsets divided by the detector box's width and height.
    """
    d = np.asarray(detected, dtype=np.float64).reshape(-1, 4)
    r = np.asarray(reference, dtype=np.float64).reshape(-1, 4)
    if len(d) == 0 or d.shape != r.shape:
        raise ValueError(f"need matching non-empty (N, 4) boxes, got {d.shape} and {r.shape}")
    dw, dh = d[:, 2] - d[:, 0], d[:, 3] - d[:, 1]
    rw, rh = r[:, 2] - r[:, 0], r[:, 3] - r[:, 1]
    if np.any(dw <= 0) or np.any(dh <= 0) or np.any(rw <= 0) or np.any(rh <= 0):
        raise ValueError("boxes must have positive width and height")
    scale = float(np.exp(np.mean(0.5 * np.log((rw * rh) / (dw * dh)))))
    dc = (d[:, :2] + d[:, 2:]) / 2
    rc = (r[:, :2] + r[:, 2:]) / 2
    shift = ((rc - dc) / np.stack([dw, dh], axis=1)).mean(axis=0)
    return BoxCalibration(scale, float(shift[0]), float(shift[1]))


# The box each annotation reader returns, by format (docs/data.md, "Which box, how much context"):
# "official": the dataset's face rectangle, drawn around the face like a detector box;
# "landmarks": the tight box of the annotated points (brows to chin, no forehead);
# "square": a square with context made from the annotation (300-W CSV centre/scale);
# "mtfl": MTFL's square, twice the longer side of the five points' box, on their centre.
BOX_CONVENTIONS: dict[str, str] = {
    "wflw": "official", "cofw": "official", "aflw": "official", "wider5": "official",
    "300w": "landmarks", "synth": "landmarks", "300w-csv": "square", "mtfl": "mtfl",
}

# Stated (not fitted) conversions from each detector's boxes to those conventions: estimates from
# the detectors' documented behaviour (Haar frontal boxes: square, brows to below the mouth;
# YuNet: forehead to chin), not measurements on this machine (no detector weights offline). A
# missing pair ("square", "unknown") means the identity. Fit your own with ``fit_calibration`` on
# annotated faces and pass it to LandmarkDetector (``--box-scale/--box-shift`` in the CLI).
DETECTOR_CALIBRATION: dict[tuple[str, str], BoxCalibration] = {
    ("haar", "official"): BoxCalibration(1.0, 0.0, 0.0),
    # measured: benchmarks/haar_calibration.py on 1,033 real 300-W faces (IoU 0.60 -> 0.77)
    ("haar", "landmarks"): BoxCalibration(0.85, 0.0, 0.14),
    # measured: benchmarks/haar_calibration.py on the 8,500 MTFL training faces of the fixed real split
    # (8,195 matched; IoU 0.69 -> 0.83)
    ("haar", "mtfl"): BoxCalibration(0.86, 0.0, 0.08),
    ("yunet", "official"): BoxCalibration(1.0, 0.0, 0.0),
    ("yunet", "landmarks"): BoxCalibration(0.95, 0.0, 0.05),
}


def xywh_to_xyxy(boxes) -> np.ndarray:
    """OpenCV ``(x, y, w, h)`` rows -> ``(x_min, y_min, x_max, y_max)`` float64 (N, 4)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def _sorted(boxes: np.ndarray, scores: np.ndarray) -> Detections:
    order = np.argsort(-scores, kind="stable")
    return Detections(boxes[order], scores[order])


HAAR_FILE = "haarcascade_frontalface_default.xml"


class HaarDetector:
    """OpenCV Viola-Jones cascade. ``cascade``: an XML path, default the bundled frontal-face one.

    Scores: the cascade's level weights when OpenCV reports them, else 1.0.
    """

    name = "haar"

    def __init__(self, cascade: str | os.PathLike | None = None, *, scale_factor: float = 1.1,
                 min_neighbors: int = 5, min_size: int = 24) -> None:
        if not hasattr(cv2, "CascadeClassifier"):
            raise DetectorUnavailable(
                f"the Haar detector needs cv2.CascadeClassifier, which OpenCV {cv2.__version__} does "
                "not have (OpenCV 5 moved it out of the main modules and ships no cascade files); "
                "install opencv-python-headless<5 to use it, or use --detector yunet --yunet-model "
                "FILE.onnx, or give the face boxes with --boxes"
            )
        if cascade is None:
            folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
            cascade = Path(folder) / HAAR_FILE
            if not cascade.is_file():
                raise DetectorUnavailable(
                    f"OpenCV {cv2.__version__} ships no {HAAR_FILE} in {folder!r}; pass a cascade XML path"
                )
        cascade = Path(cascade)
        if not cascade.is_file():
            raise DetectorUnavailable(f"Haar cascade file not found: {cascade}")
        try:
            self._cascade = cv2.CascadeClassifier(str(cascade))
        except (cv2.error, SystemError) as e:  # OpenCV 4 raises on a malformed XML file
            raise DetectorUnavailable(f"{cascade}: not a readable OpenCV cascade XML file ({e})") from None
        if self._cascade.empty():
            raise DetectorUnavailable(f"{cascade}: not a readable OpenCV cascade XML file")
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size = int(min_size)

    def __call__(self, image: np.ndarray) -> Detections:

        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        boxes, _, weights = self._cascade.detectMultiScale3(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size), outputRejectLevels=True,
        )
        if len(boxes) == 0:
            return Detections(np.zeros((0, 4)), np.zeros(0))
        scores = np.asarray(weights, dtype=np.float64).reshape(-1)
        if scores.shape[0] != len(boxes):
            scores = np.ones(len(boxes))
        return _sorted(xywh_to_xyxy(boxes), scores)


class YuNetDetector:
    """OpenCV YuNet (``cv2.FaceDetectorYN``) from the user's ONNX file."""

    name = "yunet"

    def __init__(self, model: str | os.PathLike, *, score_threshold: float = 0.6,
                 nms_threshold: float = 0.3, top_k: int = 5000) -> None:
        model = Path(model)
        if not model.is_file():
            raise DetectorUnavailable(f"YuNet model file not found: {model} (pass the ONNX file with --yunet-model)")
        try:
            self._net = cv2.FaceDetectorYN.create(str(model), "", (320, 320), float(score_threshold),
                                                  float(nms_threshold), int(top_k))
        except cv2.error as e:
            raise DetectorUnavailable(f"{model}: OpenCV cannot load it as a YuNet model: {e}") from None

    def __call__(self, image: np.ndarray) -> Detections:

        h, w = image.shape[:2]
        self._net.setInputSize((w, h))
        _, faces = self._net.detect(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        return parse_yunet(faces)


def parse_yunet(faces: np.ndarray | None) -> Detections:
    """YuNet's output rows ``x, y, w, h, 5 x (px, py), score`` -> :class:`Detections`."""
    if faces is None or len(faces) == 0:
        return Detections(np.zeros((0, 4)), np.zeros(0))
    f = np.asarray(faces, dtype=np.float64).reshape(len(faces), -1)
    return _sorted(xywh_to_xyxy(f[:, :4]), f[:, -1])


class WholeImageDetector:
    """The whole image is one face (already-cropped face images); score 1."""

    name = "full"

    def __call__(self, image: np.ndarray) -> Detections:
        h, w = image.shape[:2]
        return Detections(np.array([[0.0, 0.0, w - 1.0, h - 1.0]]), np.ones(1))


DETECTORS: dict[str, type] = {"haar": HaarDetector, "yunet": YuNetDetector, "full": WholeImageDetector}


def create_detector(name: str, *, model: str | os.PathLike | None = None, **kwargs) -> FaceDetector:
    """``"haar"`` (``model``: optional cascade XML), ``"yunet"`` (``model``: the ONNX file) or
    ``"full"`` (the whole image is the face)."""
    if name == "full":
        return WholeImageDetector()
    if name == "haar":
        return HaarDetector(model, **kwargs)
    if name == "yunet":
        if model is None:
            raise DetectorUnavailable("the YuNet detector needs its ONNX file (--yunet-model PATH)")
        return YuNetDetector(model, **kwargs)
    raise ValueError(f"unknown detector {name!r}; choose one of {sorted(DETECTORS)}")
