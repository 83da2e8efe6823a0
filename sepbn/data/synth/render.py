"""SynthFaces appearance: rasterise a face of :mod:`sepbn.data.synth.face` with OpenCV.

Not from the paper (see head.py). Drawing order, back to front: cluttered background, long
hair and torso, neck, the head mesh (back-face culled quads of the ellipsoid, Lambertian
``ambient + diffuse max(0, n . l)`` shading computed per quad at a quarter resolution and
upsampled, hair quads above the hairline), ears, features (brows, make-up, eyes with clipped
iris and pupil, nose sides shaded by their own normal, lips and the open mouth), an occluder
(sunglasses, hand, medical mask or object), then blur, sensor noise and a brightness change.
A feature whose points face away from the camera is not drawn (the far eye at large yaw).

The occluder is also drawn into a mask; a landmark on the mask is occluded (COFW's flags).
Everything random in the image (clutter, occluder details) comes from ``Look.seed``, so
:func:`render` is a pure function of its arguments. JPEG artefacts come from saving the image
with ``Look.jpeg_quality`` (done by the generator).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .face import SLICES, Geometry, geometry
from .head import Expression, Pose, Shape, cross, lift, project, rotation, surface

__all__ = ["Look", "OCCLUDERS", "render", "occluded"]

OCCLUDERS = ("sunglasses", "hand", "mask", "object")
Colour = tuple[float, float, float]


@dataclass(frozen=True)
class Look:
    """Appearance of one face (colours are RGB 0-255).

    ``light`` is the unit direction towards the light in camera coordinates (x right, y down,
    z away from the camera: a light behind the camera has z < 0); the shading of a quad with
    normal ``n`` is ``ambient + diffuse * max(0, n . light)``. ``occluder`` is one of
    :data:`OCCLUDERS` or None; ``blur`` a Gaussian sigma in pixels (``motion_blur`` a kernel
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


def _quad_indices(rows: int, cols: int) -> np.ndarray:
    """Vertex indices (Q, 4) of the quads of a (rows, cols) vertex grid, row-major."""
    q = np.arange((rows - 1) * (cols - 1))
    i, j = q // (cols - 1), q % (cols - 1)
    return np.stack([i * cols + j, i * cols + j + 1, (i + 1) * cols + j + 1, (i + 1) * cols + j], 1)


def _parity(rows: int, cols: int) -> np.ndarray:
    """Quad classes 0-3 by (row, column) parity: quads of one class never share an edge or corner."""
    q = np.arange((rows - 1) * (cols - 1))
    return (q // (cols - 1)) % 2 * 2 + (q % (cols - 1)) % 2


# Head mesh: a (Y, phi) grid whose first and last columns coincide (phi = -pi, pi).
_PHI = np.linspace(-np.pi, np.pi, 29)
_MY, _MP = np.meshgrid(np.linspace(-0.985, 0.985, 15), _PHI, indexing="ij")
_QUADS = _quad_indices(*_MY.shape)
_HEAD_PARITY = _parity(*_MY.shape)
_QUAD_Y, _QUAD_PHI = _MY.ravel()[_QUADS], _MP.ravel()[_QUADS]  # (Q, 4) each
# Hair mesh: rows from the crown (s = 0) down to the hairline (s = 1), so its edge is the hairline.
_HAIR_S = np.linspace(0.0, 1.0, 9)[:, None]
_HAIR_QUADS = _quad_indices(len(_HAIR_S), len(_PHI))
_HAIR_PARITY = _parity(len(_HAIR_S), len(_PHI))
_NECK = np.linspace(0, 2 * np.pi, 10, endpoint=False)
_SHIFT = 4  # sub-pixel bits for cv2 drawing
_NOISE = np.random.default_rng(12345).normal(128, 32, (512, 512, 3)).clip(0, 255).astype(np.uint8)


def _fix(pts: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(pts) * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)


def _fill(img: np.ndarray, pts: np.ndarray, colour) -> None:
    cv2.fillPoly(img, [_fix(pts)], _c(colour), cv2.LINE_AA, _SHIFT)


def _line(img: np.ndarray, pts: np.ndarray, colour, thickness: float) -> None:
    cv2.polylines(img, [_fix(pts)], False, _c(colour), max(1, int(round(thickness))), cv2.LINE_AA, _SHIFT)


def _c(colour) -> tuple[float, float, float]:
    return tuple(float(min(255.0, max(0.0, v))) for v in colour)


def _mix(a, b, t: float):
    return tuple((1 - t) * x + t * y for x, y in zip(a, b))


def _scaled(colour, k: float):
    return tuple(v * k for v in colour)


# --- background and body -------------------------------------------------------------------------


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    H, W = size
    corners = rng.uniform(20, 235, (2, 2, 3)).astype(np.float32)
    img = cv2.resize(corners, (W, H), interpolation=cv2.INTER_LINEAR).astype(np.uint8)
    for _ in range(int(rng.integers(2, 9))):
        colour = _c(rng.uniform(0, 255, 3))
        kind = int(rng.integers(0, 4))
        x, y = rng.uniform(0, W), rng.uniform(0, H)
        r = rng.uniform(0.05, 0.4) * W
        if kind == 0:
            cv2.circle(img, (int(x), int(y)), int(r), colour, -1, cv2.LINE_AA)
        elif kind == 1:
            box = ((x, y), (r, rng.uniform(0.05, 0.4) * W), rng.uniform(0, 180))
            _fill(img, cv2.boxPoints(box), colour)
        elif kind == 2:
            x2, y2 = rng.uniform(0, W), rng.uniform(0, H)
            cv2.line(img, (int(x), int(y)), (int(x2), int(y2)), colour, int(rng.integers(1, 8)), cv2.LINE_AA)
        else:
            _fill(img, np.array([x, y]) + rng.uniform(-r, r, (int(rng.integers(3, 7)), 2)), colour)
    return img


def _project(pose: Pose, size, pts3) -> np.ndarray:
    return project(np.asarray(pts3, dtype=np.float64), None, pose, size)[0]


def _body(img: np.ndarray, shape: Shape, pose: Pose, look: Look) -> None:
    """Torso (turns less than the head), long hair behind the head, and the neck."""
    size = img.shape[:2]
    k = shape.width / 0.68
    body_pose = Pose(pose.yaw * 0.4, 0.0, pose.roll * 0.5, pose.distance, pose.scale, pose.shift_x, pose.shift_y)
    torso = [(-0.5, 1.5, 0.3), (0.5, 1.5, 0.3), (1.9, 2.1, 0.3), (2.1, 5.0, 0.3), (-2.1, 5.0, 0.3), (-1.9, 2.1, 0.3)]
    _fill(img, _project(body_pose, size, np.array(torso) * [k, 1, 1]), look.clothes)
    if look.long_hair > 0:
        L = 0.4 + look.long_hair
        hair = [(-1.02, -0.3, 0.25), (1.02, -0.3, 0.25), (1.1, L, 0.45), (-1.1, L, 0.45)]
        _fill(img, _project(pose, size, np.array(hair) * [shape.width, 1, 1]), _scaled(look.hair, 0.8))
    # the neck is a cylinder (its outline: the hull of two projected rings), not a flat card
    ring = np.stack([0.42 * k * np.cos(_NECK), np.zeros_like(_NECK), 0.2 + 0.36 * np.sin(_NECK)], 1)
    neck = _project(pose, size, np.concatenate([ring + [0, 0.3, 0], ring * [1.1, 1, 1.1] + [0, 1.9, 0]]))
    _fill(img, cv2.convexHull(neck.astype(np.float32)).reshape(-1, 2), _scaled(look.skin, 0.62))


def _ear(shape: Shape, pose: Pose, size, side: int) -> tuple[np.ndarray, float]:
    """Outline (pixels) of one ear (side -1 = image left) and how much it faces the camera."""
    th = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    w = shape.width * (1 - shape.taper * 0.13 ** 2) * np.sqrt(1 - 0.13 ** 2)
    x = side * (w + 0.02 + 0.06 * (0.5 + 0.5 * np.sin(th)))
    pts = np.stack([x, 0.13 - 0.17 * np.cos(th), 0.12 + 0.09 * np.sin(th)], 1)
    n = np.array([side * 1.0, 0.0, 0.35]) / np.hypot(1.0, 0.35)
    uv, facing = project(np.vstack([pts, pts.mean(0, keepdims=True)]), np.tile(n, (13, 1)), pose, size)
    return uv[:12], float(facing[-1])


# --- the head mesh -------------------------------------------------------------------------------


def _above(Y: np.ndarray, phi: np.ndarray, look: Look) -> np.ndarray:
    """Quads (rows of (Q, 4) vertex heights and longitudes) wholly above the hairline."""
    return (Y < _hairline(look, phi)).all(axis=1)


def _hairline(look: Look, phi: np.ndarray) -> np.ndarray:
    """Height of the hairline at longitude ``phi``: low at the back, high on the forehead."""
    return look.hairline + 0.75 * np.clip((np.abs(phi) - 1.0) / 1.4, 0, 1)


def _grid(shape: Shape, phi: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and outward normals (rows * cols, 3) of a surface grid spanning all longitudes
    (first column = last column), normals from neighbouring vertices."""
    grid = surface(shape, phi, Y)
    d_phi = np.empty_like(grid)
    d_phi[:, 1:-1] = grid[:, 2:] - grid[:, :-2]
    d_phi[:, 0] = d_phi[:, -1] = grid[:, 1] - grid[:, -2]
    d_y = np.empty_like(grid)
    d_y[1:-1] = grid[2:] - grid[:-2]
    d_y[0], d_y[-1] = grid[1] - grid[0], grid[-1] - grid[-2]
    normals = cross(d_y, d_phi).reshape(-1, 3)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return grid.reshape(-1, 3), normals


def _fill_quads(mask: np.ndarray, quads: np.ndarray, parity: np.ndarray) -> None:
    """Fill quads (Q, 4, 2) into a mask. One ``fillPoly`` call treats overlapping polygons as
    holes (even-odd), and quads folding over at the outline overlap their neighbours: one call
    per parity class keeps neighbours apart."""
    fixed = _fix(quads).reshape(-1, 4, 1, 2)
    for k in range(4):
        sel = parity == k
        if sel.any():
            cv2.fillPoly(mask, list(fixed[sel]), 255, cv2.LINE_8, _SHIFT)


def _hair_quads(shape: Shape, pose: Pose, look: Look, size) -> tuple[np.ndarray, np.ndarray]:
    """Image quads (Q, 4, 2) of the visible hair (a mesh from the crown to the hairline) and
    their parity classes."""
    top = -1.0  # from the pole itself: no bald spot on the crown
    Yh = np.maximum(_hairline(look, _PHI), top)
    verts, normals = _grid(shape, np.broadcast_to(_PHI, (len(_HAIR_S), len(_PHI))), top + _HAIR_S * (Yh - top))
    uv, facing = project(verts, normals, pose, size)
    # a little past the horizon, so that no skin shows between the hair and the head's outline
    # (the head mask clips what lies outside)
    keep = facing[_HAIR_QUADS].mean(1) > -0.2
    return uv[_HAIR_QUADS[keep]], _HAIR_PARITY[keep]


def _head(img: np.ndarray, shape: Shape, pose: Pose, look: Look) -> "_Shading":
    """Draw the shaded head (hair above the hairline); return its shading map."""
    H, W = img.shape[:2]
    verts, normals = _grid(shape, _MP, _MY)
    uv, facing = project(verts, normals, pose, (H, W))
    keep = facing[_QUADS].mean(1) > 0.0  # back-face culling: the head is convex
    quads = uv[_QUADS[keep]]
    qn = (normals @ rotation(pose).T)[_QUADS[keep]].mean(1)
    shade = look.ambient + look.diffuse * np.clip(qn @ np.asarray(look.light, dtype=np.float64), 0, None)
    hair, hair_parity = _hair_quads(shape, pose, look, (H, W))
    if len(hair):  # hair volume: the hair's outline a little larger, behind the head
        c = quads.reshape(-1, 2).mean(0)
        hull = cv2.convexHull(hair.reshape(-1, 2).astype(np.float32)).reshape(-1, 2)
        _fill(img, c + (hull - c) * 1.1, _scaled(look.hair, 0.7))

    # the face region only (a box around the projected quads)
    x0, y0 = np.floor(quads.reshape(-1, 2).min(0)).astype(int) - 2
    x1, y1 = np.ceil(quads.reshape(-1, 2).max(0)).astype(int) + 3
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return _Shading(np.zeros((1, 1), np.float32), 0, 0, look.ambient)
    local = quads - [x0, y0]
    h, w = y1 - y0, x1 - x0

    # shading at quarter resolution: quantised flat quads, smoothed by a normalised Gaussian
    # blur inside the head (no dark rim), upsampled
    q, k = 4, 16.0
    low = np.zeros((h // q + 2, w // q + 2), np.uint8)
    levels = np.clip(np.round(shade * k), 1, 255).astype(np.int32)
    lowq = _fix(local / q).reshape(-1, 4, 1, 2)
    for lv in np.unique(levels):
        cv2.fillPoly(low, list(lowq[levels == lv]), int(lv), cv2.LINE_8, _SHIFT)
    sigma = max(0.6, 0.02 * pose.scale / q)
    lowf = low.astype(np.float32)
    inside = (low > 0).astype(np.float32)
    lowf = cv2.GaussianBlur(lowf, (0, 0), sigma) / np.maximum(cv2.GaussianBlur(inside, (0, 0), sigma), 1e-3)
    up = cv2.resize(lowf, ((w // q + 2) * q, (h // q + 2) * q), interpolation=cv2.INTER_LINEAR)
    sh = up[:h, :w] * (1.0 / k)

    colour = np.empty((h, w, 3), np.float32)
    colour[:] = np.array(_c(look.skin), np.float32)
    if len(hair):
        hair_mask = np.zeros((h, w), np.uint8)
        _fill_quads(hair_mask, hair - [x0, y0], hair_parity)
        # head quads wholly above the hairline too: they reach the head's outline exactly
        cap = keep & _above(_QUAD_Y, _QUAD_PHI, look)
        _fill_quads(hair_mask, uv[_QUADS[cap]] - [x0, y0], _HEAD_PARITY[cap])
        # a 1 px dilation closes the seams between quads and the gap left by their chords at
        # the outline (the head mask clips the rest)
        hair_mask = cv2.dilate(hair_mask, np.ones((3, 3), np.uint8))
        colour[hair_mask > 0] = np.array(_c(look.hair), np.float32)
    lit = cv2.convertScaleAbs(cv2.multiply(colour, cv2.merge([sh, sh, sh])))
    mask = np.zeros((h, w), np.uint8)
    hull = cv2.convexHull(local.reshape(-1, 2).astype(np.float32)).reshape(-1, 2)
    cv2.fillConvexPoly(mask, _fix(hull), 255, cv2.LINE_8, _SHIFT)  # the head is convex
    roi = img[y0:y1, x0:x1]
    cv2.copyTo(lit, mask, roi)
    return _Shading(sh, x0, y0, look.ambient)


@dataclass(frozen=True)
class _Shading:
    """The head's shading factor in a box at (x0, y0); ``default`` outside it."""

    values: np.ndarray
    x0: int
    y0: int
    default: float

    def at(self, pts: np.ndarray) -> float:
        x, y = np.asarray(pts, dtype=np.float64).mean(0) - [self.x0, self.y0]
        h, w = self.values.shape
        if not (0 <= x < w and 0 <= y < h):
            return max(0.3, self.default)
        return max(0.3, float(self.values[int(y), int(x)]) or self.default)


# --- facial features -----------------------------------------------------------------------------


def _features(img, shading: "_Shading", g: Geometry, expr: Expression, look: Look) -> None:
    H, W = img.shape[:2]
    S, uv, facing, pose = SLICES, g.uv, g.facing, g.pose
    px = pose.scale  # pixels per head unit: line widths scale with the face
    dark = (35.0, 25.0, 25.0)

    shade_at = shading.at
    def faces(*keys: str) -> float:
        return float(np.mean(np.concatenate([facing[S[k]] for k in keys])))

    def pts(*keys: str) -> np.ndarray:
        return np.concatenate([uv[S[k]] for k in keys])

    brow_colour = _mix(look.hair, look.skin, 0.25)
    for side in "LR":
        if faces("brow_upper_" + side) > 0.0:
            b = pts("brow_upper_" + side, "brow_lower_" + side)
            _fill(img, b, _scaled(brow_colour, shade_at(b)))
        eye_keys = ("eye_upper_" + side, "eye_lower_" + side)
        if faces(*eye_keys) <= 0.05:
            continue
        up, eye = uv[S["eye_upper_" + side]], pts(*eye_keys)
        s = shade_at(eye)
        if look.eye_shadow is not None:
            top = uv[S["brow_lower_" + side]]  # inner -> outer
            mid = 0.5 * top + 0.5 * up[::-1][[0, 1, 3, 4, 5, 7, 8]]
            _fill(img, np.concatenate([up, mid]), _scaled(_mix(look.skin, look.eye_shadow, 0.6), s))
        if expr.eyes_closed < 0.85:
            _fill(img, eye, _scaled((235.0, 230.0, 225.0), min(1.0, s)))
            _fill(img, uv[S["iris_" + side]], _scaled(look.iris, s))
            _fill(img, uv[S["pupil_ring_" + side]], (15.0, 12.0, 12.0))
        lid = 0.016 * px * (1.8 if look.eye_shadow is not None else 1.0)
        _line(img, up, dark, lid)
        _line(img, uv[S["eye_lower_" + side]], _scaled(look.skin, 0.6 * s), 0.006 * px)

    # nose: each side a polygon shaded by its own normal; a side turned away is not drawn
    for nc, poly in g.nose:
        lam = look.ambient + look.diffuse * max(0.0, float(nc @ np.asarray(look.light)))
        _fill(img, poly, _scaled(look.skin, 0.35 * lam + 0.65 * shade_at(poly)))
    bottom = uv[S["nose_bottom"]]
    for side in "LR":
        if facing[S["nostril_" + side]][0] > 0.1:
            c = uv[S["nostril_" + side]][0]
            r = max(1, int(0.022 * px))
            cv2.ellipse(img, (int(c[0]), int(c[1])), (r, max(1, r // 2)), 0, 0, 360, _c(_scaled(look.skin, 0.3)), -1)
    if faces("nose_bottom") > -0.2:
        _line(img, bottom, _scaled(look.skin, 0.55 * shade_at(bottom)), 0.008 * px)

    # lips and the open mouth
    outer = pts("lip_outer_upper", "lip_outer_lower")
    s = shade_at(outer)
    _fill(img, outer, _scaled(look.lips, s))
    iu, il = uv[S["lip_inner_upper"]], uv[S["lip_inner_lower"]]
    if expr.mouth_open > 0.08:
        _fill(img, np.concatenate([iu, il]), (60.0, 20.0, 25.0))
        if expr.mouth_open > 0.25:
            teeth = iu + 0.35 * (il[::-1] - iu)
            _fill(img, np.concatenate([iu, teeth[::-1]]), _scaled((235.0, 230.0, 215.0), min(1.0, s)))
    _line(img, iu, _scaled(look.lips, 0.45 * s), 0.008 * px)


# --- occluders -----------------------------------------------------------------------------------


def _occluder(img, g: Geometry, shape: Shape, look: Look, rng: np.random.Generator) -> np.ndarray | None:
    """Draw ``look.occluder`` into the image; return its mask (H, W) uint8, or None."""
    if look.occluder is None:
        return None
    if look.occluder not in OCCLUDERS:
        raise ValueError(f"unknown occluder {look.occluder!r}; choose one of {OCCLUDERS}")
    H, W = img.shape[:2]
    mask = np.zeros((H, W), np.uint8)
    S, uv, pose = SLICES, g.uv, g.pose
    size = look.occluder_size * pose.scale
    ax, ay = look.occluder_at
    p3, _ = lift(shape, np.array([ax]), np.array([ay]), np.array([0.15]))
    anchor = project(p3, None, pose, (H, W))[0][0]
    polys: list[np.ndarray] = []
    lines: list[tuple[np.ndarray, float]] = []
    if look.occluder == "sunglasses":
        colour = _c(rng.uniform(10, 70, 3))
        centres = []
        for side in "LR":
            up = uv[S["eye_upper_" + side]]
            a = max(2.0, 0.8 * float(np.linalg.norm(up[-1] - up[0])))
            c = uv[S["pupil_" + side]][0]
            centres.append(c)
            d = uv[S["pupil_R"]][0] - uv[S["pupil_L"]][0]
            ang = float(np.degrees(np.arctan2(d[1], d[0])))
            polys.append(cv2.ellipse2Poly((int(c[0]), int(c[1])), (int(a), int(0.75 * a)), int(ang), 0, 360, 20))
        lines.append((np.array(centres), max(1.0, 0.025 * pose.scale)))
    elif look.occluder == "hand":
        colour = _c(np.array(look.skin) * rng.uniform(0.8, 1.1))
        ang = rng.uniform(0, 2 * np.pi)
        d = np.array([np.cos(ang), np.sin(ang)])
        palm = cv2.ellipse2Poly((int(anchor[0]), int(anchor[1])), (int(0.45 * size) + 1, int(0.55 * size) + 1),
                                int(np.degrees(ang)) + 90, 0, 360, 20)
        polys.append(palm)
        side = np.array([-d[1], d[0]])
        for f in range(4):
            base = anchor + d * 0.4 * size + side * (f - 1.5) * 0.22 * size
            lines.append((np.array([base, base + d * size * rng.uniform(0.55, 0.8)]), 0.18 * size))
        thumb = anchor + side * 0.45 * size
        lines.append((np.array([thumb, thumb + (side + d) * 0.4 * size]), 0.2 * size))
    elif look.occluder == "mask":
        colour = _c(rng.choice([[200.0, 220.0, 240.0], [235.0, 235.0, 235.0], [40.0, 40.0, 50.0]]))
        jaw = uv[S["jaw"]][2:15]
        hull = cv2.convexHull(np.concatenate([jaw, uv[S["nose_bridge"]][3:5]]).astype(np.float32))
        polys.append(hull.reshape(-1, 2))
    else:
        colour = _c(rng.uniform(0, 255, 3))
        box = ((float(anchor[0]), float(anchor[1])), (size * rng.uniform(0.5, 1.4), size * rng.uniform(0.5, 1.4)),
               float(rng.uniform(0, 180)))
        polys.append(cv2.boxPoints(box))
    for target, col in ((img, colour), (mask, (255.0, 255.0, 255.0))):
        for p in polys:
            _fill(target, np.asarray(p, dtype=np.float64).reshape(-1, 2), col)
        for p, t in lines:
            _line(target, p, col, t)
    return mask


def occluded(mask: np.ndarray | None, points: np.ndarray) -> np.ndarray:
    """Per-point occlusion flags (L,) bool: the point's pixel lies on the occluder ``mask``."""
    pts = np.asarray(points, dtype=np.float64)
    if mask is None:
        return np.zeros(len(pts), dtype=bool)
    H, W = mask.shape
    x = np.clip(np.round(pts[:, 0]).astype(int), 0, W - 1)
    y = np.clip(np.round(pts[:, 1]).astype(int), 0, H - 1)
    return mask[y, x] > 0


# --- the whole image -----------------------------------------------------------------------------


def _camera(img: np.ndarray, look: Look, rng: np.random.Generator) -> np.ndarray:
    """Exposure, blur and sensor noise (JPEG happens when the image is saved)."""
    if look.contrast != 1.0 or look.brightness != 0.0:
        img = cv2.convertScaleAbs(img, alpha=look.contrast, beta=look.brightness)
    if look.motion_blur > 1:
        k = np.zeros((look.motion_blur, look.motion_blur), np.float32)
        k[look.motion_blur // 2, :] = 1.0 / look.motion_blur
        rot = cv2.getRotationMatrix2D(((look.motion_blur - 1) / 2, (look.motion_blur - 1) / 2), rng.uniform(0, 180), 1)
        k = cv2.warpAffine(k, rot, k.shape)
        img = cv2.filter2D(img, -1, k / max(k.sum(), 1e-6))
    if look.blur > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), look.blur)
    if look.noise > 0:
        H, W = img.shape[:2]
        tile = _NOISE
        if H > tile.shape[0] // 2 or W > tile.shape[1] // 2:
            tile = np.tile(tile, (H // tile.shape[0] + 2, W // tile.shape[1] + 2, 1))
        oy = int(rng.integers(0, tile.shape[0] - H))
        ox = int(rng.integers(0, tile.shape[1] - W))
        g = look.noise / 32.0
        img = cv2.addWeighted(img, 1.0, tile[oy:oy + H, ox:ox + W], g, -128.0 * g)
    return img


def render(
    shape: Shape, expr: Expression, pose: Pose, look: Look, size: tuple[int, int] = (256, 256),
    geom: Geometry | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Render one face: RGB uint8 image (H, W, 3) and the occluder mask (H, W) uint8 or None.

    ``geom`` is the face's :func:`~sepbn.data.synth.face.geometry` if already computed.

    >>> img, occ = render(Shape(), Expression(), Pose(scale=20.0), Look(), (64, 64))
    >>> img.shape, img.dtype.name, occ is None
    ((64, 64, 3), 'uint8', True)
    """
    H, W = size
    if H < 8 or W < 8:
        raise ValueError(f"image size must be at least 8x8, got {size}")
    g = geometry(shape, expr, pose, size) if geom is None else geom
    rng = np.random.default_rng(look.seed)
    img = _background(rng, (H, W))
    _body(img, shape, pose, look)
    ears = [_ear(shape, pose, (H, W), s) for s in (-1, 1)]
    for outline, f in ears:
        if f <= 0.15:
            _fill(img, outline, _scaled(look.skin, 0.75))
    shading = _head(img, shape, pose, look)
    for outline, f in ears:
        if f > 0.15:
            _fill(img, outline, _scaled(look.skin, look.ambient + look.diffuse * 0.5 * f))
            c = outline.mean(0)
            _fill(img, c + 0.5 * (outline - c), _scaled(look.skin, 0.5))
    _features(img, shading, g, expr, look)
    mask = _occluder(img, g, shape, look, rng)
    return _camera(img, look, rng), mask
