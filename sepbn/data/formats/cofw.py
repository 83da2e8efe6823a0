"""COFW, 29 points with occlusion flags (Burgos-Artizzu et al., ICCV 2013; paper section V).

``COFW_train_color.mat`` holds ``IsTr`` (cell of images), ``phisTr`` (N x 87: 29 x, 29 y,
29 occlusion flags, 1 = occluded) and ``bboxesTr`` (N x 4: x, y, w, h);
``COFW_test_color.mat`` holds ``IsT``, ``phisT``, ``bboxesT``. The colour files are MATLAB
v7.3 (HDF5), the older grey ``COFW.mat`` is v5 and holds both sets: both are read
(:mod:`.matfile`). Images are uint8 (H, W, 3) or grey (H, W) and stay in
``record.image`` (``image_path`` is None).

Coordinate convention: the values come from MATLAB, so they are read as 1-based pixels
and ``origin`` (default 1) is subtracted from points and box corners; the writer adds it
back. ``origin=0`` takes them as written, as some peers do (a 1 px shift of both the
ground truth and the crop; NME is unchanged when predictions use the same frame).
``visible`` is ``flag == 0``; ``attributes["occluded_points"]`` counts the occluded ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..protocols import COFW29
from ..records import FaceRecord
from .common import check_values, require_protocol, xywh_to_box
from .errors import FormatError, Issues
from .matfile import as_rows, load_mat, save_mat

__all__ = ["read_cofw", "write_cofw", "COFW_FILES", "COFW_KEYS"]

L = COFW29.num_points
COFW_FILES = {
    "train": ("COFW_train_color.mat", "COFW_train.mat", "COFW.mat"),
    "test": ("COFW_test_color.mat", "COFW_test.mat", "COFW.mat"),
}
COFW_KEYS = {"train": ("IsTr", "phisTr", "bboxesTr"), "test": ("IsT", "phisT", "bboxesT")}
_COLUMNS = [f"x{i}" for i in range(L)] + [f"y{i}" for i in range(L)] + [f"occlusion{i}" for i in range(L)]


def _mat_file(source: Path, split: str | None) -> Path:
    if source.is_dir():
        if split not in COFW_FILES:
            raise ValueError(f"COFW split must be one of {sorted(COFW_FILES)} for a folder, got {split!r}")
        for name in COFW_FILES[split]:
            if (source / name).is_file():
                return source / name
        raise FormatError(str(source), f"none of {list(COFW_FILES[split])} found")
    return source


def read_cofw(
    source: Path, *, images: Path | None, split: str | None, issues: Issues, origin: float = 1.0,
) -> list[FaceRecord]:
    """Read a COFW ``.mat`` (v5 or v7.3) or ``split="train"/"test"`` of a folder holding them.
    A file with both sets (grey ``COFW.mat``) needs ``split``."""
    if images is not None:
        raise ValueError("COFW images live inside the .mat file; do not pass images=")
    path = _mat_file(Path(source), split)
    data = load_mat(path, [k for keys in COFW_KEYS.values() for k in keys])
    if split is not None and split not in COFW_KEYS:
        raise ValueError(f"COFW split must be one of {sorted(COFW_KEYS)}, got {split!r}")
    present = [s for s, keys in COFW_KEYS.items() if all(k in data for k in keys)]
    if not present:
        raise FormatError(str(path), f"holds none of the COFW variable sets {list(COFW_KEYS.values())}")
    chosen = split if split is not None else present[0]
    if split is None and len(present) > 1:
        raise FormatError(str(path), f"holds both sets {present}; choose one with split='train' or 'test'")
    if chosen not in present:
        raise FormatError(str(path), f"lacks the {chosen} variables {COFW_KEYS[chosen]}")
    ik, pk, bk = COFW_KEYS[chosen]
    imgs = np.asarray(data[ik], dtype=object).ravel(order="F")
    phis = as_rows(path, pk, data[pk], 3 * L)
    boxes = as_rows(path, bk, data[bk], 4)
    if not len(imgs) == len(phis) == len(boxes):
        raise FormatError(str(path), f"{len(imgs)} images, {len(phis)} rows of {pk}, {len(boxes)} rows of {bk}")
    records = []
    for i in range(len(phis)):
        where = f"{path}#{i}"
        with issues.record():
            check_values(phis[i], where, lambda j: f"{pk}[:, {j}] ({_COLUMNS[j]})")
            check_values(boxes[i], where, lambda j: f"{bk}[:, {j}] ({'xywh'[j]})")
            img = np.asarray(imgs[i])
            if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
                raise FormatError(where, f"image of shape {img.shape} dtype {img.dtype}, "
                                  "expected uint8 (H, W) or (H, W, 3)", f"{ik}{{{i}}}")
            occ = phis[i, 2 * L:]
            check_values(occ, where, lambda j: f"{pk}[:, {2 * L + j}] ({_COLUMNS[2 * L + j]})", binary=True)
            x, y, w, h = boxes[i]
            records.append(FaceRecord(
                landmarks=np.stack([phis[i, :L], phis[i, L:2 * L]], axis=1) - origin,
                box=xywh_to_box(x - origin, y - origin, w, h), protocol=COFW29.name,
                image_path=None, visible=occ == 0, attributes={"occluded_points": int(occ.sum())},
                source=where, image=np.ascontiguousarray(img),
            ))
    return records


def write_cofw(
    records: Sequence[FaceRecord], dest: Path, *, split: str = "train", version: str = "5", origin: float = 1.0,
) -> None:
    """Write a COFW ``.mat`` with the ``split``'s variable names (v5 or v7.3). Images come
    from ``record.image`` (kept grey if grey) or are loaded from ``image_path``."""
    if split not in COFW_KEYS:
        raise ValueError(f"COFW split must be one of {sorted(COFW_KEYS)}, got {split!r}")
    require_protocol(records, COFW29.name, "COFW")
    n = len(records)
    imgs = np.empty((n, 1), dtype=object)
    phis = np.zeros((n, 3 * L))
    boxes = np.zeros((n, 4))
    for i, r in enumerate(records):
        imgs[i, 0] = np.asarray(r.image if r.image is not None else r.load_image(), dtype=np.uint8)
        pts = np.asarray(r.landmarks, dtype=np.float64) + origin
        vis = np.ones(L, bool) if r.visible is None else np.asarray(r.visible, bool)
        phis[i] = np.concatenate([pts[:, 0], pts[:, 1], (~vis).astype(np.float64)])
        x0, y0, x1, y1 = r.box
        boxes[i] = (x0 + origin, y0 + origin, x1 - x0, y1 - y0)
    ik, pk, bk = COFW_KEYS[split]
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    save_mat(Path(dest), {ik: imgs, pk: phis, bk: boxes}, version=version)
