"""300-W annotations (Sagonas et al., 2013): ``.pts`` files and the HRNet-style CSV.

``.pts``: an optional header (``version: 1``, ``n_points: 68``, ``{``), one ``x y`` line per
point, ``}``. Coordinates are 1-based (MATLAB) and become 0-based here (minus 1); the
writer adds 1 back. The box is the tight landmark bounding box unless ``boxes=`` gives one per image
(300-W's detector boxes come in separate files); the dataset's crop enlarges it.
Splits by folder under the 300-W root: train = afw + helen/trainset + lfpw/trainset
(3,148), common = helen/testset + lfpw/testset (554), challenging = ibug (135),
full = common + challenging (689). A folder, a ``.pts`` file or a list of them also works.

HRNet CSV (``face_landmarks_300w_*.csv``): ``image_name,scale,center_w,center_h,x0,y0,...``
with ``scale`` = box side / 200. The box is the square of side ``200 * scale`` around the
centre. Its points are taken as 0-based (HRNet adds 1 before its 1-based crop); pass
``origin=1`` for a CSV that copies the ``.pts`` values.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..protocols import W300_68, Protocol, get_protocol
from ..records import FaceRecord
from .common import (
    fmt_num, image_root, interleaved_names, landmark_box, one_file_root, parse_floats, read_lines, relative_image,
    require_protocol, resolve_image, write_lines,
)
from .errors import FormatError, Issues

__all__ = ["read_300w", "read_300w_csv", "write_300w", "write_300w_csv", "SPLITS_300W", "parse_pts"]

log = logging.getLogger(__name__)

SPLITS_300W: dict[str, tuple[str, ...]] = {
    "train": ("afw", "helen/trainset", "lfpw/trainset"),
    "common": ("helen/testset", "lfpw/testset"),
    "challenging": ("ibug",),
    "full": ("helen/testset", "lfpw/testset", "ibug"),
}
_IMAGE_EXTS = (".jpg", ".png", ".jpeg", ".JPG", ".PNG", ".JPEG", ".bmp")


def parse_pts(path: Path, num_points: int) -> np.ndarray:
    """The points of one ``.pts`` file as written (1-based), shape (num_points, 2)."""
    lines = read_lines(path)
    declared, body = None, lines
    if lines[0][1].strip().lower().startswith("version"):
        if len(lines) < 3 or not lines[1][1].strip().lower().startswith("n_points"):
            raise FormatError(f"{path}:{lines[min(1, len(lines) - 1)][0]}", "header has no 'n_points:' line")
        lineno, text = lines[1]
        value = text.split(":", 1)[1].strip() if ":" in text else ""
        if not value.isdigit():
            raise FormatError(f"{path}:{lineno}", f"{value!r} is not a point count", "n_points")
        declared = int(value)
        if lines[2][1].strip() != "{":
            raise FormatError(f"{path}:{lines[2][0]}", f"expected '{{', got {lines[2][1].strip()!r}")
        if lines[-1][1].strip() != "}":
            raise FormatError(f"{path}:{lines[-1][0]}", f"expected '}}' at the end, got {lines[-1][1].strip()!r}")
        body = lines[3:-1]
    pts = []
    for k, (lineno, text) in enumerate(body):
        tokens = text.split()
        if len(tokens) != 2:
            raise FormatError(f"{path}:{lineno}", f"{len(tokens)} fields, expected 2 ('x y' of point {k})")
        pts.append(parse_floats(tokens, f"{path}:{lineno}", 1, [f"x{k}", f"y{k}"]))
    where = f"{path}:{body[-1][0] if body else lines[-1][0]}"
    if declared is not None and declared != len(pts):
        raise FormatError(where, f"header declares {declared} points, file has {len(pts)}", "n_points")
    if len(pts) != num_points:
        raise FormatError(where, f"{len(pts)} points, but the protocol has {num_points}", "n_points")
    return np.asarray(pts, dtype=np.float64)


def _pts_files(source, split: str | None, missing_ok: bool) -> list[tuple[Path, Path]]:
    """(pts file, folder its image path is relative to) for each face, sorted per folder."""
    if isinstance(source, (list, tuple)):
        if split is not None:
            raise ValueError("split= selects folders of a 300-W root; do not combine it with a list of files")
        out = []
        for s in source:
            out += _pts_files(Path(s), None, missing_ok)
        return out
    source = Path(source)
    if source.suffix.lower() == ".pts":
        if split is not None:
            raise ValueError(f"split={split!r} selects folders of a 300-W root, but {source} is a file")
        return [(source, source.parent)]
    if not source.is_dir():
        raise FormatError(str(source), "no such .pts file or 300-W folder")
    if split is None:
        return [(p, source) for p in sorted(source.rglob("*.pts"))]
    if split not in SPLITS_300W:
        raise ValueError(f"300-W split must be one of {sorted(SPLITS_300W)}, got {split!r}")
    folders = [source / f for f in SPLITS_300W[split]]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing and not missing_ok:
        raise FormatError(str(source), f"split {split!r} needs the folders {missing} (or pass missing_ok=True)")
    if missing:
        log.warning("300-W split %r: folders missing, read without them: %s", split, missing)
    return [(p, source) for f in folders if f.is_dir() for p in sorted(f.rglob("*.pts"))]


def _image_for(pts: Path, rel_root: Path, images: Path | None) -> str:
    folder = pts.parent if images is None else Path(images) / pts.parent.relative_to(rel_root)
    for ext in _IMAGE_EXTS:
        cand = folder / (pts.stem + ext)
        if cand.is_file():
            return str(cand)
    return str(folder / (pts.stem + ".jpg"))  # checked when the image is loaded (or by check_images)


def read_300w(
    source, *, images: Path | None, split: str | None, issues: Issues,
    protocol: str | Protocol = W300_68, missing_ok: bool = False,
    boxes: Mapping[str, Sequence[float]] | None = None,
) -> list[FaceRecord]:
    """Read 300-W ``.pts`` files: a 300-W root with ``split=``, a folder, a file or a list.

    ``images``: a root that mirrors the folders of the ``.pts`` files (default: the image
    next to each ``.pts``, same name, .jpg/.png). ``missing_ok``: read a split whose
    folders are partly absent (logged), e.g. a subset of 300-W. ``boxes``: face boxes
    ``(x_min, y_min, x_max, y_max)`` (0-based) by image file name (e.g. from 300-W's
    ``bounding_boxes_*.mat``), used instead of the landmark box; a face without one is an error.
    """
    proto = get_protocol(protocol)
    records = []
    for pts_file, rel_root in _pts_files(source, split, missing_ok):
        with issues.record():
            pts = parse_pts(pts_file, proto.num_points) - 1.0  # 1-based -> 0-based
            image = _image_for(pts_file, rel_root, images)
            if boxes is None:
                box = landmark_box(pts)
            elif Path(image).name in boxes:
                box = tuple(float(v) for v in boxes[Path(image).name])
            else:
                raise FormatError(f"{pts_file}:1", f"no entry for {Path(image).name!r} in boxes=", "box")
            records.append(FaceRecord(
                landmarks=pts, box=box, protocol=proto.name, image_path=image, source=f"{pts_file}:1",
            ))
    return records


def write_300w(records: Sequence[FaceRecord], dest: Path, *, header: bool = True) -> None:
    """Write one ``.pts`` per face (1-based) into the folder ``dest``, named after its image
    (``dest`` may be a ``.pts`` path for a single face). Images are not copied: the reader
    looks for them next to the ``.pts``, so write into the images' folder to read back."""
    dest = Path(dest)
    if dest.suffix.lower() == ".pts":
        if len(records) != 1:
            raise ValueError(f"{dest}: a .pts file holds one face, got {len(records)} records")
        targets = [dest]
    else:
        targets, seen = [], set()
        for i, r in enumerate(records):
            if r.image_path is None:
                raise ValueError(f"{r.source or f'record {i}'}: no image_path to name the .pts after")
            t = dest / (Path(r.image_path).stem + ".pts")
            if t in seen:
                raise ValueError(f"{r.source or f'record {i}'}: two faces would share {t}; 300-W has one per image")
            seen.add(t)
            targets.append(t)
    for r, t in zip(records, targets):
        pts = np.asarray(r.landmarks, dtype=np.float64) + 1.0
        body = [f"{fmt_num(x)} {fmt_num(y)}" for x, y in pts]
        head = ["version: 1", f"n_points: {len(pts)}", "{"] if header else []
        write_lines(t, head + body + (["}"] if header else []))


def read_300w_csv(
    source: Path, *, images: Path | None, split: str | None, issues: Issues,
    protocol: str | Protocol = W300_68, origin: float = 0.0,
) -> list[FaceRecord]:
    """Read an HRNet-style CSV; image names relative to ``images`` (default: the CSV's folder)."""
    source, root = one_file_root(source, images, split, "the 300-W CSV")
    proto = get_protocol(protocol)
    n = 4 + 2 * proto.num_points
    names = ["image_name", "scale", "center_w", "center_h"] + interleaved_names(proto.num_points)
    records = []
    for k, (lineno, line) in enumerate(read_lines(source)):
        where = f"{source}:{lineno}"
        tokens = [t.strip() for t in line.split(",")]
        if k == 0 and tokens[0] == "image_name":
            continue  # header
        with issues.record():
            if len(tokens) != n:
                raise FormatError(where, f"{len(tokens)} fields, expected {n} "
                                  f"(image_name, scale, center_w, center_h, {proto.num_points} x,y pairs)")
            nums = parse_floats(tokens[1:], where, 2, names[1:])
            s, cx, cy = nums[0], nums[1] - origin, nums[2] - origin
            if s <= 0:
                raise FormatError(where, f"{tokens[1]!r} is not a positive scale", "2 (scale)")
            half = 100.0 * s
            records.append(FaceRecord(
                landmarks=nums[3:].reshape(-1, 2) - origin,
                box=(cx - half, cy - half, cx + half, cy + half), protocol=proto.name,
                image_path=resolve_image(root, tokens[0]), source=where,
            ))
    return records


def write_300w_csv(
    records: Sequence[FaceRecord], dest: Path, *, images: Path | None = None, origin: float = 0.0,
) -> None:
    """Write an HRNet-style CSV: centre = box centre, scale = max(box w, h) / 200 (the
    reader returns that square box)."""
    dest = Path(dest)
    root = image_root(images, dest.parent)
    if records:
        require_protocol(records, records[0].protocol, "a 300-W CSV")
    L = np.asarray(records[0].landmarks).shape[0] if records else W300_68.num_points
    lines = [",".join(["image_name", "scale", "center_w", "center_h"] +
                      [f"original_{i}_{c}" for i in range(L) for c in "xy"])]
    for i, r in enumerate(records):
        x0, y0, x1, y1 = r.box
        scale = max(x1 - x0, y1 - y0) / 200.0
        nums = [scale, (x0 + x1) / 2 + origin, (y0 + y1) / 2 + origin]
        nums += list(np.asarray(r.landmarks, dtype=np.float64).reshape(-1) + origin)
        lines.append(",".join([relative_image(r.image_path, root, r.source or f"record {i}")] +
                              [fmt_num(v) for v in nums]))
    write_lines(dest, lines)
