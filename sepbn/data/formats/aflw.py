"""AFLW with the 19-point markup (Zhu et al., CVPR 2016; paper section V: AFLW-Full, AFLW-Frontal).

``AFLWinfo_release.mat`` holds ``data`` (N x 38: 19 x then 19 y), ``bbox`` (N x 4:
left, right, top, bottom), ``mask_new`` (N x 19, 1 = visible), ``nameList`` (cell of
image paths relative to the AFLW image root) and ``ra`` (a fixed 1-based permutation).
Splits: ``train`` = ``ra[:20000]``, ``full`` = ``ra[20000:]`` (4,386 faces), ``frontal`` =
the full-set faces whose 19 ``mask_new`` flags are all 1 (1,165 by this rule; the paper's
text says 1,314 — the count is logged at INFO). ``train_size`` moves the 20,000 cut.
Without ``split`` every face is read in file order. Usually v5 (scipy), v7.3 also read.

Coordinate convention as COFW: values are MATLAB 1-based, ``origin`` (default 1) is
subtracted from points and box; the writer adds it back. ``visible`` = ``mask_new == 1``;
``attributes["frontal"]`` is True when all 19 are visible.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from ..protocols import AFLW19
from ..records import FaceRecord
from .common import check_values, image_root, relative_image, require_protocol, resolve_image
from .errors import FormatError, Issues
from .matfile import as_rows, load_mat, save_mat

__all__ = ["read_aflw", "write_aflw", "AFLW_SPLITS"]

log = logging.getLogger(__name__)
L = AFLW19.num_points
AFLW_SPLITS = ("train", "full", "frontal")
_KEYS = ("data", "bbox", "mask_new", "nameList", "ra")
_COLUMNS = [f"x{i}" for i in range(L)] + [f"y{i}" for i in range(L)]
_BOX = ("left", "right", "top", "bottom")


def _split_rows(path: Path, ra: np.ndarray, n: int, split: str | None, train_size: int) -> np.ndarray:
    if split is None:
        return np.arange(n)
    if split not in AFLW_SPLITS:
        raise ValueError(f"AFLW split must be one of {AFLW_SPLITS}, got {split!r}")
    ra = np.asarray(ra, dtype=np.float64).ravel()
    if sorted(ra.tolist()) != list(range(1, n + 1)):
        raise FormatError(str(path), f"is not a 1-based permutation of the {n} faces", "ra")
    if not 0 <= train_size <= n:
        raise ValueError(f"train_size must be in 0..{n}, got {train_size}")
    rows = ra.astype(np.int64) - 1  # 1-based (MATLAB) -> 0-based row
    return rows[:train_size] if split == "train" else rows[train_size:]


def read_aflw(
    source: Path, *, images: Path | None, split: str | None, issues: Issues,
    origin: float = 1.0, train_size: int = 20000,
) -> list[FaceRecord]:
    """Read ``AFLWinfo_release.mat``; image paths relative to ``images`` (default: its folder)."""
    path = Path(source)
    if path.is_dir():
        path = path / "AFLWinfo_release.mat"
    data = load_mat(path, _KEYS)
    missing = [k for k in _KEYS if k not in data and not (k == "ra" and split is None)]
    if missing:
        raise FormatError(str(path), f"lacks the variables {missing}")
    pts = as_rows(path, "data", data["data"], 2 * L)
    boxes = as_rows(path, "bbox", data["bbox"], 4)
    mask = as_rows(path, "mask_new", data["mask_new"], L)
    names = np.asarray(data["nameList"], dtype=object).ravel(order="F")
    if not len(pts) == len(boxes) == len(mask) == len(names):
        raise FormatError(str(path), f"{len(pts)} rows of data, {len(boxes)} of bbox, {len(mask)} of mask_new, "
                          f"{len(names)} names")
    rows = _split_rows(path, data.get("ra"), len(pts), split, train_size)
    if split == "frontal":
        rows = rows[(mask[rows] == 1).all(axis=1)]
        log.info("AFLW-Frontal: %d faces (test faces with all %d points visible)", len(rows), L)
    root = image_root(images, path.parent)
    records = []
    for i in rows:
        where = f"{path}#{i}"
        with issues.record():
            check_values(pts[i], where, lambda j: f"data[:, {j}] ({_COLUMNS[j]})")
            check_values(boxes[i], where, lambda j: f"bbox[:, {j}] ({_BOX[j]})")
            if not isinstance(names[i], str):
                raise FormatError(where, f"{names[i]!r} is not a path", f"nameList{{{i}}}")
            m = mask[i]
            check_values(m, where, lambda j: f"mask_new[:, {j}]", binary=True)
            left, right, top, bottom = (float(v) - origin for v in boxes[i])
            records.append(FaceRecord(
                landmarks=np.stack([pts[i, :L], pts[i, L:]], axis=1) - origin,
                box=(left, top, right, bottom), protocol=AFLW19.name,
                image_path=resolve_image(root, names[i]), visible=m == 1,
                attributes={"frontal": bool((m == 1).all())}, source=where,
            ))
    return records


def write_aflw(
    records: Sequence[FaceRecord], dest: Path, *, images: Path | None = None, ra: Sequence[int] | None = None,
    version: str = "5", origin: float = 1.0,
) -> None:
    """Write an ``AFLWinfo_release.mat``-style file (v5 or v7.3). ``ra`` (1-based) defaults
    to file order; image paths are relative to ``images`` (default: dest's folder)."""
    dest = Path(dest)
    root = image_root(images, dest.parent)
    require_protocol(records, AFLW19.name, "AFLW")
    n = len(records)
    data, bbox, mask = np.zeros((n, 2 * L)), np.zeros((n, 4)), np.ones((n, L))
    names = np.empty((n, 1), dtype=object)
    for i, r in enumerate(records):
        p = np.asarray(r.landmarks, dtype=np.float64) + origin
        data[i] = np.concatenate([p[:, 0], p[:, 1]])
        x0, y0, x1, y1 = (float(v) + origin for v in r.box)
        bbox[i] = (x0, x1, y0, y1)
        if r.visible is not None:
            mask[i] = np.asarray(r.visible, dtype=np.float64)
        names[i, 0] = relative_image(r.image_path, root, r.source or f"record {i}")
    order = np.arange(1, n + 1) if ra is None else np.asarray(ra)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_mat(dest, {"data": data, "bbox": bbox, "mask_new": mask, "nameList": names,
                    "ra": order.astype(np.float64).reshape(1, -1)}, version=version)
