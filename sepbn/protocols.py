"""Landmark protocols: the single source of every landmark fact in sepbn.

A :class:`Protocol` holds a point count, point names and semantic groups, a 0-based
horizontal-flip permutation, the NME normalisers (paper section V-A) and the map of its
points onto the shared 5 points (eye centres, nose tip, mouth corners). Nothing in sepbn
infers a protocol from a point count.

One resolution, at the edge: a protocol name, a ``.json`` / ``.toml`` file or a stored definition
becomes a :class:`Protocol` once, in :func:`get_protocol` (called by the config loader and the
commands); datasets, models, metrics, evaluation and checkpoints then carry the object, and
checkpoints store its full definition (:meth:`Protocol.to_dict`), so a model trained on a user's
protocol keeps working after the file is gone. This module imports numpy only.

Conventions, stated once for the whole package
----------------------------------------------
* Coordinates are float, 0-based pixels; pixel ``(i, j)`` has its centre at ``x = j, y = i``.
  A mirror of an image of width ``W`` maps ``x -> W - 1 - x``.
* Flip permutation: after mirroring x, ``flipped[i] = original[flip_perm[i]]``.
* "Left"/"right" in point names mean *image* left/right (as in MTFL and 300-W files).

Sources: HRNet-Facial-Landmark-Detection ``lib/utils/transforms.py`` and mmpose's dataset
configs agree on every flip permutation below; normalisers follow the paper (inter-ocular
for WFLW and COFW, face box for AFLW) and LAB/HRNet for the exact indices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping, Sequence

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "Normalizer",
    "Protocol",
    "WFLW98",
    "W300_68",
    "COFW29",
    "AFLW19",
    "FIVE_POINT",
    "PROTOCOLS",
    "get_protocol",
    "load_protocol",
    "protocol_from_dict",
    "protocol_spec",
    "require_protocol",
    "spec_name",
    "WFLW_ATTRIBUTES",
]

BoxFormula = Literal["sqrt_wh", "max_side", "diagonal"]

# WFLW's six attribute flags, in file order (list_98pt_rect_attr_*.txt) and Table IX order.
WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "make-up", "occlusion", "blur")


@dataclass(frozen=True)
class Normalizer:
    """The distance ``d`` that divides landmark errors in NME (paper eq. 8).

    ``kind="points"``: distance between the mean of ``left`` points and the mean of
    ``right`` points of the ground truth. ``kind="box"``: a size of the face box
    ``(x_min, y_min, x_max, y_max)`` by ``box_formula``: ``sqrt_wh`` = sqrt(w*h),
    ``max_side`` = max(w, h), ``diagonal`` = sqrt(w^2 + h^2).
    """

    name: str
    kind: Literal["points", "box"]
    left: tuple[int, ...] = ()
    right: tuple[int, ...] = ()
    box_formula: BoxFormula | None = None

    def __post_init__(self) -> None:
        if self.kind == "points" and (not self.left or not self.right):
            raise ValueError(f"normalizer {self.name!r}: kind='points' needs left and right indices")
        if self.kind == "box" and self.box_formula not in ("sqrt_wh", "max_side", "diagonal"):
            raise ValueError(f"normalizer {self.name!r}: unknown box_formula {self.box_formula!r}")
        if self.kind not in ("points", "box"):
            raise ValueError(f"normalizer {self.name!r}: unknown kind {self.kind!r}")

    def distance(self, gt: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
        """Per-face normalising distance for ``gt`` of shape (N, L, 2); ``boxes`` (N, 4)."""
        gt = np.asarray(gt, dtype=np.float64)
        if self.kind == "points":
            a = gt[:, list(self.left)].mean(axis=1)
            b = gt[:, list(self.right)].mean(axis=1)
            return np.linalg.norm(a - b, axis=-1)
        if boxes is None:
            raise ValueError(f"normalizer {self.name!r} needs face boxes (N, 4)")
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        if self.box_formula == "sqrt_wh":
            return np.sqrt(np.clip(w * h, 0, None))
        if self.box_formula == "max_side":
            return np.maximum(w, h)
        return np.hypot(w, h)


def _box_normalizers() -> dict[str, Normalizer]:
    return {
        "box": Normalizer("box sqrt(w*h)", "box", box_formula="sqrt_wh"),
        "box-max": Normalizer("box max(w,h)", "box", box_formula="max_side"),
        "box-diag": Normalizer("box diagonal", "box", box_formula="diagonal"),
    }


@dataclass(frozen=True)
class Protocol:
    """Everything sepbn knows about one landmark definition.

    Attributes:
        name: the key used everywhere (heads, checkpoints, configs), e.g. ``"wflw98"``.
        num_points: L.
        flip_perm: 0-based permutation; ``flipped[i] = original[flip_perm[i]]`` after a mirror.
        point_names: one name per point.
        groups: semantic groups, name -> point indices (e.g. ``"left_eye"``).
        normalizers: named NME normalisers; ``default_normalizer`` names the paper's choice.
        five_point: for each of the shared 5 points (left eye, right eye, nose tip, left and
            right mouth corner; image left/right) the indices whose mean gives it.
        attributes: names of per-face binary attributes the format carries (WFLW subsets).
    """

    name: str
    num_points: int
    flip_perm: tuple[int, ...]
    point_names: tuple[str, ...]
    groups: Mapping[str, tuple[int, ...]]
    normalizers: Mapping[str, Normalizer]
    default_normalizer: str
    five_point: tuple[tuple[int, ...], ...] | None = None
    attributes: tuple[str, ...] = ()
    description: str = ""
    _hash: int = field(default=0, compare=False, repr=False)

    def __post_init__(self) -> None:
        L = self.num_points
        if L < 1:
            raise ValueError(f"protocol {self.name!r}: num_points must be >= 1, got {L}")
        perm = tuple(int(i) for i in self.flip_perm)
        object.__setattr__(self, "flip_perm", perm)
        if sorted(perm) != list(range(L)):
            raise ValueError(f"protocol {self.name!r}: flip_perm is not a permutation of 0..{L - 1}")
        bad = [i for i in range(L) if perm[perm[i]] != i]
        if bad:
            raise ValueError(f"protocol {self.name!r}: flip_perm is not an involution at indices {bad}")
        if len(self.point_names) != L:
            raise ValueError(
                f"protocol {self.name!r}: {len(self.point_names)} point names for {L} points"
            )
        groups = {k: tuple(int(i) for i in v) for k, v in dict(self.groups).items()}
        for g, idx in groups.items():
            if any(not 0 <= i < L for i in idx):
                raise ValueError(f"protocol {self.name!r}: group {g!r} has an index outside 0..{L - 1}")
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "normalizers", dict(self.normalizers))
        if self.default_normalizer not in self.normalizers:
            raise ValueError(
                f"protocol {self.name!r}: default_normalizer {self.default_normalizer!r} "
                f"is not one of {sorted(self.normalizers)}"
            )
        for n in self.normalizers.values():
            if any(not 0 <= i < L for i in n.left + n.right):
                raise ValueError(f"protocol {self.name!r}: normalizer {n.name!r} index out of range")
        if self.five_point is not None:
            fp = tuple(tuple(int(i) for i in g) for g in self.five_point)
            if len(fp) != 5 or any(not g for g in fp):
                raise ValueError(f"protocol {self.name!r}: five_point must hold 5 non-empty index groups")
            object.__setattr__(self, "five_point", fp)
        object.__setattr__(self, "_hash", hash((self.name, L, perm)))

    def __hash__(self) -> int:
        return self._hash

    def answers_to(self, name: str) -> bool:
        """Whether ``name`` (a record's or config's spelling, aliases included) names this protocol."""
        key = str(name).lower()
        return name == self.name or _ALIASES.get(key, key) == self.name.lower()

    def normalizer(self, name: str | None = None) -> Normalizer:
        """The named normaliser, or the protocol's default."""
        key = self.default_normalizer if name is None else name
        try:
            return self.normalizers[key]
        except KeyError:
            raise ValueError(
                f"protocol {self.name!r} has no normalizer {key!r}; choose one of {sorted(self.normalizers)}"
            ) from None

    def flip(self, points: np.ndarray, width: int | float) -> np.ndarray:
        """Mirror points (..., L, 2) of an image of ``width`` px and reorder them by ``flip_perm``."""
        pts = np.array(points, dtype=np.float64, copy=True)
        pts[..., 0] = (width - 1) - pts[..., 0]
        return pts[..., list(self.flip_perm), :]

    def to_five_points(self, points: np.ndarray) -> np.ndarray:
        """Map points (..., L, 2) onto the shared 5 points (..., 5, 2)."""
        if self.five_point is None:
            raise ValueError(f"protocol {self.name!r} has no map onto the 5 shared points")
        pts = np.asarray(points, dtype=np.float64)
        return np.stack([pts[..., list(g), :].mean(axis=-2) for g in self.five_point], axis=-2)

    def to_dict(self) -> dict:
        """A JSON-able description (stored in checkpoints; read back by :func:`protocol_from_dict`)."""
        return {
            "name": self.name,
            "num_points": self.num_points,
            "flip_perm": list(self.flip_perm),
            "point_names": list(self.point_names),
            "groups": {k: list(v) for k, v in self.groups.items()},
            "normalizers": {
                k: {
                    "name": n.name,
                    "kind": n.kind,
                    "left": list(n.left),
                    "right": list(n.right),
                    "box_formula": n.box_formula,
                }
                for k, n in self.normalizers.items()
            },
            "default_normalizer": self.default_normalizer,
            "five_point": None if self.five_point is None else [list(g) for g in self.five_point],
            "attributes": list(self.attributes),
            "description": self.description,
        }


def _names_from_groups(L: int, groups: Mapping[str, Sequence[int]]) -> tuple[str, ...]:
    names = [f"p{i}" for i in range(L)]
    for g, idx in groups.items():
        for j, i in enumerate(idx):
            if 0 <= i < L:  # out-of-range indices are reported by Protocol's validation
                names[i] = f"{g}_{j}" if len(idx) > 1 else g
    return tuple(names)


def _r(a: int, b: int) -> tuple[int, ...]:
    return tuple(range(a, b))


# --- WFLW, 98 points -------------------------------------------------------------------
_WFLW_GROUPS = {
    "contour": _r(0, 33),
    "left_brow": _r(33, 42),
    "right_brow": _r(42, 51),
    "nose_bridge": _r(51, 55),
    "nose_bottom": _r(55, 60),
    "left_eye": _r(60, 68),
    "right_eye": _r(68, 76),
    "outer_lip": _r(76, 88),
    "inner_lip": _r(88, 96),
    "left_pupil": (96,),
    "right_pupil": (97,),
}
WFLW98 = Protocol(
    name="wflw98",
    num_points=98,
    flip_perm=(
        32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10,
        9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
        46, 45, 44, 43, 42, 50, 49, 48, 47, 37, 36, 35, 34, 33, 41, 40, 39, 38,
        51, 52, 53, 54, 59, 58, 57, 56, 55,
        72, 71, 70, 69, 68, 75, 74, 73, 64, 63, 62, 61, 60, 67, 66, 65,
        82, 81, 80, 79, 78, 77, 76, 87, 86, 85, 84, 83, 92, 91, 90, 89, 88, 95, 94, 93, 97, 96,
    ),
    point_names=_names_from_groups(98, _WFLW_GROUPS),
    groups=_WFLW_GROUPS,
    normalizers={
        "inter-ocular": Normalizer("inter-ocular (60, 72)", "points", (60,), (72,)),
        "inter-pupil": Normalizer("inter-pupil (96, 97)", "points", (96,), (97,)),
        **_box_normalizers(),
    },
    default_normalizer="inter-ocular",
    five_point=((96,), (97,), (54,), (76,), (82,)),
    attributes=WFLW_ATTRIBUTES,
    description="WFLW, 98 points (Wu et al., CVPR 2018)",
)

# --- 300-W, 68 points (Multi-PIE markup) ----------------------------------------------------
_300W_GROUPS = {
    "jaw": _r(0, 17),
    "left_brow": _r(17, 22),
    "right_brow": _r(22, 27),
    "nose_bridge": _r(27, 31),
    "nose_bottom": _r(31, 36),
    "left_eye": _r(36, 42),
    "right_eye": _r(42, 48),
    "outer_lip": _r(48, 60),
    "inner_lip": _r(60, 68),
}
W300_68 = Protocol(
    name="300w68",
    num_points=68,
    flip_perm=(
        16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
        26, 25, 24, 23, 22, 21, 20, 19, 18, 17,
        27, 28, 29, 30, 35, 34, 33, 32, 31,
        45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
        54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65,
    ),
    point_names=_names_from_groups(68, _300W_GROUPS),
    groups=_300W_GROUPS,
    normalizers={
        "inter-ocular": Normalizer("inter-ocular (36, 45)", "points", (36,), (45,)),
        "inter-pupil": Normalizer("inter-pupil (mean 36-41, mean 42-47)", "points", _r(36, 42), _r(42, 48)),
        **_box_normalizers(),
    },
    default_normalizer="inter-ocular",
    five_point=(_r(36, 42), _r(42, 48), (30,), (48,), (54,)),
    description="300-W, 68 points (Sagonas et al., 2013)",
)

# --- COFW, 29 points (RCPR markup) --------------------------------------------------------
# Point semantics follow the flip pairs: brows 0-7, eye corners 8-11, eyelids 12-15,
# pupils 16-17, nose 18-21, mouth 22-27, chin 28.
_COFW_NAMES = (
    "left_brow_outer", "right_brow_outer", "left_brow_inner", "right_brow_inner",
    "left_brow_top", "left_brow_bottom", "right_brow_top", "right_brow_bottom",
    "left_eye_outer", "right_eye_outer", "left_eye_inner", "right_eye_inner",
    "left_eye_top", "left_eye_bottom", "right_eye_top", "right_eye_bottom",
    "left_pupil", "right_pupil", "left_nostril", "right_nostril", "nose_tip",
    "nose_bottom", "mouth_left", "mouth_right", "upper_lip_top", "upper_lip_bottom",
    "lower_lip_top", "lower_lip_bottom", "chin",
)
COFW29 = Protocol(
    name="cofw29",
    num_points=29,
    flip_perm=(1, 0, 3, 2, 6, 7, 4, 5, 9, 8, 11, 10, 14, 15, 12, 13, 17, 16, 19, 18, 20, 21, 23, 22,
               24, 25, 26, 27, 28),
    point_names=_COFW_NAMES,
    groups={
        "brows": _r(0, 8),
        "eyes": _r(8, 16),
        "pupils": (16, 17),
        "nose": _r(18, 22),
        "mouth": _r(22, 28),
        "chin": (28,),
    },
    normalizers={
        "inter-ocular": Normalizer("inter-ocular (8, 9)", "points", (8,), (9,)),
        "inter-pupil": Normalizer("inter-pupil (16, 17)", "points", (16,), (17,)),
        **_box_normalizers(),
    },
    default_normalizer="inter-ocular",
    five_point=((16,), (17,), (20,), (22,), (23,)),
    description="COFW, 29 points (Burgos-Artizzu et al., ICCV 2013)",
)

# --- AFLW, 19 points ------------------------------------------------------------------------
_AFLW_NAMES = (
    "left_brow_outer", "left_brow_centre", "left_brow_inner",
    "right_brow_inner", "right_brow_centre", "right_brow_outer",
    "left_eye_outer", "left_eye_centre", "left_eye_inner",
    "right_eye_inner", "right_eye_centre", "right_eye_outer",
    "nose_left", "nose_tip", "nose_right",
    "mouth_left", "mouth_centre", "mouth_right", "chin",
)
AFLW19 = Protocol(
    name="aflw19",
    num_points=19,
    flip_perm=(5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 14, 13, 12, 17, 16, 15, 18),
    point_names=_AFLW_NAMES,
    groups={"brows": _r(0, 6), "eyes": _r(6, 12), "nose": _r(12, 15), "mouth": _r(15, 18), "chin": (18,)},
    normalizers={
        **_box_normalizers(),
        "inter-ocular": Normalizer("inter-ocular (6, 11)", "points", (6,), (11,)),
    },
    default_normalizer="box",
    five_point=((7,), (10,), (13,), (15,), (17,)),
    description="AFLW, 19 points (Koestinger et al., 2011; 19-point markup of Zhu et al., CVPR 2016)",
)

# --- 5 points (WIDER FACE / RetinaFace, MTFL) ----------------------------------------------
FIVE_POINT = Protocol(
    name="5pt",
    num_points=5,
    flip_perm=(1, 0, 2, 4, 3),
    point_names=("left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right"),
    groups={"eyes": (0, 1), "nose": (2,), "mouth": (3, 4)},
    normalizers={
        "eye-centres": Normalizer("eye centres (0, 1)", "points", (0,), (1,)),
        **_box_normalizers(),
    },
    default_normalizer="eye-centres",
    five_point=((0,), (1,), (2,), (3,), (4,)),
    description="5 points: eye centres, nose tip, mouth corners (MTFL, RetinaFace)",
)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (WFLW98, W300_68, COFW29, AFLW19, FIVE_POINT)}
# Friendly spellings accepted by get_protocol (one hop to the same objects).
_ALIASES = {"wflw": "wflw98", "300w": "300w68", "cofw": "cofw29", "aflw": "aflw19", "five": "5pt",
            "mtfl": "5pt", "wider5": "5pt"}


def protocol_from_dict(d: Mapping) -> Protocol:
    """Build a protocol from a plain mapping (JSON/TOML file, checkpoint metadata).

    Required keys: ``name``, ``num_points``, ``flip_perm`` and either ``normalizers`` with
    ``default_normalizer`` or a short ``normalizer`` entry such as
    ``{"kind": "points", "left": [0], "right": [1]}`` or ``{"kind": "box", "box_formula": "sqrt_wh"}``.
    """
    try:
        name = str(d["name"])
        L = int(d["num_points"])
        perm = tuple(int(i) for i in d["flip_perm"])
    except KeyError as e:
        raise ValueError(f"protocol definition lacks the field {e.args[0]!r}") from None
    groups = {k: tuple(v) for k, v in dict(d.get("groups", {})).items()}
    names = tuple(d.get("point_names") or _names_from_groups(L, groups))

    def norm(key: str, nd: Mapping) -> Normalizer:
        return Normalizer(
            name=str(nd.get("name", key)),
            kind=nd.get("kind", "points"),
            left=tuple(int(i) for i in nd.get("left", ())),
            right=tuple(int(i) for i in nd.get("right", ())),
            box_formula=nd.get("box_formula"),
        )

    if "normalizers" in d:
        normalizers = {k: norm(k, v) for k, v in dict(d["normalizers"]).items()}
        default = str(d.get("default_normalizer", next(iter(normalizers), "")))
    elif "normalizer" in d:
        normalizers = {"default": norm("default", d["normalizer"])}
        default = "default"
    else:
        raise ValueError(f"protocol {name!r}: give 'normalizers' or 'normalizer'")
    five = d.get("five_point")
    return Protocol(
        name=name,
        num_points=L,
        flip_perm=perm,
        point_names=names,
        groups=groups,
        normalizers=normalizers,
        default_normalizer=default,
        five_point=None if five is None else tuple(tuple(g) for g in five),
        attributes=tuple(d.get("attributes", ())),
        description=str(d.get("description", "")),
    )


def load_protocol(path: str | Path) -> Protocol:
    """Read a user-defined protocol from a ``.json`` or ``.toml`` file; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"{path}: cannot read the protocol file ({e.strerror or e})") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
        return protocol_from_dict(data)
    except (ValueError, TypeError) as e:  # JSON/TOML syntax errors are ValueErrors too
        raise ValueError(f"{path}: {e}") from None


def get_protocol(spec: str | Path | Mapping | Protocol) -> Protocol:
    """THE resolver: a built-in name (``"wflw98"``, ``"300w68"``, ``"cofw29"``, ``"aflw19"``, ``"5pt"``
    or an alias), a ``.json`` / ``.toml`` file path, or a stored definition (a mapping, as
    :meth:`Protocol.to_dict` writes it) -> a :class:`Protocol`. A Protocol passes through.

    >>> get_protocol("300w68").num_points
    68
    """
    if isinstance(spec, Protocol):
        return spec
    if isinstance(spec, Mapping):
        return protocol_from_dict(spec)
    key = str(spec)
    if key.lower().endswith((".json", ".toml")):
        return load_protocol(key)
    key = _ALIASES.get(key.lower(), key.lower())
    try:
        return PROTOCOLS[key]
    except KeyError:
        raise ValueError(
            f"unknown protocol {spec!r}; known: {sorted(PROTOCOLS)} (or a .json/.toml file)"
        ) from None


def protocol_spec(protocol: Protocol) -> str | dict:
    """What :func:`get_protocol` reads back to ``protocol``: a built-in's name, else its full definition
    (so configs and checkpoints of a user's protocol do not depend on its file)."""
    return protocol.name if PROTOCOLS.get(protocol.name) == protocol else protocol.to_dict()


def spec_name(spec: str | Mapping | Protocol) -> str:
    """The protocol name a stored spec stands for (a name, a file path, a definition), reading no file."""
    if isinstance(spec, Protocol):
        return spec.name
    if isinstance(spec, Mapping):
        return str(spec.get("name", ""))
    text = str(spec)
    return Path(text).stem if text.lower().endswith((".json", ".toml")) else text


def require_protocol(protocol: object) -> Protocol:
    """``protocol`` itself if it is a :class:`Protocol`; below the edge nothing resolves names."""
    if not isinstance(protocol, Protocol):
        raise TypeError(f"expected a sepbn.protocols.Protocol (resolve names once, with get_protocol), "
                        f"got {protocol!r}")
    return protocol
