"""SynthFaces drawing: what one face looks like (:class:`Look`) and the OpenCV primitives every part of it is
drawn with (anti-aliased, sub-pixel: coordinates carry ``SHIFT`` fractional bits)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Look", "Colour", "SHIFT", "fixed_point", "fill_poly", "draw_line", "rgb", "mix", "scaled"]

Colour = tuple[float, float, float]
SHIFT = 4  # sub-pixel bits for cv2 drawing


@dataclass(frozen=True)
class Look:
    """Appearance of one face (colours are RGB 0-255).

    ``light`` is the unit direction towards the light in camera coordinates (x right, y down,
    z away from the camera: a light behind the camera has z < 0); the shading of a quad with
    normal ``n`` is ``ambient + diffuse * max(0, n . light)``. ``occluder`` is one of
    :data:`~sepbn.data.synth.effects.OCCLUDERS` or None; ``blur`` a Gaussian sigma in pixels (``motion_blur`` a kernel
    length, 0 = none); ``noise`` a sensor-noise sigma in grey levels.
    """

    seed: int = 0
    skin: Colour = (205.0, 160.0, 135.0)
    hair: Colour = (60.0, 40.0, 30.0)
    lips: Colour = (170.0, 90.0, 90.0)
    iris: Colour = (70.0, 90.0, 60.0)
    clothes: Colour = (60.0, 80.0, 140.0)
    eye_shadow: Colour | None = None
    hairline: float = -0.42
    long_hair: float = 0.0
    light: tuple[float, float, float] = (-0.3, -0.4, -0.87)
    ambient: float = 0.45
    diffuse: float = 0.6
    occluder: str | None = None
    occluder_at: tuple[float, float] = (0.0, 0.4)  # in the face's template (X, Y)
    occluder_size: float = 0.35
    blur: float = 0.0
    motion_blur: int = 0
    noise: float = 3.0
    brightness: float = 0.0
    contrast: float = 1.0
    jpeg_quality: int = 90


def fixed_point(pts: np.ndarray) -> np.ndarray:
    """Points (..., 2) as OpenCV's fixed-point polygon (P, 1, 2) int32 with ``SHIFT`` fractional bits."""
    return np.round(np.asarray(pts) * (1 << SHIFT)).astype(np.int32).reshape(-1, 1, 2)


def fill_poly(img: np.ndarray, pts: np.ndarray, colour) -> None:
    """Fill the polygon ``pts`` (P, 2), anti-aliased, in place."""
    cv2.fillPoly(img, [fixed_point(pts)], rgb(colour), cv2.LINE_AA, SHIFT)


def draw_line(img: np.ndarray, pts: np.ndarray, colour, thickness: float) -> None:
    """Draw the open polyline ``pts`` (P, 2), anti-aliased, at least one pixel thick, in place."""
    cv2.polylines(img, [fixed_point(pts)], False, rgb(colour), max(1, int(round(thickness))), cv2.LINE_AA, SHIFT)


def rgb(colour) -> tuple[float, float, float]:
    """A colour clipped to 0-255, as the float triple OpenCV takes."""
    return tuple(float(min(255.0, max(0.0, v))) for v in colour)


def mix(a, b, t: float):
    """The colour (1 - t) a + t b."""
    return tuple((1 - t) * x + t * y for x, y in zip(a, b))


def scaled(colour, k: float):
    """The colour times ``k`` (shading; clipped when drawn)."""
    return tuple(v * k for v in colour)
