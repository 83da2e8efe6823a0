"""SynthFaces' one face: every protocol's points, their visibility and the outlines the renderer draws.

Evaluates the curves of :mod:`.curves` on the head of :mod:`.head` for one shape, expression and
pose. Visibility: a point is self-occluded when its surface normal faces away from the camera,
``n . v < -h`` (``v`` the unit vector to the camera; protruding points such as the nose tip stay
visible a little past the horizon, as they sit on the silhouette), or when the nose hides it.
Mirroring the pose mirrors the points: ``points(mirror_pose(p)) == protocol.flip(points(p), W)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from ..protocols import Protocol, get_protocol
from .curves import CURVES, PROTOCOL_POINTS, PointSet, point_set, template
from .head import Expression, Pose, Shape, cross, lift, project, rotation

__all__ = ["OUTLINES", "RINGS", "LAYOUT", "SLICES", "Geometry", "geometry", "nose_sides", "face_points"]


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
