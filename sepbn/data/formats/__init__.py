"""Readers and writers of the benchmarks' annotation files (issue 3, sections 2 and 5).

``read_records(fmt, source, ...)`` returns a :class:`RecordList` of
:class:`~sepbn.data.records.FaceRecord` (0-based float pixel landmarks, box
``(x_min, y_min, x_max, y_max)``, visibility, attributes, ``source`` "file:line" or
"file#index") for ``fmt`` in :data:`READERS`; ``write_records(fmt, records, dest)`` writes
the formats in :data:`WRITERS`. One module per format; docs/formats.md has the table of
splits, boxes and coordinate conventions.

Every record passes the same checks (point count of its protocol, finite values, a box
with area; with ``check_images=True`` also a decodable image and points/box not far
outside it). A failure raises :class:`FormatError` naming file, line and field; with
``skip_invalid=True`` it is listed in ``.skipped`` as ``(source, reason)`` instead, and a
warning gives the count. No face is ever dropped silently.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Sequence

from ..protocols import get_protocol
from ..records import FaceRecord
from .aflw import AFLW_SPLITS, read_aflw, write_aflw
from .coco import read_coco, write_coco
from .cofw import COFW_KEYS, read_cofw, write_cofw
from .common import check_record_image, validate_record
from .errors import FormatError, Issues, RecordList
from .generic import read_csv, read_jsonl, write_csv, write_jsonl
from .mtfl import MTFL_FILES, read_mtfl, write_mtfl
from .w300 import SPLITS_300W, read_300w, read_300w_csv, write_300w, write_300w_csv
from .wflw import WFLW_FILES, read_wflw, write_wflw
from .wider import read_wider5, write_wider5

__all__ = ["read_records", "write_records", "FormatError", "RecordList", "READERS", "WRITERS", "SPLITS",
           "split_problem"]

READERS: dict[str, Callable[..., list[FaceRecord]]] = {
    "wflw": read_wflw,
    "300w": read_300w,
    "300w-csv": read_300w_csv,
    "cofw": read_cofw,
    "aflw": read_aflw,
    "wider5": read_wider5,
    "mtfl": read_mtfl,
    "csv": read_csv,
    "jsonl": read_jsonl,
    "coco": read_coco,
}
WRITERS: dict[str, Callable[..., None]] = {
    "wflw": write_wflw,
    "300w": write_300w,
    "300w-csv": write_300w_csv,
    "cofw": write_cofw,
    "aflw": write_aflw,
    "wider5": write_wider5,
    "mtfl": write_mtfl,
    "csv": write_csv,
    "jsonl": write_jsonl,
    "coco": write_coco,
}
_READ_ARGS = {"source", "images", "split", "issues"}
# named splits of each format; None: any name (a sub-folder); (): one split per file, split refused.
# "synth": a SynthFaces folder (sepbn.data.synth.load_synth reads it with these readers)
SPLITS: dict[str, tuple[str, ...] | None] = {
    "wflw": tuple(WFLW_FILES), "300w": tuple(SPLITS_300W), "cofw": tuple(COFW_KEYS), "mtfl": tuple(MTFL_FILES),
    "aflw": tuple(AFLW_SPLITS), "wider5": None, "300w-csv": (), "csv": (), "jsonl": (), "coco": (),
    "synth": ("train", "test"),
}


def split_problem(fmt: str, split: str | None) -> str | None:
    """Why ``split`` is no split of format ``fmt`` (None when it is one, or not given)."""
    named = SPLITS.get(fmt)
    if split is None or named is None:
        return None
    if not named:
        return f"format {fmt!r} holds one split per file; remove split={split!r}"
    if split not in named:
        return f"format {fmt!r} has no split {split!r}; its splits: {list(named)}"
    return None


def _lookup(table: dict, fmt: str, what: str) -> Callable:
    try:
        return table[fmt]
    except KeyError:
        raise ValueError(f"unknown {what} format {fmt!r}; choose one of {sorted(table)}") from None


def _check_options(fn: Callable, options: dict, fmt: str, exclude: set[str]) -> None:
    allowed = [p for p in inspect.signature(fn).parameters if p not in exclude]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"format {fmt!r} has no option(s) {unknown}; its options: {allowed}")


def read_records(
    fmt: str,
    source: str | Path | Sequence[str | Path],
    *,
    images: str | Path | None = None,
    split: str | None = None,
    skip_invalid: bool = False,
    check_images: bool = False,
    image_tolerance: float = 0.5,
    **options: Any,
) -> RecordList:
    """Read the faces of an annotation file (or folder) in format ``fmt``.

    Args:
        fmt: one of :data:`READERS` ("wflw", "300w", "300w-csv", "cofw", "aflw", "wider5",
            "mtfl", "csv", "jsonl", "coco").
        source: the annotation file or folder (300-W also: a list of ``.pts`` files).
        images: the image root the file's paths are relative to (format default if None).
        split: a named split of the format (e.g. 300-W "common", AFLW "frontal").
        skip_invalid: leave malformed faces out (listed in ``.skipped``) instead of raising.
        check_images: decode every image now and check that points and box lie within
            ``image_tolerance`` times the image size of its edges (else: checked lazily).
        **options: format options, e.g. ``min_size`` (wider5), ``origin`` (cofw, aflw),
            ``protocol`` (csv, jsonl, coco, 300w), ``box_scale`` (mtfl).

    Returns:
        A list of FaceRecord with ``.skipped``: ``(source, reason)`` of every face left out.

    Raises:
        FormatError: a malformed face (unless ``skip_invalid``) or an unreadable file.
    """
    reader = _lookup(READERS, fmt, "annotation")
    _check_options(reader, options, fmt, _READ_ARGS)
    issues = Issues(skip_invalid)
    src = [Path(s) for s in source] if isinstance(source, (list, tuple)) else Path(source)
    raw = reader(src, images=None if images is None else Path(images), split=split, issues=issues, **options)
    # a protocol given by the caller may be a user's .json/.toml file that no name lookup knows
    given = options.get("protocol")
    given = None if given is None else get_protocol(given)
    out = []
    for rec in raw:
        with issues.record():
            validate_record(rec, given if given is not None and rec.protocol == given.name
                            else get_protocol(rec.protocol))
            if check_images:
                check_record_image(rec, image_tolerance)
            out.append(rec)
    issues.warn(f"{fmt} {source}" + (f" split {split!r}" if split else ""), len(out))
    return RecordList(out, issues.skipped)


def write_records(fmt: str, records: Sequence[FaceRecord], dest: str | Path, **options: Any) -> None:
    """Write ``records`` in format ``fmt`` (one of :data:`WRITERS`) to ``dest``.

    Options per format: ``images`` (root the written paths are relative to), ``header``
    (300w), ``split``/``version``/``origin`` (cofw: "5" or "7.3"), ``ra``/``version``/``origin`` (aflw).
    """
    writer = _lookup(WRITERS, fmt, "annotation")
    _check_options(writer, options, fmt, {"records", "dest"})
    writer(list(records), Path(dest), **options)
