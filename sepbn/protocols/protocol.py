"""The Protocol type: one landmark definition (points, names, groups, flip, NME normalisers, the shared
5 points) with its checks, and its plain-dict form (:meth:`Protocol.to_dict`, :func:`protocol_from_dict`).
The conventions it follows are stated once, in :mod:`sepbn.protocols`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

import numpy as np

__all__ = ["Normalizer", "Protocol", "protocol_from_dict", "WFLW_ATTRIBUTES", "ALIASES"]

# Friendly spellings of the built-ins' names, accepted by get_protocol and Protocol.answers_to (one hop to the same objects).
ALIASES = {"wflw": "wflw98", "300w": "300w68", "cofw": "cofw29", "aflw": "aflw19", "five": "5pt",
            "mtfl": "5pt", "wider5": "5pt"}

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
        return name == self.name or ALIASES.get(key, key) == self.name.lower()

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
