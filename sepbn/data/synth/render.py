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

from .draw import SHIFT, Look, draw_line, fill_poly, fixed_point, mix, rgb, scaled
from .effects import camera, draw_occluder
from .face import SLICES, Geometry, geometry
from .head import Expression, Pose, Shape, cross, project, rotation, surface

__all__ = ["render"]

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


# --- background and body -------------------------------------------------------------------------


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    H, W = size
    corners = rng.uniform(20, 235, (2, 2, 3)).astype(np.float32)
    img = cv2.resize(corners, (W, H), interpolation=cv2.INTER_LINEAR).astype(np.uint8)
    for _ in range(int(rng.integers(2, 9))):
        colour = rgb(rng.uniform(0, 255, 3))
        kind = int(rng.integers(0, 4))
        x, y = rng.uniform(0, W), rng.uniform(0, H)
        r = rng.uniform(0.05, 0.4) * W
        if kind == 0:
            cv2.circle(img, (int(x), int(y)), int(r), colour, -1, cv2.LINE_AA)
        elif kind == 1:
            box = ((x, y), (r, rng.uniform(0.05, 0.4) * W), rng.uniform(0, 180))
            fill_poly(img, cv2.boxPoints(box), colour)
        elif kind == 2:
            x2, y2 = rng.uniform(0, W), rng.uniform(0, H)
            cv2.line(img, (int(x), int(y)), (int(x2), int(y2)), colour, int(rng.integers(1, 8)), cv2.LINE_AA)
        else:
            fill_poly(img, np.array([x, y]) + rng.uniform(-r, r, (int(rng.integers(3, 7)), 2)), colour)
    return img


def _project(pose: Pose, size, pts3) -> np.ndarray:
    return project(np.asarray(pts3, dtype=np.float64), None, pose, size)[0]


def _body(img: np.ndarray, shape: Shape, pose: Pose, look: Look) -> None:
    """Torso (turns less than the head), long hair behind the head, and the neck."""
    size = img.shape[:2]
    k = shape.width / 0.68
    body_pose = Pose(pose.yaw * 0.4, 0.0, pose.roll * 0.5, pose.distance, pose.scale, pose.shift_x, pose.shift_y)
    torso = [(-0.5, 1.5, 0.3), (0.5, 1.5, 0.3), (1.9, 2.1, 0.3), (2.1, 5.0, 0.3), (-2.1, 5.0, 0.3), (-1.9, 2.1, 0.3)]
    fill_poly(img, _project(body_pose, size, np.array(torso) * [k, 1, 1]), look.clothes)
    if look.long_hair > 0:
        L = 0.4 + look.long_hair
        hair = [(-1.02, -0.3, 0.25), (1.02, -0.3, 0.25), (1.1, L, 0.45), (-1.1, L, 0.45)]
        fill_poly(img, _project(pose, size, np.array(hair) * [shape.width, 1, 1]), scaled(look.hair, 0.8))
    # the neck is a cylinder (its outline: the hull of two projected rings), not a flat card
    ring = np.stack([0.42 * k * np.cos(_NECK), np.zeros_like(_NECK), 0.2 + 0.36 * np.sin(_NECK)], 1)
    neck = _project(pose, size, np.concatenate([ring + [0, 0.3, 0], ring * [1.1, 1, 1.1] + [0, 1.9, 0]]))
    fill_poly(img, cv2.convexHull(neck.astype(np.float32)).reshape(-1, 2), scaled(look.skin, 0.62))


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
    fixed = fixed_point(quads).reshape(-1, 4, 1, 2)
    for k in range(4):
        sel = parity == k
        if sel.any():
            cv2.fillPoly(mask, list(fixed[sel]), 255, cv2.LINE_8, SHIFT)


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
        fill_poly(img, c + (hull - c) * 1.1, scaled(look.hair, 0.7))

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
    lowq = fixed_point(local / q).reshape(-1, 4, 1, 2)
    for lv in np.unique(levels):
        cv2.fillPoly(low, list(lowq[levels == lv]), int(lv), cv2.LINE_8, SHIFT)
    sigma = max(0.6, 0.02 * pose.scale / q)
    lowf = low.astype(np.float32)
    inside = (low > 0).astype(np.float32)
    lowf = cv2.GaussianBlur(lowf, (0, 0), sigma) / np.maximum(cv2.GaussianBlur(inside, (0, 0), sigma), 1e-3)
    up = cv2.resize(lowf, ((w // q + 2) * q, (h // q + 2) * q), interpolation=cv2.INTER_LINEAR)
    sh = up[:h, :w] * (1.0 / k)

    colour = np.empty((h, w, 3), np.float32)
    colour[:] = np.array(rgb(look.skin), np.float32)
    if len(hair):
        hair_mask = np.zeros((h, w), np.uint8)
        _fill_quads(hair_mask, hair - [x0, y0], hair_parity)
        # head quads wholly above the hairline too: they reach the head's outline exactly
        cap = keep & _above(_QUAD_Y, _QUAD_PHI, look)
        _fill_quads(hair_mask, uv[_QUADS[cap]] - [x0, y0], _HEAD_PARITY[cap])
        # a 1 px dilation closes the seams between quads and the gap left by their chords at
        # the outline (the head mask clips the rest)
        hair_mask = cv2.dilate(hair_mask, np.ones((3, 3), np.uint8))
        colour[hair_mask > 0] = np.array(rgb(look.hair), np.float32)
    lit = cv2.convertScaleAbs(cv2.multiply(colour, cv2.merge([sh, sh, sh])))
    mask = np.zeros((h, w), np.uint8)
    hull = cv2.convexHull(local.reshape(-1, 2).astype(np.float32)).reshape(-1, 2)
    cv2.fillConvexPoly(mask, fixed_point(hull), 255, cv2.LINE_8, SHIFT)  # the head is convex
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

    brow_colour = mix(look.hair, look.skin, 0.25)
    for side in "LR":
        if faces("brow_upper_" + side) > 0.0:
            b = pts("brow_upper_" + side, "brow_lower_" + side)
            fill_poly(img, b, scaled(brow_colour, shade_at(b)))
        eye_keys = ("eye_upper_" + side, "eye_lower_" + side)
        if faces(*eye_keys) <= 0.05:
            continue
        up, eye = uv[S["eye_upper_" + side]], pts(*eye_keys)
        s = shade_at(eye)
        if look.eye_shadow is not None:
            top = uv[S["brow_lower_" + side]]  # inner -> outer
            mid = 0.5 * top + 0.5 * up[::-1][[0, 1, 3, 4, 5, 7, 8]]
            fill_poly(img, np.concatenate([up, mid]), scaled(mix(look.skin, look.eye_shadow, 0.6), s))
        if expr.eyes_closed < 0.85:
            fill_poly(img, eye, scaled((235.0, 230.0, 225.0), min(1.0, s)))
            fill_poly(img, uv[S["iris_" + side]], scaled(look.iris, s))
            fill_poly(img, uv[S["pupil_ring_" + side]], (15.0, 12.0, 12.0))
        lid = 0.016 * px * (1.8 if look.eye_shadow is not None else 1.0)
        draw_line(img, up, dark, lid)
        draw_line(img, uv[S["eye_lower_" + side]], scaled(look.skin, 0.6 * s), 0.006 * px)

    # nose: each side a polygon shaded by its own normal; a side turned away is not drawn
    for nc, poly in g.nose:
        lam = look.ambient + look.diffuse * max(0.0, float(nc @ np.asarray(look.light)))
        fill_poly(img, poly, scaled(look.skin, 0.35 * lam + 0.65 * shade_at(poly)))
    bottom = uv[S["nose_bottom"]]
    for side in "LR":
        if facing[S["nostril_" + side]][0] > 0.1:
            c = uv[S["nostril_" + side]][0]
            r = max(1, int(0.022 * px))
            cv2.ellipse(img, (int(c[0]), int(c[1])), (r, max(1, r // 2)), 0, 0, 360, rgb(scaled(look.skin, 0.3)), -1)
    if faces("nose_bottom") > -0.2:
        draw_line(img, bottom, scaled(look.skin, 0.55 * shade_at(bottom)), 0.008 * px)

    # lips and the open mouth
    outer = pts("lip_outer_upper", "lip_outer_lower")
    s = shade_at(outer)
    fill_poly(img, outer, scaled(look.lips, s))
    iu, il = uv[S["lip_inner_upper"]], uv[S["lip_inner_lower"]]
    if expr.mouth_open > 0.08:
        fill_poly(img, np.concatenate([iu, il]), (60.0, 20.0, 25.0))
        if expr.mouth_open > 0.25:
            teeth = iu + 0.35 * (il[::-1] - iu)
            fill_poly(img, np.concatenate([iu, teeth[::-1]]), scaled((235.0, 230.0, 215.0), min(1.0, s)))
    draw_line(img, iu, scaled(look.lips, 0.45 * s), 0.008 * px)


# --- the whole image -----------------------------------------------------------------------------


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
            fill_poly(img, outline, scaled(look.skin, 0.75))
    shading = _head(img, shape, pose, look)
    for outline, f in ears:
        if f > 0.15:
            fill_poly(img, outline, scaled(look.skin, look.ambient + look.diffuse * 0.5 * f))
            c = outline.mean(0)
            fill_poly(img, c + 0.5 * (outline - c), scaled(look.skin, 0.5))
    _features(img, shading, g, expr, look)
    mask = draw_occluder(img, g, shape, look, rng)
    return camera(img, look, rng), mask
