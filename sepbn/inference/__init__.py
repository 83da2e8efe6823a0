"""Inference on photos and export for deployment: face boxes, landmarks in original pixels, drawing,
ONNX / TorchScript export with a parity check (see docs/inference.md)."""

from .detector import (
    BoxCalibration,
    Detections,
    DetectorUnavailable,
    HaarDetector,
    YuNetDetector,
    create_detector,
    fit_calibration,
)
from .draw import draw_faces, draw_landmarks
from .export import SingleProtocolModule, check_parity, export_model
from .predictor import CheckpointError, CropSpec, FaceLandmarks, LandmarkDetector

__all__ = [
    "BoxCalibration",
    "CheckpointError",
    "CropSpec",
    "Detections",
    "DetectorUnavailable",
    "FaceLandmarks",
    "HaarDetector",
    "LandmarkDetector",
    "SingleProtocolModule",
    "YuNetDetector",
    "check_parity",
    "create_detector",
    "draw_faces",
    "draw_landmarks",
    "export_model",
    "fit_calibration",
]
