"""One affine matrix per sample: the crop and the paper's augmentation (section V-A).

Paper, section V-A: "All the face images were cropped according to the official bounding box
and resized to the size of 128 x 128. We randomly rotated the training images between
[-25, 25] and perturbed the bounding box corner within 15% of the bounding box size. In
addition, horizontal flip and shear transformations were applied."

Every geometric step is composed into ONE 2x3 matrix ``M`` (original image -> crop) that is
applied once to the image (``cv2.warpAffine``) and to the points; ``invert_affine(M)`` maps
predictions in the crop back to the original image. With the face box made square around its
centre ``c`` with side ``s`` (``max(w, h) * box_scale``), a crop of ``S`` px and

    q  = (p - c) / s                                   (box -> unit square [-1/2, 1/2]^2)
    q' = F Z H R q                                     (rotate, shear, zoom, mirror)
    p' = S q' + (S - 1) / 2                            (unit square -> crop pixels)

the square's outer edges land on the crop's outer pixel edges (-0.5 and S - 0.5), so
``encode_points`` turns them into -1 and +1. ``F = diag(-1, 1)`` is the mirror
``x' = S - 1 - x`` in crop pixels; a mirrored sample also reorders its points (and
visibility) by the protocol's flip permutation, ``flipped[i] = original[flip_perm[i]]``.

Pixel convention (the package's, see :mod:`sepbn.data.protocols`): float 0-based pixels, the
centre of pixel column ``j`` is ``x = j`` -- the convention ``cv2.warpAffine`` uses.

Photometric jitter, blur and synthetic occlusion are optional (off by default: the paper lists
geometric augmentation only) and act on the warped crop, after the single warp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AugmentConfig",
    "AugmentParams",
    "encode_points",
    "decode_points",
    "square_box",
    "crop_matrix",
    "augment_matrix",
    "sample_augment",
    "compose_affine",
    "invert_affine",
    "apply_affine",
    "to_original",
    "warp_image",
    "photometric",
    "normalize_image",
    "denormalize_image",
]

# Input normalisation, stated once: RGB in [0, 1], then ImageNet mean/std per channel, so
# ResNeXt-50 / MobileNetV2 can start from ImageNet weights and every network sees the same input.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_SCALE = (1.0 / (255.0 * np.asarray(IMAGENET_STD))).astype(np.float32)
_OFFSET = (-np.asarray(IMAGENET_MEAN) / np.asarray(IMAGENET_STD)).astype(np.float32)
_LUT = np.arange(256, dtype=np.float32)[None, :] * _SCALE[:, None] + _OFFSET[:, None]  # (3, 256)


def encode_points(points: np.ndarray, size: int) -> np.ndarray:
    """Crop pixels -> normalised coordinates ``u = (x + 0.5) / S * 2 - 1`` (crop edges at -1, +1)."""
    return (np.asarray(points) + 0.5) * (2.0 / size) - 1.0


def decode_points(u: np.ndarray, size: int) -> np.ndarray:
    """Normalised coordinates -> crop pixels; the inverse of :func:`encode_points`.

    >>> float(decode_points(encode_points(np.array(3.0), 8), 8))
    3.0
    """
    return (np.asarray(u) + 1.0) * (size / 2.0) - 0.5


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the training augmentation; every parameter is drawn once per sample.

    Defaults are the paper's (section V-A) where it gives a value: rotation uniform in
    [-25, 25] degrees, each box corner moved by up to 15% of the box size, horizontal flip with
    probability 0.5. The paper gives no shear range: ``shear=0.3`` (x' = x + k y, k uniform in
    [-0.3, 0.3]) is the value of the authors' public code. ``scale`` (zoom of the face in the
    crop, uniform in the range; > 1 enlarges the face) is off because the corner jitter
    already varies the scale.
    Photometric jitter, blur and occlusion are off by default (the paper uses geometric
    augmentation only).
    """

    rotation: float = 25.0
    corner_jitter: float = 0.15
    flip_prob: float = 0.5
    shear: float = 0.3
    scale: tuple[float, float] = (1.0, 1.0)
    brightness: float = 0.0  # additive, fraction of 255: uniform in [-b, b]
    contrast: float = 0.0  # multiplicative around the crop mean: uniform in [1 - c, 1 + c]
    saturation: float = 0.0  # blend with grey: uniform in [1 - s, 1 + s]
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.5, 1.5)  # Gaussian sigma in crop pixels
    occlusion_prob: float = 0.0
    occlusion_size: tuple[float, float] = (0.15, 0.4)  # rectangle side as a fraction of the crop

    def __post_init__(self) -> None:
        if not 0.0 <= self.corner_jitter < 0.5:
            raise ValueError(f"corner_jitter must be in [0, 0.5), got {self.corner_jitter}")
        for name in ("flip_prob", "blur_prob", "occlusion_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be a probability, got {v}")
        for name in ("rotation", "shear", "brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("scale", "blur_sigma", "occlusion_size"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be a range 0 < lo <= hi, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentConfig":
        """Build from a config mapping; unknown keys raise ValueError naming them."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown augmentation keys {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class AugmentParams:
    """One sample's draw from an :class:`AugmentConfig` (angles in degrees)."""

    corner_shift: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # x0, y0, x1, y1 / box size
    angle: float = 0.0
    shear: float = 0.0
    scale: float = 1.0
    flip: bool = False
    brightness: float = 0.0
    contrast: float = 1.0
    saturation: float = 1.0
    blur_sigma: float = 0.0  # 0: no blur
    occlusion: tuple[float, float, float, float] | None = None  # x0, y0, w, h as crop fractions

    @property
    def photometric(self) -> bool:
        return (self.brightness != 0.0 or self.contrast != 1.0 or self.saturation != 1.0
                or self.blur_sigma > 0.0 or self.occlusion is not None)


def sample_augment(cfg: AugmentConfig, rng: np.random.Generator) -> AugmentParams:
    """Draw one sample's augmentation parameters (a fixed number of draws per call)."""
    u = rng.random(18)
    j = cfg.corner_jitter
    occlusion = None
    if u[9] < cfg.occlusion_prob:
        lo, hi = cfg.occlusion_size
        w, h = lo + (hi - lo) * u[10], lo + (hi - lo) * u[11]
        occlusion = (float(u[12] * (1 - w)), float(u[13] * (1 - h)), float(w), float(h))
    blur_lo, blur_hi = cfg.blur_sigma
    return AugmentParams(
        corner_shift=tuple(float(v) for v in (2 * u[0:4] - 1) * j),
        angle=float((2 * u[4] - 1) * cfg.rotation),
        shear=float((2 * u[5] - 1) * cfg.shear),
        scale=float(cfg.scale[0] + (cfg.scale[1] - cfg.scale[0]) * u[6]),
        flip=bool(u[7] < cfg.flip_prob),
        brightness=float((2 * u[14] - 1) * cfg.brightness),
        contrast=float(1 + (2 * u[15] - 1) * cfg.contrast),
        saturation=float(1 + (2 * u[16] - 1) * cfg.saturation),
        blur_sigma=float(blur_lo + (blur_hi - blur_lo) * u[8]) if u[17] < cfg.blur_prob else 0.0,
        occlusion=occlusion,
    )


def square_box(box, box_scale: float = 1.0) -> tuple[float, float, float]:
    """Centre ``(cx, cy)`` and side ``max(w, h) * box_scale`` of the square around ``box``."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    if not (w > 0 and h > 0) or not math.isfinite(w + h):
        raise ValueError(f"face box must have positive finite width and height, got {tuple(box)}")
    if not box_scale > 0:
        raise ValueError(f"box_scale must be > 0, got {box_scale}")
    return (x0 + x1) / 2, (y0 + y1) / 2, max(w, h) * box_scale


def _box_to_crop(cx: float, cy: float, side: float, size: int, linear: np.ndarray) -> np.ndarray:
    """The 2x3 matrix p -> S * linear @ (p - c) / side + (S - 1) / 2."""
    a = linear * (size / side)
    t = (size - 1) / 2.0 - a @ np.array([cx, cy])
    return np.concatenate([a, t[:, None]], axis=1)


def crop_matrix(box, size: int, box_scale: float = 1.0) -> np.ndarray:
    """Inference crop (no augmentation): original image -> ``size`` x ``size`` crop, float64 (2, 3).

    The box is made square around its centre (side ``max(w, h) * box_scale``) and its outer
    edges are mapped onto the crop's outer pixel edges.

    >>> m = crop_matrix((10, 20, 50, 40), 8)  # square: centre (30, 30), side 40
    >>> encode_points(apply_affine(m, np.array([[10.0, 10.0], [30.0, 30.0]])), 8).tolist()
    [[-1.0, -1.0], [0.0, 0.0]]
    """
    cx, cy, side = square_box(box, box_scale)
    return _box_to_crop(cx, cy, side, size, np.eye(2))


def augment_matrix(box, size: int, box_scale: float, params: AugmentParams) -> np.ndarray:
    """Training crop: the box's corners jittered, then rotation, shear, zoom and mirror about
    the (square) box centre; float64 (2, 3) original image -> crop."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    dx0, dy0, dx1, dy1 = params.corner_shift
    jittered = (x0 + dx0 * w, y0 + dy0 * h, x1 + dx1 * w, y1 + dy1 * h)
    cx, cy, side = square_box(jittered, box_scale)
    t = math.radians(params.angle)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    shear = np.array([[1.0, params.shear], [0.0, 1.0]])
    mirror = np.diag([-1.0 if params.flip else 1.0, 1.0])
    return _box_to_crop(cx, cy, side, size, mirror @ (params.scale * shear) @ rot)


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of ``outer(inner(p))``."""
    outer = np.asarray(outer, dtype=np.float64)
    inner = np.asarray(inner, dtype=np.float64)
    a = outer[:, :2] @ inner[:, :2]
    t = outer[:, :2] @ inner[:, 2] + outer[:, 2]
    return np.concatenate([a, t[:, None]], axis=1)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine matrix (float64)."""
    m = np.asarray(matrix, dtype=np.float64)
    (a, b), (c, d) = m[:, :2]
    det = a * d - b * c
    if det == 0 or not math.isfinite(det):
        raise ValueError(f"affine matrix is not invertible: {m.tolist()}")
    a_inv = np.array([[d, -b], [-c, a]]) / det  # closed form: np.linalg.inv costs 10x more here
    return np.concatenate([a_inv, (-a_inv @ m[:, 2])[:, None]], axis=1)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 matrix (or a stack (..., 2, 3)) to points (..., L, 2)."""
    m = np.asarray(matrix)
    pts = np.asarray(points)
    return pts @ np.swapaxes(m[..., :2], -1, -2) + m[..., None, :, 2]


def to_original(u: np.ndarray, inverse: np.ndarray, size: int) -> np.ndarray:
    """Network outputs ``u`` (N, L, 2), normalised crop coordinates, -> original-image pixels through the
    per-sample crop -> original matrices ``inverse`` (N, 2, 3) (float64). Evaluation and prediction share it.

    >>> to_original(np.zeros((1, 1, 2)), np.array([[[2.0, 0, 1], [0, 2.0, 3]]]), 8).tolist()
    [[[8.0, 10.0]]]
    """
    return apply_affine(np.asarray(inverse, dtype=np.float64), decode_points(np.asarray(u, dtype=np.float64), size))


def warp_image(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warp ``image`` (H, W, C) uint8 into a ``size`` x ``size`` crop; outside is black."""
    return cv2.warpAffine(image, np.asarray(matrix, dtype=np.float64), (size, size),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def photometric(crop: np.ndarray, params: AugmentParams, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation, blur and a random-colour occluding rectangle on a uint8
    RGB crop. Visibility flags are left as annotated: the occluder is synthetic noise to be
    robust to, and its hidden points still carry their ground truth."""
    if not params.photometric:
        return crop
    img = crop.astype(np.float32)
    if params.saturation != 1.0:
        grey = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        img = grey[..., None] + params.saturation * (img - grey[..., None])
    if params.contrast != 1.0:
        img = img.mean() + params.contrast * (img - img.mean())
    if params.brightness != 0.0:
        img = img + 255.0 * params.brightness
    if params.blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), params.blur_sigma)
    if params.occlusion is not None:
        size_y, size_x = img.shape[:2]
        x0, y0, w, h = params.occlusion
        c0, r0 = int(x0 * size_x), int(y0 * size_y)
        img[r0:r0 + max(1, int(h * size_y)), c0:c0 + max(1, int(w * size_x))] = rng.uniform(0, 255, 3)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def normalize_image(crop: np.ndarray) -> np.ndarray:
    """uint8 RGB (S, S, 3) -> float32 (3, S, S): ``(x / 255 - IMAGENET_MEAN) / IMAGENET_STD``.

    A 256-entry lookup table per channel (cv2.LUT on each plane): 3-5x faster than float maths
    on the whole crop, which matters at thousands of samples per second per core.
    """
    out = np.empty((3, *crop.shape[:2]), np.float32)
    for c, plane in enumerate(cv2.split(crop)):
        cv2.LUT(plane, _LUT[c], dst=out[c])  # writes into the contiguous plane out[c]
    return out


def denormalize_image(image: np.ndarray) -> np.ndarray:
    """float (3, S, S) network input -> uint8 RGB (S, S, 3) for drawing overlays."""
    img = np.asarray(image, dtype=np.float32).transpose(1, 2, 0)
    return np.clip((img - _OFFSET) / _SCALE + 0.5, 0, 255).astype(np.uint8)
