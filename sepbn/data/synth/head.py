"""SynthFaces' head: a parametric 3-D face surface, its identity, expression and pose, and the camera.

Not from the paper: the embedded dataset that lets the pipeline (train, BN vs SepBN, CNT across
protocols, evaluation) run with no download, with pose sub-domains like AFLW's (paper Fig. 3)
whose proportions are known. :mod:`.curves` puts the facial features and every protocol's points
on this head; :mod:`.face` evaluates them for one face.

The head is a deformed ellipsoid (half-height 1, eyes at height 0, ``y`` down, the face looking
towards ``-z``). A surface point is addressed by its height ``Y`` and longitude ``phi``
(0 = straight ahead); the cross-section at height ``Y`` is an ellipse of half-axes
``w(Y) r`` and ``depth r`` with ``r = sqrt(1 - Y^2)`` and ``w(Y) = width (1 - taper max(Y, 0)^2)``
(the jaw narrows), and the lower front is pushed forward by ``chin_forward max(Y, 0)^2``::

    p(phi, Y) = (w(Y) r sin(phi),  Y,  -depth r cos(phi) - chin_forward max(Y,0)^2 ((1 + cos phi) / 2)^2)

A template point ``(X, Y, h)`` is lifted onto the surface (``sin(phi) = X / (w(Y) r)``) and moved
by ``h`` along the surface normal. Identity (:class:`Shape`) and expression (:class:`Expression`)
move the features; pose and camera (:class:`Pose`) rotate ``R = Rz(roll) Ry(yaw) Rx(pitch)`` about
the head centre and project with a pinhole camera whose principal point is the image centre
``((W - 1) / 2, (H - 1) / 2)`` plus a 2-D shift. Positive yaw turns the nose towards image right,
positive pitch looks up, roll is in-plane. The head is left-right symmetric and the principal point
is the image centre, so mirroring the pose (:func:`mirror_pose`: yaw, roll and shift_x negated)
mirrors the image.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

__all__ = ["Shape", "Expression", "Pose", "mirror_pose", "half_width", "surface", "surface_normals", "cross", "lift",
           "rotation", "project"]


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


def half_width(shape: Shape, Y: np.ndarray) -> np.ndarray:
    """The half-width of the head's cross-section at height ``Y``: ``w(Y) r`` (module doc)."""
    r = np.sqrt(np.clip(1.0 - Y * Y, 1e-6, None))
    return shape.width * (1.0 - shape.taper * np.maximum(Y, 0.0) ** 2) * r


def surface(shape: Shape, phi: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Surface points (..., 3) at longitude ``phi`` (radians) and height ``Y``."""
    r = np.sqrt(np.clip(1.0 - Y * Y, 0.0, None))
    c = np.cos(phi)
    x = half_width(shape, Y) * np.sin(phi)
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
    s = np.clip(X / half_width(shape, Y), -0.999, 0.999)
    phi = np.arcsin(s)
    n = surface_normals(shape, phi, Y)
    return surface(shape, phi, Y) + h[:, None] * n, n


# --- pose and camera ---------------------------------------------------------------------------


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
