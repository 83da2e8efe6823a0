"""WFLW annotation lists (Wu et al., "Look at Boundary", CVPR 2018; used in the paper's section V).

``list_98pt_rect_attr_{train,test}.txt``: one face per line, space separated, 207 fields:
196 numbers ``x0 y0 ... x97 y97``, the official rectangle ``x_min y_min x_max y_max``, six
0/1 attribute flags (pose, expression, illumination, make-up, occlusion, blur — the order
of ``protocols.WFLW_ATTRIBUTES``) and the image path relative to ``WFLW_images/``.
Coordinates are taken as written (0-based pixels). The box is the official rectangle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..protocols import WFLW98, WFLW_ATTRIBUTES
from ..records import FaceRecord
from .common import (
    check_values, fmt_num, image_root, interleaved_names, parse_floats, read_lines, relative_image,
    require_protocol, resolve_image, write_lines,
)
from .errors import FormatError, Issues

__all__ = ["read_wflw", "write_wflw", "WFLW_FILES"]

L = WFLW98.num_points
NUM_FIELDS = 2 * L + 4 + len(WFLW_ATTRIBUTES) + 1
_NAMES = interleaved_names(L) + ["x_min", "y_min", "x_max", "y_max"] + [f"attribute {a}" for a in WFLW_ATTRIBUTES]
WFLW_FILES = {
    "train": "list_98pt_rect_attr_train_test/list_98pt_rect_attr_train.txt",
    "test": "list_98pt_rect_attr_train_test/list_98pt_rect_attr_test.txt",
}


def _list_file(source: Path, split: str | None) -> Path:
    if source.is_file() or split is None:
        if split is not None:
            raise ValueError(f"split={split!r} is for a WFLW_annotations folder, but {source} is a file")
        return source
    if split not in WFLW_FILES:
        raise ValueError(f"WFLW split must be one of {sorted(WFLW_FILES)}, got {split!r}")
    for cand in (source / WFLW_FILES[split], source / Path(WFLW_FILES[split]).name):
        if cand.is_file():
            return cand
    raise FormatError(str(source / WFLW_FILES[split]), "annotation file not found")


def _default_images(txt: Path) -> Path:
    # The release unpacks as WFLW_annotations/list_.../x.txt next to WFLW_images/.
    for parent in list(txt.parents)[:3]:
        if (parent / "WFLW_images").is_dir():
            return parent / "WFLW_images"
    return txt.parent


def read_wflw(source: Path, *, images: Path | None, split: str | None, issues: Issues) -> list[FaceRecord]:
    """Read a WFLW list file (or ``split="train"/"test"`` of a ``WFLW_annotations`` folder).

    ``images`` is the ``WFLW_images`` root (default: found next to the annotations, else
    the list file's folder).
    """
    txt = _list_file(Path(source), split)
    root = image_root(images, _default_images(txt))
    records = []
    for lineno, line in read_lines(txt):
        where = f"{txt}:{lineno}"
        with issues.record():
            tokens = line.split()
            if len(tokens) != NUM_FIELDS:
                raise FormatError(where, f"{len(tokens)} fields, expected {NUM_FIELDS} "
                                  f"(196 coordinates, 4 box numbers, 6 attribute flags, image path)")
            nums = parse_floats(tokens[:-1], where, 1, _NAMES)
            flags = nums[2 * L + 4:]
            first = 2 * L + 4
            check_values(flags, where, lambda k: f"{first + k + 1} ({_NAMES[first + k]})", binary=True,
                         shown=lambda k: repr(tokens[first + k]))
            records.append(FaceRecord(
                landmarks=nums[: 2 * L].reshape(L, 2),
                box=tuple(float(v) for v in nums[2 * L: 2 * L + 4]),
                protocol=WFLW98.name,
                image_path=resolve_image(root, tokens[-1]),
                attributes={a: bool(f) for a, f in zip(WFLW_ATTRIBUTES, flags)},
                source=where,
            ))
    return records


def write_wflw(records: list[FaceRecord], dest: Path, *, images: Path | None = None) -> None:
    """Write a WFLW list file; image paths relative to ``images`` (default: dest's folder).
    Missing attribute flags are written as 0."""
    dest = Path(dest)
    root = image_root(images, dest.parent)
    require_protocol(records, WFLW98.name, "a WFLW list")
    lines = []
    for i, r in enumerate(records):
        where = r.source or f"record {i}"
        nums = list(np.asarray(r.landmarks, dtype=np.float64).reshape(-1)) + list(r.box)
        flags = [int(bool(r.attributes.get(a, False))) for a in WFLW_ATTRIBUTES]
        rel = relative_image(r.image_path, root, where)
        if any(c.isspace() for c in rel):
            raise ValueError(f"{where}: WFLW lists cannot hold an image path with spaces: {rel!r}")
        lines.append(" ".join([fmt_num(v) for v in nums] + [str(f) for f in flags] + [rel]))
    write_lines(dest, lines)
