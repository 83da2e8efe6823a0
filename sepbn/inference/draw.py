"""Draw predicted landmarks and face boxes on an image (RGB uint8, a copy is returned).

Points are drawn at sub-pixel precision (``cv2.circle`` with ``shift``), in the package's pixel
convention (pixel ``(i, j)`` centred at ``x = j, y = i``), so a drawn point sits where the
landmark is, not rounded to the pixel grid.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

__all__ = ["draw_landmarks", "draw_faces"]

_SHIFT = 4  # fractional bits of cv2's sub-pixel drawing
_ONE = 1 << _SHIFT


def _fixed(x: float) -> int:
    return int(round(float(x) * _ONE))


def draw_landmarks(image: np.ndarray, landmarks: np.ndarray, *, box: Sequence[float] | None = None,
                   color: tuple[int, int, int] = (0, 255, 0), box_color: tuple[int, int, int] = (255, 64, 0),
                   radius: float | None = None, thickness: int = -1, copy: bool = True) -> np.ndarray:
    """Draw one face: ``landmarks`` (L, 2) original pixels, optional ``box`` (x0, y0, x1, y1).

    ``radius`` defaults to 1/80 of the box side (at least 1 px), so points stay visible on large
    faces and do not cover small ones.
    """
    out = np.array(image, dtype=np.uint8, copy=True) if copy else image
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if radius is None:
        if box is not None:
            side = float(box[2] - box[0])
        else:
            side = float(np.ptp(pts[:, 0])) if len(pts) else 80.0
        radius = max(1.0, float(side) / 80.0)
    if box is not None:
        x0, y0, x1, y1 = (_fixed(v) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), box_color, max(1, int(round(radius / 2))), cv2.LINE_AA, _SHIFT)
    for x, y in pts:
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(out, (_fixed(x), _fixed(y)), _fixed(radius), color, thickness, cv2.LINE_AA, _SHIFT)
    return out


def draw_faces(image: np.ndarray, faces: Sequence, *, boxes: bool = True, **kwargs) -> np.ndarray:
    """Draw every :class:`~sepbn.inference.predictor.FaceLandmarks` of ``faces`` on a copy of ``image``."""
    out = np.array(image, dtype=np.uint8, copy=True)
    for face in faces:
        draw_landmarks(out, face.landmarks, box=face.box if boxes else None, copy=False, **kwargs)
    return out
