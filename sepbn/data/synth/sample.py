"""SynthFaces sampling: sub-domains and every face's parameters, one face in memory.

Not from the paper: the embedded dataset standing in for its imbalanced sub-domains (AFLW's
three pose clusters, paper Fig. 3). A face is a draw from a mixture of named :class:`Domain`
components (default left profile / frontal / right profile, 15/70/15); its label is kept as
``attributes["domain"]`` and ``attributes["domain_id"]``.

Determinism: face ``i`` of ``seed`` draws everything from ``np.random.default_rng([seed, i])``,
so any subset of faces can be made in any order or process and comes out identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..protocols import WFLW_ATTRIBUTES, get_protocol
from .curves import PROTOCOL_POINTS
from .draw import Look
from .effects import OCCLUDERS, occluded
from .face import Geometry, geometry
from .head import Expression, Pose, Shape
from .render import render

__all__ = ["Domain", "DEFAULT_DOMAINS", "parse_domains", "check_domains", "SynthFace", "sample_face", "synthesize"]


@dataclass(frozen=True)
class Domain:
    """One mixture component: a name, a mixing weight and uniform pose ranges (degrees)."""

    name: str
    weight: float
    yaw: tuple[float, float]
    pitch: tuple[float, float] = (-25.0, 25.0)
    roll: tuple[float, float] = (-25.0, 25.0)

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"domain {self.name!r}: weight must be >= 0, got {self.weight}")
        for k in ("yaw", "pitch", "roll"):
            lo, hi = getattr(self, k)
            if not -90.0 <= lo <= hi <= 90.0:
                raise ValueError(f"domain {self.name!r}: {k} range must lie in [-90, 90], got {(lo, hi)}")


# Positive yaw turns the nose towards image right: a "left profile" looks to the image left.
DEFAULT_DOMAINS: tuple[Domain, ...] = (
    Domain("left-profile", 0.15, (-90.0, -40.0)),
    Domain("frontal", 0.70, (-40.0, 40.0)),
    Domain("right-profile", 0.15, (40.0, 90.0)),
)


def parse_domains(text: str) -> tuple[Domain, ...]:
    """``"name:weight[:yaw_min:yaw_max],..."`` -> domains. Names of the default domains may
    omit the yaw range (``"left-profile:0.3,frontal:0.4,right-profile:0.3"``).

    >>> [d.weight for d in parse_domains("left-profile:1,frontal:2,right-profile:1")]
    [1.0, 2.0, 1.0]
    """
    known = {d.name: d for d in DEFAULT_DOMAINS}
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        parts = item.split(":")
        try:
            if len(parts) == 2 and parts[0] in known:
                out.append(Domain(parts[0], float(parts[1]), known[parts[0]].yaw))
            elif len(parts) == 4:
                out.append(Domain(parts[0], float(parts[1]), (float(parts[2]), float(parts[3]))))
            else:
                raise ValueError("expected name:weight (a default domain) or name:weight:yaw_min:yaw_max")
        except ValueError as e:
            raise ValueError(f"bad domain {item!r} in {text!r}: {e}") from None
    check_domains(out)
    return tuple(out)


def check_domains(domains: Sequence[Domain]) -> np.ndarray:
    if not domains:
        raise ValueError("at least one domain is needed")
    names = [d.name for d in domains]
    if len(set(names)) != len(names):
        raise ValueError(f"domain names must be unique, got {names}")
    w = np.array([d.weight for d in domains], dtype=np.float64)
    if w.sum() <= 0:
        raise ValueError(f"domain weights must sum to > 0, got {w.tolist()}")
    return w / w.sum()


@dataclass
class SynthFace:
    """One generated face: its parameters, its domain and (after rendering) image and labels.

    ``points`` / ``visible`` map protocol name -> (L, 2) pixels / (L,) bool (self-occlusion and
    the occluder both hide a point); ``box`` is the tight box of the WFLW-98 points, the same
    for every protocol; ``flags`` the six WFLW attribute flags.
    """

    index: int
    domain: str
    domain_id: int
    shape: Shape
    expr: Expression
    pose: Pose
    look: Look
    size: tuple[int, int]
    geom: Geometry | None = field(default=None, repr=False)
    image: np.ndarray | None = None
    points: dict[str, np.ndarray] = field(default_factory=dict)
    visible: dict[str, np.ndarray] = field(default_factory=dict)
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    flags: dict[str, bool] = field(default_factory=dict)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _sample_shape(rng: np.random.Generator) -> Shape:
    nose = _u(rng, 0.36, 0.46)
    return Shape(
        width=_u(rng, 0.6, 0.76), depth=_u(rng, 0.8, 0.95), taper=_u(rng, 0.3, 0.5),
        chin_forward=_u(rng, 0.1, 0.25), eye_spacing=_u(rng, 0.24, 0.3), eye_width=_u(rng, 0.115, 0.145),
        eye_height=_u(rng, 0.045, 0.065), brow_height=_u(rng, 0.11, 0.17), brow_thickness=_u(rng, 0.03, 0.05),
        brow_arch=_u(rng, 0.01, 0.045), nose_length=nose, nose_protrusion=_u(rng, 0.17, 0.28),
        nose_width=_u(rng, 0.08, 0.12), mouth_y=nose + _u(rng, 0.19, 0.25), mouth_width=_u(rng, 0.15, 0.22),
        lip_upper=_u(rng, 0.035, 0.06), lip_lower=_u(rng, 0.045, 0.07), chin_y=_u(rng, 0.9, 0.95),
        iris=_u(rng, 0.04, 0.05),
    )


def _sample_expression(rng: np.random.Generator) -> tuple[Expression, bool]:
    strong = rng.random() < 0.25
    if strong:
        kind = int(rng.integers(0, 4))
        e = Expression(
            mouth_open=_u(rng, 0.55, 1.0) if kind in (0, 3) else _u(rng, 0.0, 0.2),
            smile=_u(rng, 0.6, 1.0) if kind in (1, 3) else _u(rng, -0.2, 0.3),
            eyes_closed=_u(rng, 0.85, 1.0) if kind == 2 else _u(rng, 0.0, 0.3),
            brows_raised=_u(rng, 0.6, 1.0) if kind in (0, 2) else _u(rng, -0.5, 0.5),
        )
    else:
        e = Expression(
            mouth_open=_u(rng, 0.0, 0.35) if rng.random() < 0.3 else 0.0, smile=_u(rng, -0.2, 0.45),
            eyes_closed=_u(rng, 0.0, 0.3), brows_raised=_u(rng, -0.5, 0.5),
        )
    return e, strong


_SKIN = np.array([[250.0, 215.0, 190.0], [225.0, 175.0, 140.0], [180.0, 125.0, 90.0], [110.0, 70.0, 50.0]])
_HAIR = np.array([[25.0, 20.0, 18.0], [70.0, 45.0, 30.0], [150.0, 110.0, 60.0], [210.0, 180.0, 120.0],
                  [140.0, 60.0, 30.0], [150.0, 150.0, 150.0]])
_IRIS = np.array([[70.0, 45.0, 30.0], [60.0, 90.0, 140.0], [70.0, 100.0, 60.0], [40.0, 30.0, 25.0]])


def _sample_look(rng: np.random.Generator, seed: int) -> tuple[Look, dict[str, bool]]:
    t = rng.uniform(0, len(_SKIN) - 1)
    k = int(t)
    skin = _SKIN[k] + (t - k) * (_SKIN[min(k + 1, len(_SKIN) - 1)] - _SKIN[k]) + rng.normal(0, 6, 3)
    hair = _HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.8, 1.15)
    makeup = rng.random() < 0.2
    lips = skin * np.array([0.85, 0.58, 0.58]) + rng.normal(0, 5, 3)
    if makeup:
        lips = np.array([rng.uniform(120, 230), rng.uniform(0, 60), rng.uniform(30, 120)])
    extreme = rng.random() < 0.15
    az = np.radians(rng.uniform(55, 85) * rng.choice([-1, 1]) if extreme else rng.uniform(-70, 70))
    el = np.radians(rng.uniform(-50, 60))
    light = (float(np.sin(az) * np.cos(el)), float(-np.sin(el)), float(-np.cos(az) * np.cos(el)))
    strong_blur = rng.random() < 0.15
    motion = strong_blur and rng.random() < 0.4
    occluder = str(rng.choice(OCCLUDERS)) if rng.random() < 0.25 else None
    look = Look(
        seed=seed, skin=tuple(skin), hair=tuple(hair), lips=tuple(lips),
        iris=tuple(_IRIS[rng.integers(len(_IRIS))] * rng.uniform(0.8, 1.2)),
        clothes=tuple(rng.uniform(20, 230, 3)),
        eye_shadow=tuple(rng.uniform(40, 200, 3)) if makeup else None,
        hairline=-1.0 if rng.random() < 0.05 else _u(rng, -0.55, -0.32),
        long_hair=_u(rng, 0.3, 1.5) if rng.random() < 0.4 else 0.0,
        light=light,
        ambient=_u(rng, 0.1, 0.25) if extreme else _u(rng, 0.4, 0.65),
        diffuse=_u(rng, 0.9, 1.2) if extreme else _u(rng, 0.25, 0.6),
        occluder=occluder, occluder_at=(_u(rng, -0.45, 0.45), _u(rng, -0.05, 0.85)),
        occluder_size=_u(rng, 0.3, 0.55),
        blur=_u(rng, 1.5, 3.0) if strong_blur and not motion else _u(rng, 0.0, 0.8),
        motion_blur=int(rng.integers(5, 12)) if motion else 0,
        noise=_u(rng, 0.0, 8.0),
        brightness=_u(rng, -60, -35) * rng.choice([-1, 1]) if extreme and rng.random() < 0.3 else _u(rng, -20, 20),
        contrast=_u(rng, 0.8, 1.2),
        jpeg_quality=int(rng.integers(35, 96)),
    )
    return look, {"illumination": bool(extreme), "make-up": bool(makeup), "blur": bool(strong_blur)}


def sample_face(
    seed: int, index: int, domains: Sequence[Domain] = DEFAULT_DOMAINS, size: tuple[int, int] = (256, 256),
) -> SynthFace:
    """Draw face ``index`` of ``seed``: domain, identity, expression, pose, placement, look.

    The face (the tight box of its WFLW-98 points) is 20-45 % of the image side, lies wholly
    inside the image with a margin of 4 %, anywhere within it.
    """
    probs = check_domains(domains)
    H, W = size
    rng = np.random.default_rng([int(seed), int(index)])
    k = int(rng.choice(len(domains), p=probs))
    d = domains[k]
    shape = _sample_shape(rng)
    expr, strong_expr = _sample_expression(rng)
    pose = Pose(yaw=_u(rng, *d.yaw), pitch=_u(rng, *d.pitch), roll=_u(rng, *d.roll),
                distance=_u(rng, 4.0, 12.0), scale=1.0)
    margin = 0.04 * min(H, W)
    # face height (brows to chin, about 1.15 head units) 20-45 % of the image side, then shrunk if
    # the points would not fit; pixels are affine in scale and shift, so one evaluation suffices
    geom = geometry(shape, expr, pose, size)
    extent = np.maximum(np.ptp(geom["wflw98"], axis=0), 1e-6)  # at scale 1
    scale = min(_u(rng, 0.2, 0.45) * min(H, W) / 1.15, (W - 2 * margin) / extent[0], (H - 2 * margin) / extent[1])
    geom = geom.placed(scale, 0.0, 0.0, size)
    lo, hi = geom["wflw98"].min(0), geom["wflw98"].max(0)
    sx = _u(rng, margin - lo[0], max(margin - lo[0], W - 1 - margin - hi[0]))
    sy = _u(rng, margin - lo[1], max(margin - lo[1], H - 1 - margin - hi[1]))
    geom = geom.placed(scale, sx, sy, size)
    pose = geom.pose
    look, flags = _sample_look(rng, int(rng.integers(2**31)))
    flags["expression"] = strong_expr
    flags["pose"] = abs(pose.yaw) > 45 or max(abs(pose.pitch), abs(pose.roll)) > 22
    return SynthFace(index, d.name, k, shape, expr, pose, look, (H, W), geom=geom, flags=flags)


def synthesize(
    index: int, *, seed: int = 0, domains: Sequence[Domain] = DEFAULT_DOMAINS, size: tuple[int, int] = (256, 256),
    protocols: Sequence[str] = tuple(PROTOCOL_POINTS),
) -> SynthFace:
    """Sample and render face ``index``: image, points and visibility in every protocol, flags.

    >>> f = synthesize(3, seed=1, size=(64, 64), protocols=["5pt"])
    >>> f.image.shape, f.points["5pt"].shape, f.domain in {d.name for d in DEFAULT_DOMAINS}
    ((64, 64, 3), (5, 2), True)
    """
    face = sample_face(seed, index, domains, size)
    face.image, mask = render(face.shape, face.expr, face.pose, face.look, size, geom=face.geom)
    names = [get_protocol(p).name for p in protocols]
    any_occluded = False
    for name in dict.fromkeys(["wflw98", *names]):
        pts = face.geom[name]
        occ = occluded(mask, pts)
        any_occluded |= name == "wflw98" and bool(occ.any())
        face.points[name], face.visible[name] = pts, face.geom.visible(name) & ~occ
    x0, y0 = face.points["wflw98"].min(0)
    x1, y1 = face.points["wflw98"].max(0)
    face.box = (float(x0), float(y0), float(x1), float(y1))
    if "wflw98" not in names:
        del face.points["wflw98"], face.visible["wflw98"]
    face.flags["occlusion"] = any_occluded
    face.flags = {a: bool(face.flags[a]) for a in WFLW_ATTRIBUTES}
    return face
