"""SynthFaces' features: curves on the template of :mod:`.head` and every protocol's points on them.

Facial features are curves in a frontal template ``(X, Y, h)``: ``X`` the lateral position, ``Y``
the height, ``h`` an offset along the surface normal (the nose tip protrudes, the eyes sit a little
deeper). Every protocol samples the same curves (:data:`PROTOCOL_POINTS`), so one face is labelled
in all of them; "left" means image left of a frontal face (``X < 0``), as in
:mod:`sepbn.data.protocols`, and a right-side curve is its left curve mirrored, so a mirrored face
gives ``protocol.flip(points, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..protocols import PROTOCOLS
from .head import Expression, Shape, half_width

__all__ = ["CURVES", "PROTOCOL_POINTS", "PointSet", "point_set", "template"]


# --- feature curves in the template (left side of the image; right side = mirror) --------------
# Each curve maps t in [0, 1] to (X, Y, h). Eye and brow curves run from the outer end (t = 0)
# to the inner end (t = 1); midline curves (jaw, lips, nose bottom) from image left to right.


def _jaw(s: Shape, e: Expression, t: np.ndarray):
    beta = (2 * t - 1) * (np.pi / 2)
    drop = 0.05 * e.mouth_open * np.cos(beta) ** 2
    y0 = 0.12
    Y = y0 + (s.chin_y - y0) * np.cos(beta) + drop
    X = np.sin(beta) * np.sin(np.radians(76.0)) * half_width(s, Y)
    return X, Y, np.zeros_like(t)


def _eye_corners(s: Shape, t: np.ndarray):
    X = -s.eye_spacing - s.eye_width + 2 * s.eye_width * t
    Y = 0.02 - 0.012 * (1 - t)  # the outer corner sits slightly higher
    return X, Y


def _eye_upper(s: Shape, e: Expression, t: np.ndarray):
    X, Yc = _eye_corners(s, t)
    bump = np.sin(np.pi * t ** 0.85)
    open_y = Yc - s.eye_height * bump
    closed_y = Yc + 0.6 * s.eye_height * 0.6 * bump
    return X, open_y + e.eyes_closed * (closed_y - open_y), np.full_like(t, -0.01)


def _eye_lower(s: Shape, e: Expression, t: np.ndarray):
    X, Yc = _eye_corners(s, t)
    return X, Yc + 0.7 * s.eye_height * np.sin(np.pi * t ** 0.95), np.full_like(t, -0.01)


def _pupil(s: Shape, e: Expression, t: np.ndarray):
    X = np.full_like(t, -s.eye_spacing)
    return X, np.full_like(t, 0.012), np.full_like(t, 0.0)


def _brow_centre(s: Shape, e: Expression, t: np.ndarray):
    X = -s.eye_spacing - 1.15 * s.eye_width + (1.15 * s.eye_width + s.eye_spacing - 0.07) * t
    Y = -s.brow_height - 0.05 * e.brows_raised - s.brow_arch * np.sin(np.pi * np.clip(t, 0, 1) ** 0.7)
    half = 0.5 * s.brow_thickness * (0.45 + 0.75 * t)
    return X, Y, half


def _brow_upper(s: Shape, e: Expression, t: np.ndarray):
    X, Y, half = _brow_centre(s, e, t)
    return X, Y - half, np.full_like(t, 0.03)


def _brow_lower(s: Shape, e: Expression, t: np.ndarray):
    X, Y, half = _brow_centre(s, e, t)
    return X, Y + half, np.full_like(t, 0.03)


def _brow_mid(s: Shape, e: Expression, t: np.ndarray):
    X, Y, _ = _brow_centre(s, e, t)
    return X, Y, np.full_like(t, 0.03)


def _nose_bridge(s: Shape, e: Expression, t: np.ndarray):
    Y = -0.02 + (s.nose_length + 0.02) * t
    h = 0.02 + (s.nose_protrusion - 0.02) * t ** 1.6
    return np.zeros_like(t), Y, h


def _nose_bottom(s: Shape, e: Expression, t: np.ndarray):
    u = 2 * t - 1
    X = s.nose_width * u
    bump = 1 - u * u
    Y = s.nose_length + 0.045 + 0.025 * bump
    return X, Y, 0.05 + 0.09 * bump


def _nostril(s: Shape, e: Expression, t: np.ndarray):
    X = np.full_like(t, -0.5 * s.nose_width)
    return X, np.full_like(t, s.nose_length + 0.06), np.full_like(t, 0.09)


def _nose_side(s: Shape, e: Expression, t: np.ndarray):
    # Where the side of the nose meets the cheek (rendering only): from the inner eye corner down.
    X = -0.09 - (s.nose_width - 0.09 + 0.01) * t
    return X, 0.05 + (s.nose_length - 0.01) * t, np.full_like(t, 0.0)


def _mouth_line(s: Shape, e: Expression, u: np.ndarray):
    corner_y = s.mouth_y - 0.045 * e.smile
    return s.mouth_width * (1 + 0.15 * e.smile) * u, s.mouth_y + (corner_y - s.mouth_y) * u * u


def _lip_outer_upper(s: Shape, e: Expression, t: np.ndarray):
    u = 2 * t - 1
    X, line = _mouth_line(s, e, u)
    bow = (1 - u * u) ** 0.6 * (1 - 0.3 * np.exp(-((u / 0.18) ** 2)))
    return X, line - s.lip_upper * bow, 0.06 + 0.03 * (1 - u * u)


def _lip_outer_lower(s: Shape, e: Expression, t: np.ndarray):
    u = 2 * t - 1
    X, line = _mouth_line(s, e, u)
    w = 1 - u * u
    return X, line + s.lip_lower * w ** 0.7 + 0.11 * e.mouth_open * w ** 0.8, 0.05 + 0.03 * w


def _inner_u(s: Shape, t: np.ndarray) -> np.ndarray:
    return (2 * t - 1) * (1 - 0.05 / s.mouth_width)  # inner corners sit just inside the outer


def _lip_inner_upper(s: Shape, e: Expression, t: np.ndarray):
    u = _inner_u(s, t)
    X, line = _mouth_line(s, e, u)
    return X, line - 0.012 * e.mouth_open * (1 - u * u), np.full_like(t, 0.05)


def _lip_inner_lower(s: Shape, e: Expression, t: np.ndarray):
    u = _inner_u(s, t)
    X, line = _mouth_line(s, e, u)
    return X, line + 0.10 * e.mouth_open * (1 - u * u) ** 0.8, np.full_like(t, 0.05)


Curve = Callable[[Shape, Expression, np.ndarray], tuple]

# name -> (curve, mirrored). A mirrored ("_R") curve is the left curve with X negated.
CURVES: dict[str, tuple[Curve, bool]] = {"jaw": (_jaw, False)}
for _name, _fn in {
    "eye_upper": _eye_upper, "eye_lower": _eye_lower, "pupil": _pupil,
    "brow_upper": _brow_upper, "brow_lower": _brow_lower, "brow_mid": _brow_mid,
    "nostril": _nostril, "nose_side": _nose_side,
}.items():
    CURVES[_name + "_L"] = (_fn, False)
    CURVES[_name + "_R"] = (_fn, True)
for _name, _fn in {
    "nose_bridge": _nose_bridge, "nose_bottom": _nose_bottom,
    "lip_outer_upper": _lip_outer_upper, "lip_outer_lower": _lip_outer_lower,
    "lip_inner_upper": _lip_inner_upper, "lip_inner_lower": _lip_inner_lower,
}.items():
    CURVES[_name] = (_fn, False)


# --- protocol point definitions ------------------------------------------------------------------


def _on(curve: str, ts: Sequence[float]) -> list[tuple[str, float]]:
    return [(curve, float(t)) for t in ts]


def _lin(n: int, reverse: bool = False) -> list[float]:
    ts = list(np.linspace(0.0, 1.0, n))
    return ts[::-1] if reverse else ts


def _eye(side: str, upper: Sequence[float], lower: Sequence[float]) -> list[tuple[str, float]]:
    """An eye contour in protocol order. Left eye: outer corner, upper lid towards the inner
    corner, inner corner, lower lid back (``lower`` runs inner -> outer). Right eye: inner corner,
    upper lid outwards, outer corner, lower lid back inwards."""
    if side == "L":
        return _on("eye_upper_L", [0.0, *upper, 1.0]) + _on("eye_lower_L", lower)
    return _on("eye_upper_R", [1.0, *upper[::-1], 0.0]) + _on("eye_lower_R", lower[::-1])


def _mouth(n_outer: int, n_inner: int) -> list[tuple[str, float]]:
    """Outer lip: left corner, ``n_outer`` upper-lip points, right corner, ``n_outer`` lower-lip
    points back to the left; then the inner lip the same way with ``n_inner``."""
    o = _lin(n_outer + 2)[1:-1]
    i = _lin(n_inner + 2)[1:-1]
    return (_on("lip_outer_upper", [0.0, *o, 1.0]) + _on("lip_outer_lower", o[::-1])
            + _on("lip_inner_upper", [0.0, *i, 1.0]) + _on("lip_inner_lower", i[::-1]))


_68 = (
    _on("jaw", _lin(17))
    + _on("brow_upper_L", _lin(5)) + _on("brow_upper_R", _lin(5, reverse=True))
    + _on("nose_bridge", _lin(4)) + _on("nose_bottom", _lin(5))
    + _eye("L", [1 / 3, 2 / 3], [2 / 3, 1 / 3]) + _eye("R", [1 / 3, 2 / 3], [2 / 3, 1 / 3])
    + _mouth(5, 3)
)
_98 = (
    _on("jaw", _lin(33))
    + _on("brow_upper_L", _lin(5)) + _on("brow_lower_L", [0.8, 0.6, 0.4, 0.2])
    + _on("brow_upper_R", _lin(5, reverse=True)) + _on("brow_lower_R", [0.2, 0.4, 0.6, 0.8])
    + _on("nose_bridge", _lin(4)) + _on("nose_bottom", _lin(5))
    + _eye("L", [0.25, 0.5, 0.75], [0.75, 0.5, 0.25]) + _eye("R", [0.25, 0.5, 0.75], [0.75, 0.5, 0.25])
    + _mouth(5, 3)
    + [("pupil_L", 0.0), ("pupil_R", 0.0)]
)
_29 = [
    ("brow_mid_L", 0.0), ("brow_mid_R", 0.0), ("brow_mid_L", 1.0), ("brow_mid_R", 1.0),
    ("brow_upper_L", 0.5), ("brow_lower_L", 0.5), ("brow_upper_R", 0.5), ("brow_lower_R", 0.5),
    ("eye_upper_L", 0.0), ("eye_upper_R", 0.0), ("eye_upper_L", 1.0), ("eye_upper_R", 1.0),
    ("eye_upper_L", 0.5), ("eye_lower_L", 0.5), ("eye_upper_R", 0.5), ("eye_lower_R", 0.5),
    ("pupil_L", 0.0), ("pupil_R", 0.0), ("nostril_L", 0.0), ("nostril_R", 0.0),
    ("nose_bridge", 1.0), ("nose_bottom", 0.5), ("lip_outer_upper", 0.0), ("lip_outer_upper", 1.0),
    ("lip_outer_upper", 0.5), ("lip_inner_upper", 0.5), ("lip_inner_lower", 0.5),
    ("lip_outer_lower", 0.5), ("jaw", 0.5),
]
_19 = [
    ("brow_mid_L", 0.0), ("brow_mid_L", 0.5), ("brow_mid_L", 1.0),
    ("brow_mid_R", 1.0), ("brow_mid_R", 0.5), ("brow_mid_R", 0.0),
    ("eye_upper_L", 0.0), ("pupil_L", 0.0), ("eye_upper_L", 1.0),
    ("eye_upper_R", 1.0), ("pupil_R", 0.0), ("eye_upper_R", 0.0),
    ("nose_bottom", 0.0), ("nose_bridge", 1.0), ("nose_bottom", 1.0),
    ("lip_outer_upper", 0.0), ("lip_inner_upper", 0.5), ("lip_outer_upper", 1.0), ("jaw", 0.5),
]
_5 = [("pupil_L", 0.0), ("pupil_R", 0.0), ("nose_bridge", 1.0),
      ("lip_outer_upper", 0.0), ("lip_outer_upper", 1.0)]

# protocol name -> one (curve, t) per point, in the protocol's order.
PROTOCOL_POINTS: dict[str, tuple[tuple[str, float], ...]] = {
    "300w68": tuple(_68), "wflw98": tuple(_98), "cofw29": tuple(_29), "aflw19": tuple(_19),
    "5pt": tuple(_5),
}
for _p, _pts in PROTOCOL_POINTS.items():
    if len(_pts) != PROTOCOLS[_p].num_points:  # a wrong table must fail at import, not in training
        raise ValueError(f"SynthFaces defines {len(_pts)} points for {_p}, the protocol has "
                         f"{PROTOCOLS[_p].num_points}")


# --- evaluation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PointSet:
    """A fixed list of (curve, t) samples, grouped by curve for vectorised evaluation."""

    samples: tuple[tuple[str, float], ...]
    groups: tuple[tuple[str, np.ndarray, np.ndarray], ...]  # (curve, t values, output indices)

    def __len__(self) -> int:
        return len(self.samples)


def point_set(samples: Sequence[tuple[str, float]]) -> PointSet:
    """Group ``samples`` by curve (unknown curve names raise ValueError)."""
    by_curve: dict[str, list[int]] = {}
    for k, (curve, _) in enumerate(samples):
        if curve not in CURVES:
            raise ValueError(f"unknown SynthFaces curve {curve!r}; known: {sorted(CURVES)}")
        by_curve.setdefault(curve, []).append(k)
    groups = tuple(
        (c, np.array([samples[k][1] for k in idx], dtype=np.float64), np.array(idx))
        for c, idx in by_curve.items()
    )
    return PointSet(tuple(samples), groups)


def template(points: PointSet, shape: Shape, expr: Expression) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Template coordinates ``(X, Y, h)`` of every sample, each (N,)."""
    out = np.empty((3, len(points)), dtype=np.float64)
    for curve, ts, idx in points.groups:
        fn, mirrored = CURVES[curve]
        X, Y, h = fn(shape, expr, ts)
        out[0, idx] = -X if mirrored else X
        out[1, idx] = Y
        out[2, idx] = h
    return out[0], out[1], out[2]
