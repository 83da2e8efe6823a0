"""WIDER FACE with RetinaFace's 5-point labels (Deng et al., CVPR 2020; paper section V-A).

``label.txt``: a ``# relative/path.jpg`` line per image, then one line per face:
``x y w h  lx0 ly0 f0  ...  lx4 ly4 f4  score`` (20 numbers). Flag 0 = visible, 1 =
occluded (``visible`` is ``flag == 0``); a face whose 15 landmark fields are all -1 (and
any face line with only the 4 box numbers, as in the val/test lists) has no landmark
annotation: it is not an error, it is listed in ``.skipped`` with that reason. The box is
the given ``x, y, w, h``; coordinates are taken as written (0-based pixels).

The paper keeps faces whose box width and height both exceed 80 px: ``min_size=80``
(faces at or below it are listed in ``.skipped``); ``min_size=0`` keeps all.
Images: ``images`` root, default ``<label.txt folder>/images`` if present, else the folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..protocols import FIVE_POINT
from ..records import FaceRecord
from .common import (
    check_values, fmt_num, image_root, parse_floats, read_lines, relative_image, require_protocol, resolve_image,
    write_lines, xywh_to_box,
)
from .errors import FormatError, Issues

__all__ = ["read_wider5", "write_wider5"]

_NAMES = ["x", "y", "w", "h"] + [f"{c}{i}" for i in range(5) for c in ("x", "y", "flag")] + ["score"]


def read_wider5(
    source: Path, *, images: Path | None, split: str | None, issues: Issues, min_size: float = 80.0,
) -> list[FaceRecord]:
    """Read a RetinaFace ``label.txt`` (or ``split="train"`` etc. of its folder: ``<split>/label.txt``)."""
    source = Path(source)
    if split is not None:
        source = source / split / "label.txt"
    if images is None:
        images = source.parent / "images" if (source.parent / "images").is_dir() else source.parent
    records, image, n_in_image = [], None, 0
    for lineno, line in read_lines(source):
        where = f"{source}:{lineno}"
        if line.lstrip().startswith("#"):
            image, n_in_image = resolve_image(Path(images), line.lstrip()[1:].strip()), 0
            continue
        with issues.record():
            if image is None:
                raise FormatError(where, "face line before the first '# image' line")
            tokens = line.split()
            if len(tokens) not in (4, 20):
                raise FormatError(where, f"{len(tokens)} fields, expected 20 (x y w h, 5 x (lx ly flag), "
                                  "score) or 4 (a box without landmarks)")
            nums = parse_floats(tokens, where, 1, _NAMES)
            x, y, w, h = nums[:4]
            n_in_image += 1
            if len(nums) == 4 or np.all(nums[4:19] == -1):
                issues.skip(where, "no landmark annotation")
                continue
            if not (w > min_size and h > min_size):
                issues.skip(where, f"box {w:g}x{h:g} not above min_size {min_size:g}")
                continue
            lm = nums[4:19].reshape(5, 3)
            check_values(lm[:, 2], where, lambda k: f"{7 + 3 * k} (flag{k})", binary=True,
                         shown=lambda k: repr(tokens[6 + 3 * k]), expected="0 (visible) or 1 (occluded)")
            records.append(FaceRecord(
                landmarks=lm[:, :2].copy(), box=xywh_to_box(x, y, w, h), protocol=FIVE_POINT.name,
                image_path=image, visible=lm[:, 2] == 0.0,
                attributes={"score": float(nums[19]), "face_index": n_in_image - 1}, source=where,
            ))
    return records


def write_wider5(records: Sequence[FaceRecord], dest: Path, *, images: Path | None = None) -> None:
    """Write a RetinaFace ``label.txt``: faces grouped under their image's ``#`` line in
    first-seen order; paths relative to ``images`` (default: ``<dest folder>/images``)."""
    dest = Path(dest)
    root = image_root(images, dest.parent / "images")
    require_protocol(records, FIVE_POINT.name, "WIDER label.txt")
    groups: dict[str, list[FaceRecord]] = {}
    for i, r in enumerate(records):
        groups.setdefault(relative_image(r.image_path, root, r.source or f"record {i}"), []).append(r)
    lines = []
    for rel, faces in groups.items():
        lines.append(f"# {rel}")
        for r in faces:
            x0, y0, x1, y1 = r.box
            vis = np.ones(5, bool) if r.visible is None else np.asarray(r.visible, bool)
            nums = [x0, y0, x1 - x0, y1 - y0]
            for (px, py), v in zip(np.asarray(r.landmarks, dtype=np.float64), vis):
                nums += [px, py, 0.0 if v else 1.0]
            nums.append(float(r.attributes.get("score", 1.0)))
            lines.append(" ".join(fmt_num(v) for v in nums))
    write_lines(dest, lines)
