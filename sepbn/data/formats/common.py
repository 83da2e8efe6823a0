"""Helpers shared by the annotation readers: tokenising, number parsing with field names,
boxes derived from landmarks, image path resolution and the checks every record passes.

Field numbers in messages are 1-based (the first token of a line is field 1); point
names are 0-based (``x22`` is the x of point 22), matching :mod:`sepbn.data.protocols`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path, PureWindowsPath
from typing import Callable, Sequence

import numpy as np

from ...io import atomic_write_text
from ..preflight import geometry_problem
from ..protocols import Protocol
from ..records import FaceRecord, ImageReadError
from .errors import FormatError

__all__ = [
    "read_lines",
    "parse_floats",
    "interleaved_names",
    "landmark_box",
    "enlarged_box",
    "xywh_to_box",
    "resolve_image",
    "relative_image",
    "validate_record",
    "check_record_image",
    "fmt_num",
    "check_values",
    "require_protocol",
    "write_lines",
    "one_file_root",
    "image_root",
    "json_default",
]


def read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines of a text file as ``(line_number, text)`` (1-based, CR/LF stripped).

    Raises FormatError for a missing, undecodable or empty file.
    """
    if not path.is_file():
        raise FormatError(str(path), "annotation file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise FormatError(str(path), f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    # split on "\n" only (not str.splitlines' other separators) so numbers match editors' lines
    lines = [(i, t.rstrip("\r")) for i, t in enumerate(text.split("\n"), start=1) if t.strip()]
    if not lines:
        raise FormatError(str(path), "file is empty (no faces)")
    return lines


def parse_floats(tokens: Sequence[str], where: str, first_field: int, names: Sequence[str]) -> np.ndarray:
    """Parse ``tokens`` as finite floats; the error names the 1-based field and its name."""
    out = np.empty(len(tokens), dtype=np.float64)
    for k, tok in enumerate(tokens):
        try:
            v = float(tok)
        except ValueError:
            raise FormatError(where, f"{tok!r} is not a number", f"{first_field + k} ({names[k]})") from None
        if not math.isfinite(v):
            raise FormatError(where, f"{tok!r} is not finite", f"{first_field + k} ({names[k]})")
        out[k] = v
    return out


def interleaved_names(num_points: int) -> list[str]:
    """``["x0", "y0", "x1", "y1", ...]``."""
    return [f"{c}{i}" for i in range(num_points) for c in "xy"]


def landmark_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """The tight bounding box (x_min, y_min, x_max, y_max) of the points."""
    p = np.asarray(points, dtype=np.float64)
    return (float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max()))


def enlarged_box(points: np.ndarray, scale: float) -> tuple[float, float, float, float]:
    """A square box of side ``scale * max(w, h)`` of the landmark box, centred on it."""
    x0, y0, x1, y1 = landmark_box(points)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, scale * max(x1 - x0, y1 - y0) / 2
    return (cx - half, cy - half, cx + half, cy + half)


def xywh_to_box(x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
    """``(x, y, w, h)`` -> ``(x_min, y_min, x_max, y_max)``."""
    return (float(x), float(y), float(x + w), float(y + h))


def resolve_image(root: Path, rel: str) -> str:
    """Join an image path from an annotation file to its root; backslash paths (MTFL,
    Windows tools) are read as Windows paths and turned into this OS's form."""
    rel = rel.strip()
    parts = PureWindowsPath(rel).parts if "\\" in rel else Path(rel).parts
    return str(Path(root).joinpath(*parts))


def relative_image(image_path: str | None, root: Path, where: str) -> str:
    """An image path relative to ``root`` with forward slashes (for writers)."""
    if image_path is None:
        raise ValueError(f"{where}: record has no image_path; this format stores image paths")
    return Path(os.path.relpath(Path(image_path).resolve(), Path(root).resolve())).as_posix()


def fmt_num(v: float) -> str:
    """Shortest text that reads back to the same float (``repr``), integers without ``.0``."""
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def validate_record(rec: FaceRecord, protocol: Protocol) -> None:
    """Checks every reader's output passes: point count, finite values, a non-empty box."""
    pts = np.asarray(rec.landmarks)
    if pts.shape != (protocol.num_points, 2):
        raise FormatError(
            rec.source,
            f"{pts.shape[0] if pts.ndim == 2 else pts.shape} points, "
            f"but protocol {protocol.name} has {protocol.num_points}",
            "landmarks",
        )
    bad = np.flatnonzero(~np.isfinite(pts).all(axis=1))
    if bad.size:
        raise FormatError(rec.source, f"point {bad[0]} is {pts[bad[0]].tolist()}", "landmarks")
    x0, y0, x1, y1 = (float(v) for v in rec.box)
    box = f"({', '.join(f'{v:g}' for v in (x0, y0, x1, y1))})"  # plain numbers, not np.float64(...)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise FormatError(rec.source, f"{box} is not finite", "box")
    if not (x1 > x0 and y1 > y0):
        raise FormatError(rec.source, f"{box} has no area (need x_max > x_min and y_max > y_min)", "box")
    if rec.visible is not None and np.asarray(rec.visible).shape != (protocol.num_points,):
        raise FormatError(rec.source, f"{np.asarray(rec.visible).shape} flags for {protocol.num_points} points",
                          "visible")


def check_record_image(rec: FaceRecord, tolerance: float = 0.5) -> None:
    """Decode the record's image and check that its points and box lie in the image,
    allowing ``tolerance`` times the image size beyond each edge (faces cut by the
    frame are normal; a point far outside is a wrong coordinate convention or a typo)."""
    try:
        img = rec.load_image()
    except ImageReadError as e:
        raise FormatError(rec.source, str(e), "image") from None
    h, w = img.shape[:2]
    bad = geometry_problem(rec, w, h, tolerance)
    if bad is not None:
        _, where, message = bad
        raise FormatError(rec.source, message, where)


def require_protocol(records: Sequence[FaceRecord], protocol: str, fmt: str) -> None:
    """Writers hold one protocol; raise ValueError naming the first record that differs."""
    for i, r in enumerate(records):
        if r.protocol != protocol:
            raise ValueError(f"{r.source or f'record {i}'}: {fmt} holds protocol {protocol}, got {r.protocol!r}")


def write_lines(dest: Path, lines: Sequence[str], newline: str = "\n") -> None:
    """Write text lines (creating the folder), each ended by ``newline``."""
    atomic_write_text(dest, "".join(line + newline for line in lines))


def check_values(
    values: np.ndarray, where: str, field_of: Callable[[int], str], *, binary: bool = False,
    shown: Callable[[int], str] | None = None, expected: str = "0 or 1",
) -> None:
    """Raise a FormatError for the first non-finite entry (or, with ``binary``, the first
    entry that is not 0/1), naming ``field_of(index)`` and showing ``shown(index)``."""
    v = np.asarray(values, dtype=np.float64).ravel()
    bad = np.flatnonzero((v != 0) & (v != 1)) if binary else np.flatnonzero(~np.isfinite(v))
    if bad.size:
        j = int(bad[0])
        text = shown(j) if shown is not None else repr(float(v[j]))
        raise FormatError(where, f"{text} is not {expected if binary else 'finite'}", field_of(j))


def one_file_root(source: Path, images: Path | None, split: str | None, what: str) -> tuple[Path, Path]:
    """For formats that hold one split per file: refuse ``split``; return the file and the
    image root (``images``, else the file's folder)."""
    if split is not None:
        raise ValueError(f"{what} is one split per file; got split={split!r}")
    source = Path(source)
    return source, image_root(images, source.parent)


def image_root(images: Path | None, default: Path) -> Path:
    """The folder image paths are relative to: ``images`` if given, else ``default``."""
    return Path(images) if images is not None else Path(default)


def json_default(o: object) -> object:
    """``json.dumps`` hook: numpy scalars and arrays in attributes become plain values."""
    if isinstance(o, (np.generic, np.ndarray)):
        return o.tolist()
    raise TypeError(f"attribute value {o!r} of type {type(o).__name__} is not JSON-able")
