"""MTFL (Zhang et al., "Facial Landmark Detection by Deep Multi-task Learning", ECCV 2014).

``training.txt`` (10,000 faces) / ``testing.txt`` (2,995): ``path x1 .. x5 y1 .. y5 gender
smile glasses pose`` — five x, then five y (left eye, right eye, nose, left and right mouth
corner; image left/right), then four labels (gender 1 male / 2 female, smile 1 yes / 2 no,
glasses 1 yes / 2 no, pose 1-5 from left profile to right profile), kept as integers under
those names in ``attributes``. As released, paths use backslashes (``lfw_5590\\x.jpg``)
and some lines start with a space; both are handled. Coordinates are taken as written.

The file has no face box: the box is a square centred on the landmarks' bounding box
with side ``box_scale`` (default 2.0) times its longer side — the five points span the
inner face (eyes to mouth), about half of a face's width.
"""

from __future__ import annotations

from pathlib import Path, PureWindowsPath
from typing import Sequence

import numpy as np

from ..protocols import FIVE_POINT
from ..records import FaceRecord
from .common import (
    enlarged_box, fmt_num, image_root, parse_floats, read_lines, relative_image, require_protocol, resolve_image,
    write_lines,
)
from .errors import FormatError, Issues

__all__ = ["read_mtfl", "write_mtfl", "MTFL_LABELS", "MTFL_FILES"]

MTFL_LABELS = ("gender", "smile", "glasses", "pose")
MTFL_FILES = {"train": "training.txt", "test": "testing.txt"}
_NAMES = ["path"] + [f"x{i}" for i in range(5)] + [f"y{i}" for i in range(5)] + list(MTFL_LABELS)


def read_mtfl(
    source: Path, *, images: Path | None, split: str | None, issues: Issues, box_scale: float = 2.0,
) -> list[FaceRecord]:
    """Read ``training.txt`` / ``testing.txt`` (or ``split="train"/"test"`` of the MTFL folder).
    Image paths are relative to ``images`` (default: the txt's folder)."""
    source = Path(source)
    if split is not None:
        if split not in MTFL_FILES:
            raise ValueError(f"MTFL split must be one of {sorted(MTFL_FILES)}, got {split!r}")
        source = source / MTFL_FILES[split]
    if box_scale <= 0:
        raise ValueError(f"box_scale must be > 0, got {box_scale}")
    root = image_root(images, source.parent)
    records = []
    for lineno, line in read_lines(source):
        where = f"{source}:{lineno}"
        with issues.record():
            tokens = line.split()
            if len(tokens) != len(_NAMES):
                raise FormatError(where, f"{len(tokens)} fields, expected {len(_NAMES)} "
                                  "(path, 5 x, 5 y, gender, smile, glasses, pose)")
            nums = parse_floats(tokens[1:], where, 2, _NAMES[1:])
            labels = nums[10:]
            for k, v in enumerate(labels):
                if not v.is_integer():
                    raise FormatError(where, f"{tokens[11 + k]!r} is not an integer label",
                                      f"{12 + k} ({MTFL_LABELS[k]})")
            pts = np.stack([nums[0:5], nums[5:10]], axis=1)
            records.append(FaceRecord(
                landmarks=pts, box=enlarged_box(pts, box_scale), protocol=FIVE_POINT.name,
                image_path=resolve_image(root, tokens[0]),
                attributes={n: int(v) for n, v in zip(MTFL_LABELS, labels)}, source=where,
            ))
    return records


def write_mtfl(records: Sequence[FaceRecord], dest: Path, *, images: Path | None = None) -> None:
    """Write an MTFL txt as released: backslash paths relative to ``images`` (default:
    dest's folder), CRLF line ends; missing labels are written as 0."""
    dest = Path(dest)
    root = image_root(images, dest.parent)
    require_protocol(records, FIVE_POINT.name, "MTFL")
    lines = []
    for i, r in enumerate(records):
        rel = str(PureWindowsPath(relative_image(r.image_path, root, r.source or f"record {i}")))
        pts = np.asarray(r.landmarks, dtype=np.float64)
        nums = [fmt_num(v) for v in list(pts[:, 0]) + list(pts[:, 1])]
        lines.append(" ".join([rel] + nums + [str(int(r.attributes.get(n, 0))) for n in MTFL_LABELS]))
    write_lines(dest, lines, newline="\r\n")
