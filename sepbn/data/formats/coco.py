"""COCO keypoints JSON for custom face data (issue 3, section 2).

``images`` [{id, file_name, width, height}], ``annotations`` [{id, image_id, category_id,
bbox [x, y, w, h], keypoints [x0, y0, v0, ...], num_keypoints}], ``categories``
[{id, name, keypoints, skeleton}]. Keypoint coordinates are 0-based pixel indices as in
COCO and are taken as written; the box is the given ``bbox``. ``v`` = 2 visible, 1 labelled
but not visible (``visible`` False), 0 not labelled: an annotation with no labelled point
(``num_keypoints`` 0) is listed in ``.skipped``; a face with only some points labelled is
an error (every protocol here needs all its points). The protocol comes from the
``protocol=`` option or the category's ``"protocol"`` key (the writer stores it).
Records' sources are ``"file#<annotation index>"``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ...io import atomic_write_text
from ..protocols import Protocol, get_protocol
from ..records import FaceRecord, ImageReadError
from .common import (
    check_values, image_root, json_default, one_file_root, relative_image, resolve_image, xywh_to_box,
)
from .errors import FormatError, Issues

__all__ = ["read_coco", "write_coco"]


def _load(path: Path) -> dict:
    if not path.is_file():
        raise FormatError(str(path), "annotation file not found")
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise FormatError(str(path), "file is empty (no faces)")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}:{e.lineno}", f"not JSON ({e.msg} at column {e.colno})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(obj.get(key) if isinstance(obj, dict) else None, list):
            raise FormatError(str(path), "missing or not a list", key)
    return obj


def read_coco(
    source: Path, *, images: Path | None, split: str | None, issues: Issues, protocol: str | Protocol | None = None,
) -> list[FaceRecord]:
    """Read a COCO keypoints file; ``file_name`` relative to ``images`` (default: its folder)."""
    path, root = one_file_root(source, images, split, "a COCO file")
    obj = _load(path)
    files = {im.get("id"): im.get("file_name") for im in obj["images"] if isinstance(im, dict)}
    cats = {c.get("id"): c for c in obj["categories"] if isinstance(c, dict)}
    records = []
    for k, ann in enumerate(obj["annotations"]):
        where = f"{path}#{k}"
        with issues.record():
            if not isinstance(ann, dict):
                raise FormatError(where, f"annotation is not an object: {ann!r}")
            cat = cats.get(ann.get("category_id"), {})
            if protocol is not None:
                proto = get_protocol(protocol)
            elif "protocol" in cat:
                proto = get_protocol(cat["protocol"])
            else:
                raise FormatError(where, f"no protocol: pass protocol= or add 'protocol' to category "
                                  f"{ann.get('category_id')!r}", "category_id")
            kp = ann.get("keypoints")
            if not kp or int(ann.get("num_keypoints", 1)) == 0 or not any(kp[2::3]):
                issues.skip(where, "no landmark annotation")
                continue
            if len(kp) != 3 * proto.num_points:
                raise FormatError(where, f"{len(kp)} values, protocol {proto.name} needs "
                                  f"3 x {proto.num_points}", "keypoints")
            try:
                arr = np.asarray(kp, dtype=np.float64).reshape(-1, 3)
                box = np.asarray(ann.get("bbox"), dtype=np.float64)
            except (TypeError, ValueError):
                raise FormatError(where, "non-numeric values in keypoints or bbox", "keypoints/bbox") from None
            check_values(arr, where, lambda j: f"keypoints[{j}]")
            check_values(box, where, lambda j: f"bbox[{j}]")
            if box.shape != (4,):
                raise FormatError(where, f"{ann.get('bbox')!r} is not [x, y, w, h]", "bbox")
            unlabelled = np.flatnonzero(arr[:, 2] == 0)
            if unlabelled.size:
                raise FormatError(where, f"point {unlabelled[0]} is not labelled (v=0)",
                                  f"keypoints[{3 * unlabelled[0] + 2}]")
            if ann.get("image_id") not in files:
                raise FormatError(where, f"{ann.get('image_id')!r} is not an id in 'images'", "image_id")
            x, y, w, h = box
            records.append(FaceRecord(
                landmarks=arr[:, :2].copy(), box=xywh_to_box(x, y, w, h), protocol=proto.name,
                image_path=resolve_image(root, files[ann["image_id"]]), visible=arr[:, 2] == 2,
                attributes=dict(ann.get("attributes", {})), source=where,
            ))
    return records


def write_coco(records: Sequence[FaceRecord], dest: Path, *, images: Path | None = None) -> None:
    """Write a COCO keypoints file: one category per protocol (with its point names and
    ``"protocol"``), one image entry per distinct image (size read from the image when it
    can be), ``attributes`` kept per annotation."""
    dest = Path(dest)
    root = image_root(images, dest.parent)
    cats, imgs, anns = {}, {}, []
    for i, r in enumerate(records):
        proto = get_protocol(r.protocol)
        if proto.name not in cats:
            cats[proto.name] = {"id": len(cats) + 1, "name": "face", "protocol": proto.name,
                                "keypoints": list(proto.point_names), "skeleton": []}
        rel = relative_image(r.image_path, root, r.source or f"record {i}")
        if rel not in imgs:
            entry = {"id": len(imgs) + 1, "file_name": rel}
            try:
                h, w = r.load_image().shape[:2]
                entry.update(width=int(w), height=int(h))
            except ImageReadError:
                pass  # COCO readers here do not need the size
            imgs[rel] = entry
        pts = np.asarray(r.landmarks, dtype=np.float64)
        vis = np.ones(len(pts), bool) if r.visible is None else np.asarray(r.visible, bool)
        kp = np.concatenate([pts, np.where(vis, 2.0, 1.0)[:, None]], axis=1).reshape(-1).tolist()
        x0, y0, x1, y1 = (float(v) for v in r.box)
        ann = {"id": i + 1, "image_id": imgs[rel]["id"], "category_id": cats[proto.name]["id"],
               "bbox": [x0, y0, x1 - x0, y1 - y0], "keypoints": kp, "num_keypoints": len(pts),
               "area": (x1 - x0) * (y1 - y0), "iscrowd": 0}
        if r.attributes:
            ann["attributes"] = r.attributes
        anns.append(ann)
    atomic_write_text(dest, json.dumps({"images": list(imgs.values()), "annotations": anns,
                                        "categories": list(cats.values())}, default=json_default))

