"""SynthFaces effects drawn over a finished face: an occluder (and its mask, which gives COFW-style
occlusion flags) and the camera (exposure, motion and Gaussian blur, sensor noise).

Randomness comes from the caller's generator (seeded by ``Look.seed``), so both are deterministic in
their arguments (the occluder is drawn into the image in place); the noise is a fixed tile read at a random offset.
"""

from __future__ import annotations

import cv2
import numpy as np

from .draw import Look, draw_line, fill_poly, rgb
from .face import SLICES, Geometry
from .head import Shape, lift, project

__all__ = ["OCCLUDERS", "draw_occluder", "occluded", "camera"]

OCCLUDERS = ("sunglasses", "hand", "mask", "object")
_NOISE = np.random.default_rng(12345).normal(128, 32, (512, 512, 3)).clip(0, 255).astype(np.uint8)


def draw_occluder(img, g: Geometry, shape: Shape, look: Look, rng: np.random.Generator) -> np.ndarray | None:
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
        colour = rgb(rng.uniform(10, 70, 3))
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
        colour = rgb(np.array(look.skin) * rng.uniform(0.8, 1.1))
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
        colour = rgb(rng.choice([[200.0, 220.0, 240.0], [235.0, 235.0, 235.0], [40.0, 40.0, 50.0]]))
        jaw = uv[S["jaw"]][2:15]
        hull = cv2.convexHull(np.concatenate([jaw, uv[S["nose_bridge"]][3:5]]).astype(np.float32))
        polys.append(hull.reshape(-1, 2))
    else:
        colour = rgb(rng.uniform(0, 255, 3))
        box = ((float(anchor[0]), float(anchor[1])), (size * rng.uniform(0.5, 1.4), size * rng.uniform(0.5, 1.4)),
               float(rng.uniform(0, 180)))
        polys.append(cv2.boxPoints(box))
    for target, col in ((img, colour), (mask, (255.0, 255.0, 255.0))):
        for p in polys:
            fill_poly(target, np.asarray(p, dtype=np.float64).reshape(-1, 2), col)
        for p, t in lines:
            draw_line(target, p, col, t)
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


def camera(img: np.ndarray, look: Look, rng: np.random.Generator) -> np.ndarray:
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
