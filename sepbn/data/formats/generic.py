"""Generic annotation files for custom data: CSV and JSON lines (issue 3, section 2).

CSV (header required)::

    image,x_min,y_min,x_max,y_max,x0,y0,x1,y1,...[,v0,v1,...][,protocol][,<attribute columns>]

JSON lines, one face per line::

    {"image": "a.jpg", "box": [x_min, y_min, x_max, y_max], "landmarks": [[x, y], ...],
     "visible": [true, ...], "protocol": "5pt", "attributes": {...}}

Coordinates are 0-based float pixels as written; the box is given. ``visible`` (``v<i>``
columns, 1/0) and ``attributes`` are optional. The protocol comes from the ``protocol=``
option or each face's ``protocol`` field; it is never guessed from the point count. Image
paths are relative to ``images`` (default: the file's folder); absolute paths stay.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...io import atomic_open
from ..protocols import Protocol, get_protocol
from ..records import FaceRecord
from .common import (
    check_values, fmt_num, image_root, json_default, one_file_root, parse_floats, read_lines, relative_image,
    resolve_image, write_lines,
)
from .errors import FormatError, Issues

__all__ = ["read_csv", "write_csv", "read_jsonl", "write_jsonl"]

_BOX = ("x_min", "y_min", "x_max", "y_max")


def _protocol(option: str | Protocol | None, value: Any, where: str, field: str) -> Protocol:
    if option is not None:
        return get_protocol(option)
    if not value:
        raise FormatError(where, "no protocol: pass protocol= or give each face a 'protocol'", field)
    try:
        return get_protocol(str(value))
    except ValueError as e:
        raise FormatError(where, str(e), field) from None


def _attr_value(text: str) -> Any:
    # CSV cells are text; give numbers and booleans back their type.
    for cast in (int, float):
        try:
            v = cast(text)
            return v if not (isinstance(v, float) and not math.isfinite(v)) else text
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def read_csv(
    source: Path, *, images: Path | None, split: str | None, issues: Issues, protocol: str | Protocol | None = None,
) -> list[FaceRecord]:
    """Read the generic CSV (see the module docstring)."""
    source, root = one_file_root(source, images, split, "a generic CSV")
    lines = read_lines(source)
    rows = list(csv.reader([t for _, t in lines]))
    header = [h.strip() for h in rows[0]]
    hwhere = f"{source}:{lines[0][0]}"
    col = {h: k for k, h in enumerate(header)}
    for need in ("image",) + _BOX + ("x0", "y0"):
        if need not in col:
            raise FormatError(hwhere, f"header lacks the column {need!r} (got {header})")
    n_pts = 0
    while f"x{n_pts}" in col and f"y{n_pts}" in col:
        n_pts += 1
    coord_cols = [col[f"{c}{i}"] for i in range(n_pts) for c in "xy"]
    vis_cols = [col[f"v{i}"] for i in range(n_pts)] if "v0" in col else None
    known = set(coord_cols) | {col[h] for h in ("image",) + _BOX} | set(vis_cols or ()) | {col.get("protocol", -1)}
    extra = [k for k in range(len(header)) if k not in known]
    records = []
    for (lineno, _), row in zip(lines[1:], rows[1:]):
        where = f"{source}:{lineno}"
        with issues.record():
            if len(row) != len(header):
                raise FormatError(where, f"{len(row)} fields, the header has {len(header)}")
            proto = _protocol(protocol, row[col["protocol"]] if "protocol" in col else None, where,
                              f"{col.get('protocol', 0) + 1} (protocol)")
            if proto.num_points != n_pts:
                raise FormatError(where, f"{n_pts} x/y column pairs, but protocol {proto.name} has "
                                  f"{proto.num_points} points", "header")
            idx = [col[h] for h in _BOX] + coord_cols
            nums = np.array([parse_floats([row[k]], where, k + 1, [header[k]])[0] for k in idx])
            visible = None
            if vis_cols is not None:
                v = np.array([parse_floats([row[k]], where, k + 1, [header[k]])[0] for k in vis_cols])
                check_values(v, where, lambda j: f"{vis_cols[j] + 1} ({header[vis_cols[j]]})", binary=True,
                             shown=lambda j: repr(row[vis_cols[j]]))
                visible = v == 1
            records.append(FaceRecord(
                landmarks=nums[4:].reshape(-1, 2), box=tuple(float(v) for v in nums[:4]), protocol=proto.name,
                image_path=resolve_image(root, row[col["image"]]), visible=visible,
                attributes={header[k]: _attr_value(row[k]) for k in extra if row[k] != ""}, source=where,
            ))
    return records


def write_csv(records: Sequence[FaceRecord], dest: Path, *, images: Path | None = None) -> None:
    """Write the generic CSV; one protocol per file (its name in a ``protocol`` column);
    attribute keys become extra columns (empty where a face lacks one)."""
    dest = Path(dest)
    root = image_root(images, dest.parent)
    n_pts = {np.asarray(r.landmarks).shape[0] for r in records}
    if len(n_pts) > 1:
        raise ValueError(f"{dest}: a CSV holds one point count per file, got {sorted(n_pts)}")
    L = n_pts.pop() if n_pts else 0
    with_vis = any(r.visible is not None for r in records)
    attrs = sorted({k for r in records for k in r.attributes})
    clash = set(attrs) & ({"image", "protocol", *_BOX} | {f"{c}{i}" for i in range(L) for c in "xyv"})
    if clash:
        raise ValueError(f"{dest}: attribute names {sorted(clash)} clash with the CSV's columns")
    header = ["image", *_BOX] + [f"{c}{i}" for i in range(L) for c in "xy"]
    header += [f"v{i}" for i in range(L)] if with_vis else []
    header += ["protocol"] + attrs
    out = []
    for i, r in enumerate(records):
        row = [relative_image(r.image_path, root, r.source or f"record {i}")]
        row += [fmt_num(v) for v in list(r.box) + list(np.asarray(r.landmarks, dtype=np.float64).reshape(-1))]
        if with_vis:
            vis = np.ones(L, bool) if r.visible is None else np.asarray(r.visible, bool)
            row += [str(int(v)) for v in vis]
        row += [r.protocol] + [str(r.attributes[a]) if a in r.attributes else "" for a in attrs]
        out.append(row)
    with atomic_open(dest, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows([header] + out)


def _json_points(value: Any, where: str, field: str, shape_hint: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise FormatError(where, f"{value!r} is not {shape_hint} numbers", field) from None
    check_values(arr, where, lambda j: f"{field}[{j // 2}][{j % 2}]" if arr.ndim == 2 else f"{field}[{j}]")
    return arr


def read_jsonl(
    source: Path, *, images: Path | None, split: str | None, issues: Issues, protocol: str | Protocol | None = None,
) -> list[FaceRecord]:
    """Read the generic JSON-lines file (see the module docstring)."""
    source, root = one_file_root(source, images, split, "a JSON-lines file")
    records = []
    for lineno, line in read_lines(source):
        where = f"{source}:{lineno}"
        with issues.record():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise FormatError(where, f"not JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise FormatError(where, f"expected a JSON object, got {type(obj).__name__}")
            for key in ("image", "box", "landmarks"):
                if key not in obj:
                    raise FormatError(where, "missing", key)
            proto = _protocol(protocol, obj.get("protocol"), where, "protocol")
            pts = _json_points(obj["landmarks"], where, "landmarks", "a list of [x, y]")
            if pts.shape != (proto.num_points, 2):
                raise FormatError(where, f"shape {pts.shape}, protocol {proto.name} needs ({proto.num_points}, 2)",
                                  "landmarks")
            box = _json_points(obj["box"], where, "box", "4")
            if box.shape != (4,):
                raise FormatError(where, f"{obj['box']!r} is not [x_min, y_min, x_max, y_max]", "box")
            visible = obj.get("visible")
            if visible is not None:
                if not (isinstance(visible, list) and len(visible) == proto.num_points
                        and all(isinstance(v, (bool, int)) and v in (0, 1) for v in visible)):
                    raise FormatError(where, f"expected {proto.num_points} booleans, got {visible!r}", "visible")
                visible = np.asarray(visible, dtype=bool)
            attributes = obj.get("attributes", {})
            if not isinstance(attributes, dict):
                raise FormatError(where, f"{attributes!r} is not an object", "attributes")
            if not isinstance(obj["image"], str):
                raise FormatError(where, f"{obj['image']!r} is not a path", "image")
            records.append(FaceRecord(
                landmarks=pts, box=tuple(float(v) for v in box), protocol=proto.name,
                image_path=resolve_image(root, obj["image"]), visible=visible,
                attributes=dict(attributes), source=where,
            ))
    return records


def write_jsonl(records: Sequence[FaceRecord], dest: Path, *, images: Path | None = None) -> None:
    """Write the generic JSON-lines file (protocols may differ per line)."""
    dest = Path(dest)
    root = image_root(images, dest.parent)
    lines = []
    for i, r in enumerate(records):
        obj = {
            "image": relative_image(r.image_path, root, r.source or f"record {i}"),
            "protocol": r.protocol,
            "box": [float(v) for v in r.box],
            "landmarks": np.asarray(r.landmarks, dtype=np.float64).tolist(),
        }
        if r.visible is not None:
            obj["visible"] = [bool(v) for v in r.visible]
        if r.attributes:
            obj["attributes"] = r.attributes
        lines.append(json.dumps(obj, default=json_default))
    write_lines(dest, lines)

