"""SynthFaces geometry: a parametric 3-D face and every protocol's points on it.

Not from the paper: the embedded dataset that lets the pipeline (train, BN vs SepBN, CNT across
protocols, evaluation) run with no download, with pose sub-domains like AFLW's (paper Fig. 3)
whose proportions are known.

The head is a deformed ellipsoid (half-height 1, eyes at height 0, ``y`` down, the face looking
towards ``-z``). A surface point is addressed by its height ``Y`` and longitude ``phi``
(0 = straight ahead); the cross-section at height ``Y`` is an ellipse of half-axes
``w(Y) r`` and ``depth r`` with ``r = sqrt(1 - Y^2)`` and ``w(Y) = width (1 - taper max(Y, 0)^2)``
(the jaw narrows), and the lower front is pushed forward by ``chin_forward max(Y, 0)^2``::

    p(phi, Y) = (w(Y) r sin(phi),  Y,  -depth r cos(phi) - chin_forward max(Y,0)^2 ((1 + cos phi) / 2)^2)

Facial features are curves in a frontal template ``(X, Y, h)``: ``X`` the lateral position
(``sin(phi) = X / (w(Y) r)``), ``h`` an offset along the surface normal (the nose tip
protrudes, the eyes sit a little deeper). Identity (:class:`Shape`) and expression
(:class:`Expression`) move the curves; pose and camera (:class:`Pose`) rotate
``R = Rz(roll) Ry(yaw) Rx(pitch)`` about the head centre and project with a pinhole camera whose
principal point is the image centre ``((W - 1) / 2, (H - 1) / 2)`` plus a 2-D shift.
Positive yaw turns the nose towards image right, positive pitch looks up, roll is in-plane.

Every protocol samples the same curves (:data:`PROTOCOL_POINTS`), so one face is labelled in all
of them. Because the model is left-right symmetric and the principal point is the image centre,
mirroring the pose (:func:`mirror_pose`: yaw, roll and shift_x negated) mirrors the image:
``points(mirror) == protocol.flip(points, W)``. "Left" means image left of a frontal face
(``X < 0``), as in :mod:`sepbn.data.protocols`.

Visibility: a point is self-occluded when its surface normal faces away from the camera,
``n . v < -h`` (``v`` the unit vector to the camera; protruding points such as the nose tip stay
visible a little past the horizon, as they sit on the silhouette).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from typing import Callable, Sequence

import numpy as np

from ..protocols import PROTOCOLS, Protocol, get_protocol

__all__ = [
    "Shape",
    "Expression",
    "Pose",
    "CURVES",
    "PROTOCOL_POINTS",
    "PointSet",
    "point_set",
    "template",
    "surface",
    "surface_normals",
    "cross",
    "lift",
    "rotation",
    "project",
    "mirror_pose",
    "OUTLINES",
    "RINGS",
    "LAYOUT",
    "SLICES",
    "Geometry",
    "geometry",
    "nose_sides",
    "face_points",
]


@dataclass(frozen=True)
class Shape:
    """Identity: head and feature proportions, in head half-heights (eyes at Y = 0, chin near 1)."""

    width: float = 0.68  # head half-width at eye level
    depth: float = 0.88  # head half-depth
    taper: float = 0.40  # jaw narrowing towards the chin
    chin_forward: float = 0.18
    eye_spacing: float = 0.27  # eye centre |X|
    eye_width: float = 0.12  # half-width of the eye opening
    eye_height: float = 0.05  # upper-lid rise above the corners
    brow_height: float = 0.14  # brow centre line above the eye centre
    brow_thickness: float = 0.035
    brow_arch: float = 0.03
    nose_length: float = 0.42  # Y of the nose tip
    nose_protrusion: float = 0.24
    nose_width: float = 0.10
    mouth_y: float = 0.64
    mouth_width: float = 0.19
    lip_upper: float = 0.05
    lip_lower: float = 0.06
    chin_y: float = 0.93
    iris: float = 0.045


@dataclass(frozen=True)
class Expression:
    """Expression amounts: ``mouth_open``, ``smile`` and ``eyes_closed`` in [0, 1] (smile may be
    slightly negative, a frown), ``brows_raised`` in [-1, 1]."""

    mouth_open: float = 0.0
    smile: float = 0.0
    eyes_closed: float = 0.0
    brows_raised: float = 0.0


@dataclass(frozen=True)
class Pose:
    """Head pose (degrees), camera and placement.

    ``distance`` is the camera distance in head half-heights (smaller = stronger perspective);
    ``scale`` the focal length in pixels per head half-height at that distance; ``shift_x``,
    ``shift_y`` move the projected face from the image centre (pixels).
    """

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    distance: float = 8.0
    scale: float = 60.0
    shift_x: float = 0.0
    shift_y: float = 0.0


def mirror_pose(pose: Pose) -> Pose:
    """The pose whose image is the mirror image (x -> W - 1 - x) of ``pose``'s."""
    return replace(pose, yaw=-pose.yaw, roll=-pose.roll, shift_x=-pose.shift_x)


# --- the surface --------------------------------------------------------------------------------


def _half_width(shape: Shape, Y: np.ndarray) -> np.ndarray:
    r = np.sqrt(np.clip(1.0 - Y * Y, 1e-6, None))
    return shape.width * (1.0 - shape.taper * np.maximum(Y, 0.0) ** 2) * r


def surface(shape: Shape, phi: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Surface points (..., 3) at longitude ``phi`` (radians) and height ``Y``."""
    r = np.sqrt(np.clip(1.0 - Y * Y, 0.0, None))
    c = np.cos(phi)
    x = _half_width(shape, Y) * np.sin(phi)
    z = -shape.depth * r * c - shape.chin_forward * np.maximum(Y, 0.0) ** 2 * (0.5 + 0.5 * c) ** 2
    return np.stack([x, Y, z], axis=-1)


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.cross`` for (..., 3) arrays, written out (several times faster on small arrays)."""
    out = np.empty(np.broadcast_shapes(a.shape, b.shape))
    out[..., 0] = a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1]
    out[..., 1] = a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2]
    out[..., 2] = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    return out


def surface_normals(shape: Shape, phi: np.ndarray, Y: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    # Outward unit normal from the parameterisation: dp/dY x dp/dphi points out of the head.
    d_phi = surface(shape, phi + eps, Y) - surface(shape, phi - eps, Y)
    d_y = surface(shape, phi, Y + eps) - surface(shape, phi, Y - eps)
    n = cross(d_y, d_phi)
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)


def lift(shape: Shape, X: np.ndarray, Y: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Template points ``(X, Y, h)`` -> 3-D points (N, 3) and outward unit normals (N, 3)."""
    Y = np.clip(Y, -0.985, 0.985)
    s = np.clip(X / _half_width(shape, Y), -0.999, 0.999)
    phi = np.arcsin(s)
    n = surface_normals(shape, phi, Y)
    return surface(shape, phi, Y) + h[:, None] * n, n


# --- feature curves in the template (left side of the image; right side = mirror) --------------
# Each curve maps t in [0, 1] to (X, Y, h). Eye and brow curves run from the outer end (t = 0)
# to the inner end (t = 1); midline curves (jaw, lips, nose bottom) from image left to right.


def _jaw(s: Shape, e: Expression, t: np.ndarray):
    beta = (2 * t - 1) * (np.pi / 2)
    drop = 0.05 * e.mouth_open * np.cos(beta) ** 2
    y0 = 0.12
    Y = y0 + (s.chin_y - y0) * np.cos(beta) + drop
    X = np.sin(beta) * np.sin(np.radians(76.0)) * _half_width(s, Y)
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


def rotation(pose: Pose) -> np.ndarray:
    """``Rz(roll) Ry(yaw) Rx(pitch)``; positive yaw turns the nose (0, 0, -1) towards +x."""
    return _rotation(float(pose.yaw), float(pose.pitch), float(pose.roll))


@lru_cache(maxsize=256)
def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = np.radians([yaw, pitch, roll])
    cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    Ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    Rx = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
    Rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    R = Rz @ Ry @ Rx
    R.flags.writeable = False  # shared by the cache
    return R


def project(
    pts: np.ndarray, normals: np.ndarray | None, pose: Pose, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray | None]:
    """3-D head points (N, 3) -> pixels (N, 2) and, with normals, the facing ``n . v`` (N,)."""
    H, W = size
    R = rotation(pose)
    cam = pts @ R.T
    cam[:, 2] += pose.distance
    f = pose.scale * pose.distance
    z = np.maximum(cam[:, 2], 1e-3)
    uv = np.empty((len(pts), 2))
    uv[:, 0] = f * cam[:, 0] / z + (W - 1) / 2 + pose.shift_x
    uv[:, 1] = f * cam[:, 1] / z + (H - 1) / 2 + pose.shift_y
    if normals is None:
        return uv, None
    view = -cam / np.linalg.norm(cam, axis=1, keepdims=True)
    return uv, np.einsum("nd,nd->n", normals @ R.T, view)


# --- one face's geometry: every protocol's points and the outlines the renderer draws ------------

# name -> (curve, t values): dense outlines for drawing. Closed shapes list their halves in
# drawing order (upper lid outer -> inner, lower lid inner -> outer, ...).
OUTLINES: dict[str, tuple[str, np.ndarray]] = {}
for _side in "LR":
    OUTLINES.update({
        "eye_upper_" + _side: ("eye_upper_" + _side, np.linspace(0, 1, 9)),
        "eye_lower_" + _side: ("eye_lower_" + _side, np.linspace(1, 0, 9)),
        "brow_upper_" + _side: ("brow_upper_" + _side, np.linspace(0, 1, 7)),
        "brow_lower_" + _side: ("brow_lower_" + _side, np.linspace(1, 0, 7)),
        "pupil_" + _side: ("pupil_" + _side, np.zeros(1)),
        "nostril_" + _side: ("nostril_" + _side, np.zeros(1)),
        "nose_side_" + _side: ("nose_side_" + _side, np.linspace(1, 0, 4)),
    })
OUTLINES.update({
    "nose_bridge": ("nose_bridge", np.linspace(0, 1, 6)),
    "nose_bottom": ("nose_bottom", np.linspace(0, 1, 9)),
    "lip_outer_upper": ("lip_outer_upper", np.linspace(0, 1, 13)),
    "lip_outer_lower": ("lip_outer_lower", np.linspace(1, 0, 13)),
    "lip_inner_upper": ("lip_inner_upper", np.linspace(0, 1, 11)),
    "lip_inner_lower": ("lip_inner_lower", np.linspace(1, 0, 11)),
    "jaw": ("jaw", np.linspace(0, 1, 17)),
})
_RING = np.linspace(0, 2 * np.pi, 14, endpoint=False)
RINGS = ("iris_L", "pupil_ring_L", "iris_R", "pupil_ring_R")


def _layout() -> tuple[PointSet, dict[str, slice]]:
    samples: list[tuple[str, float]] = []
    slices: dict[str, slice] = {}
    named = [(n, list(p)) for n, p in PROTOCOL_POINTS.items()]
    named += [(k, [(c, float(t)) for t in ts]) for k, (c, ts) in OUTLINES.items()]
    for name, pts in named:
        slices[name] = slice(len(samples), len(samples) + len(pts))
        samples += pts
    n = len(samples)
    for k, name in enumerate(RINGS):  # appended after the curve samples by _rings()
        slices[name] = slice(n + k * len(_RING), n + (k + 1) * len(_RING))
    return point_set(samples), slices


LAYOUT, SLICES = _layout()


def _rings(shape: Shape, expr: Expression) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Iris and pupil outlines of both eyes (order of :data:`RINGS`), clipped to the eye opening."""
    upper, lower = CURVES["eye_upper_L"][0], CURVES["eye_lower_L"][0]
    X, Y = [], []
    for r in (shape.iris, 0.42 * shape.iris):
        x = -shape.eye_spacing + r * np.cos(_RING)
        t = np.clip((x + shape.eye_spacing + shape.eye_width) / (2 * shape.eye_width), 0, 1)
        X.append(x)
        Y.append(np.clip(0.012 + r * np.sin(_RING), upper(shape, expr, t)[1], lower(shape, expr, t)[1]))
    X = np.concatenate(X + [-x for x in X])
    Y = np.concatenate(Y + Y)
    return X, Y, np.full_like(X, -0.005)


@dataclass(frozen=True)
class Geometry:
    """Every :data:`LAYOUT` point of one face (plus the iris rings): pixels ``uv`` (N, 2), facing
    ``n . v`` (N,), 3-D head coordinates ``p3`` (N, 3) and normal offsets ``h`` (N,).
    ``geometry[name]`` gives the pixels of a protocol or outline by name."""

    uv: np.ndarray
    facing: np.ndarray
    p3: np.ndarray
    h: np.ndarray
    pose: Pose

    def __getitem__(self, name: str) -> np.ndarray:
        return self.uv[SLICES[name]]

    def visible(self, name: str) -> np.ndarray:
        """Self-visibility of the named points: facing the camera (protruding ones a bit past)
        and not behind the nose."""
        return self._visible[SLICES[name]]

    @cached_property
    def _visible(self) -> np.ndarray:
        vis = self.facing > -self.h
        if self.nose:
            behind = np.any([_inside(self.uv, poly) for _, poly in self.nose], axis=0)
            vis &= ~(behind & ~_NOSE)
        return vis

    @cached_property
    def nose(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """:func:`nose_sides` of this face (computed once)."""
        return nose_sides(self)

    def placed(self, scale: float, shift_x: float, shift_y: float, size: tuple[int, int]) -> "Geometry":
        """The same face with another focal scale and image shift (pixels are affine in both)."""
        H, W = size
        c = np.array([(W - 1) / 2, (H - 1) / 2])
        old = np.array([self.pose.shift_x, self.pose.shift_y])
        uv = (self.uv - c - old) * (scale / self.pose.scale) + c + [shift_x, shift_y]
        pose = replace(self.pose, scale=float(scale), shift_x=float(shift_x), shift_y=float(shift_y))
        return replace(self, uv=uv, pose=pose)


_NOSE = np.array([c.startswith(("nose", "nostril")) for c, _ in LAYOUT.samples] + [False] * (len(RINGS) * len(_RING)))


def _inside(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of points (N, 2) against a polygon (M, 2)."""
    x, y = pts[:, :1], pts[:, 1:2]
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.concatenate([x0[1:], x0[:1]]), np.concatenate([y0[1:], y0[:1]])
    crosses = (y0 > y) != (y1 > y)
    dy = np.where(y1 != y0, y1 - y0, 1.0)
    return (crosses & (x < x0 + (y - y0) * (x1 - x0) / dy)).sum(1) % 2 == 1


def nose_sides(g: Geometry) -> list[tuple[np.ndarray, np.ndarray]]:
    """The sides of the nose that face the camera, far one first: (unit normal in camera
    coordinates, image outline: bridge top to tip, nose bottom to the alar, up the cheek line).
    Points behind these outlines (the far eye's inner corner at large yaw) are hidden."""
    S, uv, p3 = SLICES, g.uv, g.p3
    R = rotation(g.pose)
    bridge, bottom = uv[S["nose_bridge"]], uv[S["nose_bottom"]]
    b3 = p3[S["nose_bottom"]]
    top3, tip3 = p3[S["nose_bridge"]][0], p3[S["nose_bridge"]][-1]
    mid = len(bottom) // 2
    sides = []
    for side, sign, half, alar3 in (("L", -1.0, bottom[mid::-1], b3[0]), ("R", 1.0, bottom[mid:], b3[-1])):
        n = cross(tip3 - top3, alar3 - top3)
        n = n * (np.sign(n[0]) * sign) / np.linalg.norm(n)
        nc = R @ n
        if -nc[2] > -0.05:
            sides.append((-nc[2], nc, np.concatenate([bridge, half, uv[S["nose_side_" + side]]])))
    return [(nc, poly) for _, nc, poly in sorted(sides, key=lambda t: t[0])]


def geometry(shape: Shape, expr: Expression, pose: Pose, size: tuple[int, int]) -> Geometry:
    """Evaluate every protocol point and drawing outline of a face in one pass."""
    X, Y, h = template(LAYOUT, shape, expr)
    rx, ry, rh = _rings(shape, expr)
    X, Y, h = np.concatenate([X, rx]), np.concatenate([Y, ry]), np.concatenate([h, rh])
    p3, n3 = lift(shape, X, Y, h)
    uv, facing = project(p3, n3, pose, size)
    return Geometry(uv, facing, p3, h, pose)


def face_points(
    protocol: str | Protocol, shape: Shape, expr: Expression, pose: Pose, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """A face's points in ``protocol``: pixels (L, 2) and self-visibility (L,) bool.

    >>> pts, vis = face_points("300w68", Shape(), Expression(), Pose(), (128, 128))
    >>> pts.shape, bool(vis.all()), bool(pts[36, 0] < pts[45, 0])
    ((68, 2), True, True)
    """
    name = get_protocol(protocol).name
    if name not in PROTOCOL_POINTS:
        raise ValueError(f"SynthFaces has no point definitions for protocol {name!r}; "
                         f"known: {sorted(PROTOCOL_POINTS)}")
    g = geometry(shape, expr, pose, size)
    return g[name], g.visible(name)
