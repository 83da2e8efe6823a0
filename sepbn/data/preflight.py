"""Pre-flight check of a dataset's images: every file exists, decodes, and fits its annotation.

A corrupt photo met in the middle of a 500-epoch run costs the run; a check before the first step
costs one decode per image, once. :func:`probe_images` opens every distinct image file (in
``workers`` threads: OpenCV decodes without holding the GIL, and records need no pickling) and
caches what it found in a JSON file keyed by each file's path, size and modification time, so a
restart does not pay again. :func:`check_records` then judges each face against its image's size:
its points and box must lie within ``tolerance`` times the image size beyond each edge (faces cut
by the frame are normal; a point far outside is a wrong coordinate convention, or an annotation made
for a photo of another size).

Causes, as counted in reports: ``missing``, ``unreadable``, ``truncated``, ``undecodable`` (the image),
``points outside``, ``box outside`` (the annotation against the image), ``duplicate`` (the same image,
box and points as an earlier face: it would count twice) and ``annotation`` (faces the format reader
already left out with ``skip_invalid``).

EXIF orientation: every reader decodes the stored pixel frame (``cv2.IMREAD_IGNORE_ORIENTATION``), the
frame the benchmarks' points are annotated in; the report lists images that carry an orientation tag
(read with Pillow, header only), whose viewers show them rotated against their points.
numpy, OpenCV and Pillow only.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..io import atomic_write_text
from .records import FaceRecord, jpeg_truncated

__all__ = ["ImageInfo", "Problem", "DatasetReport", "probe_image", "probe_images", "check_records",
           "geometry_problem", "exif_orientation", "CACHE_VERSION"]

CACHE_VERSION = 2  # 2: the EXIF orientation tag
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageInfo:
    """What decoding one image file found: its size, or why it cannot be used."""

    width: int = 0
    height: int = 0
    cause: str | None = None  # "missing" | "unreadable" | "truncated" | "undecodable"
    error: str | None = None
    orientation: int = 1  # the EXIF orientation tag (1: none, or "as stored"); the image is read as stored


@dataclass(frozen=True)
class Problem:
    """One face that cannot be trained on: ``where`` (the image or the annotation line) and why."""

    where: str
    cause: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def probe_image(path: str) -> ImageInfo:
    """Read and fully decode ``path``: its (width, height), or the cause and message of the failure."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        return ImageInfo(cause="missing", error="image file not found")
    except OSError as e:
        return ImageInfo(cause="unreadable", error=f"cannot read the image ({e.strerror or e})")
    if jpeg_truncated(data):
        return ImageInfo(cause="truncated", error=f"truncated JPEG ({data.size} bytes, no end-of-image marker)")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None  # as read_image
    if img is None:
        return ImageInfo(cause="undecodable", error=f"cannot decode the image ({data.size} bytes)")
    return ImageInfo(width=int(img.shape[1]), height=int(img.shape[0]), orientation=exif_orientation(path))


def exif_orientation(path: str) -> int:
    """The image's EXIF orientation tag (1 when it has none or Pillow cannot parse its header)."""
    try:
        with Image.open(path) as im:
            value = im.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):  # Pillow's errors for odd headers
        return 1
    return int(value) if isinstance(value, int) else 1


def _load_cache(path: Path | None) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a damaged cache is rebuilt, never trusted
    return data.get("images", {}) if data.get("version") == CACHE_VERSION else {}


def probe_images(paths: Iterable[str], *, workers: int = 1, cache: str | Path | None = None,
                 write: bool = True) -> dict[str, ImageInfo]:
    """:func:`probe_image` for every distinct path, ``workers`` at a time; results for files whose size
    and modification time are those in ``cache`` are taken from it, and the cache is rewritten
    (atomically) when anything was decoded and ``write`` is set."""
    cache = None if cache is None else Path(cache)
    known = _load_cache(cache)
    out: dict[str, ImageInfo] = {}
    stamps: dict[str, tuple[int, int]] = {}
    todo: list[str] = []
    for p in dict.fromkeys(paths):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            out[p] = ImageInfo(cause="missing", error="image file not found")
            continue
        except OSError as e:
            out[p] = ImageInfo(cause="unreadable", error=f"cannot read the image ({e.strerror or e})")
            continue
        stamps[p] = (st.st_size, st.st_mtime_ns)
        entry = known.get(p)
        if entry is not None and tuple(entry[:2]) == stamps[p]:
            out[p] = ImageInfo(*entry[2:])
        else:
            todo.append(p)
    if todo:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            out.update(zip(todo, pool.map(probe_image, todo)))
    if cache is not None and write and todo:
        images = {p: [*stamps[p], out[p].width, out[p].height, out[p].cause, out[p].error, out[p].orientation]
                  for p in stamps}
        atomic_write_text(cache, json.dumps({"version": CACHE_VERSION, "images": images}))
    return out


def geometry_problem(rec: FaceRecord, width: int, height: int,
                     tolerance: float = 0.5) -> tuple[str, str, str] | None:
    """``(cause, field, message)`` when a point or the box of ``rec`` lies more than ``tolerance`` times the
    image size beyond an edge of a ``width`` x ``height`` image; None when the face fits."""
    lo_x, hi_x = -tolerance * width, (width - 1) + tolerance * width
    lo_y, hi_y = -tolerance * height, (height - 1) + tolerance * height
    pts = np.asarray(rec.landmarks, dtype=np.float64)
    out = np.flatnonzero((pts[:, 0] < lo_x) | (pts[:, 0] > hi_x) | (pts[:, 1] < lo_y) | (pts[:, 1] > hi_y))
    if out.size:
        i = int(out[0])
        return "points outside", f"landmarks[{i}]", (f"point {i} at ({pts[i, 0]:g}, {pts[i, 1]:g}) is far "
                                                     f"outside the {width}x{height} image")
    x0, y0, x1, y1 = (float(v) for v in rec.box)
    for name, v, lo, hi in (("x_min", x0, lo_x, hi_x), ("y_min", y0, lo_y, hi_y),
                            ("x_max", x1, lo_x, hi_x), ("y_max", y1, lo_y, hi_y)):
        if not lo <= v <= hi:
            return "box outside", "box", f"{name} = {v:g} is far outside the {width}x{height} image"
    return None


@dataclass
class DatasetReport:
    """One dataset's check: faces kept, faces that cannot be used (by cause), sizes of images and boxes."""

    name: str
    role: str  # "train" | "val"
    faces: int = 0  # faces that passed
    problems: list[Problem] = field(default_factory=list)  # faces that cannot be used
    skip_invalid: bool = False  # the dataset leaves such faces out instead of stopping the run
    image_sizes: list[tuple[int, int]] = field(default_factory=list)  # (w, h) of each kept face's image
    box_sides: list[float] = field(default_factory=list)  # max(w, h) of each kept face's box, in pixels
    points_outside: int = 0  # points of kept faces outside the image (within the tolerance)
    faces_cut: int = 0  # kept faces with such points
    oriented: list[str] = field(default_factory=list)  # images of kept faces with an EXIF orientation tag

    def causes(self) -> dict[str, int]:
        return dict(Counter(p.cause for p in self.problems).most_common())

    def lines(self) -> list[str]:
        """A readable summary (``sepbn check``)."""
        head = f"{self.role} {self.name}: {self.faces} faces"
        if self.problems:
            verb = "skipped" if self.skip_invalid else "unusable"
            head += f"; {verb} {len(self.problems)}: " + ", ".join(f"{n} {c}" for c, n in self.causes().items())
        out = [head]
        if self.image_sizes:
            sizes = Counter(self.image_sizes)
            w, h = np.asarray(self.image_sizes).T
            common = ", ".join(f"{a}x{b} ({n})" for (a, b), n in sizes.most_common(3))
            out.append(f"  image sizes: {w.min()}..{w.max()} x {h.min()}..{h.max()} px; commonest {common}")
        if self.box_sides:
            b = np.asarray(self.box_sides)
            out.append(f"  box sides: min {b.min():.0f}, median {np.median(b):.0f}, max {b.max():.0f} px")
        out.append(f"  points outside the image: {self.points_outside} in {self.faces_cut} faces")
        if self.oriented:
            out.append(f"  EXIF orientation tag on {len(self.oriented)} image(s), e.g. {self.oriented[0]}: read in the "
                       "stored pixel frame (the tag ignored); their points must be in that frame too")
        return out


def _face_key(rec: FaceRecord) -> tuple:
    """What makes two entries the same face: image, box and points (in-memory images by their source)."""
    where = str(rec.image_path) if rec.image is None else f"{rec.source}#memory"
    pts = np.asarray(rec.landmarks, dtype=np.float64)
    return where, tuple(float(v) for v in rec.box), pts.tobytes()


def check_records(records: Sequence[FaceRecord], images: dict[str, ImageInfo], *, name: str = "", role: str = "train",
                  tolerance: float = 0.5, skip_invalid: bool = False,
                  skipped: Sequence[tuple[str, str]] = ()) -> tuple[list[FaceRecord], DatasetReport]:
    """The faces of ``records`` that can be trained on, and the report; ``images`` comes from
    :func:`probe_images`. ``skipped``: faces the format reader left out, as ``(source, reason)``."""
    report = DatasetReport(name=name, role=role, skip_invalid=skip_invalid)
    report.problems += [Problem(src, "annotation", why) for src, why in skipped]
    kept, seen = [], {}
    for rec in records:
        first = seen.setdefault(_face_key(rec), rec)
        if first is not rec:
            report.problems.append(Problem(rec.source or str(rec.image_path), "duplicate",
                                           f"the same image, box and points as {first.source or 'an earlier face'}"))
            continue
        if rec.image is not None:  # held in memory (COFW .mat)
            info = ImageInfo(width=rec.image.shape[1], height=rec.image.shape[0])
        else:
            info = images[str(rec.image_path)]
        if info.cause is not None:
            report.problems.append(Problem(str(rec.image_path), info.cause, info.error))
            continue
        bad = geometry_problem(rec, info.width, info.height, tolerance)
        if bad is not None:
            cause, where, message = bad
            report.problems.append(Problem(rec.source or str(rec.image_path), cause,
                                           f"{where}: {message} {rec.image_path}"))
            continue
        pts = np.asarray(rec.landmarks, dtype=np.float64)
        outside = int(((pts[:, 0] < 0) | (pts[:, 0] > info.width - 1) | (pts[:, 1] < 0)
                       | (pts[:, 1] > info.height - 1)).sum())
        report.points_outside += outside
        report.faces_cut += outside > 0
        report.image_sizes.append((info.width, info.height))
        x0, y0, x1, y1 = (float(v) for v in rec.box)
        report.box_sides.append(max(x1 - x0, y1 - y0))
        if info.orientation not in (0, 1) and str(rec.image_path) not in report.oriented:
            report.oriented.append(str(rec.image_path))
        kept.append(rec)
    report.faces = len(kept)
    return kept, report
