"""SynthFaces files: a set of faces (:mod:`.sample`) written in the official formats, and read back.

Faces ``0 .. num_train - 1`` are the training split, the rest the test split.

On disk (``generate(out, protocols, num)``)::

    out/images/{train,test}/000123.jpg      one image per face (JPEG quality varies: artefacts)
    out/domains.csv                          image, split, index, domain, domain_id, pose, flags
    out/synth.json                           seed, sizes, domains, protocols (how it was made)
    out/wflw98/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt
    out/wflw98/WFLW_images -> ../images      (a relative link, as the WFLW release lays it out)
    out/300w68/{train,test}/000123.pts       1-based .pts; images in out/images/<split>
    out/cofw29/COFW_{train,test}_color.mat   images inside, 29 points + occlusion flags
    out/aflw19/AFLWinfo_release.mat          all faces, ``ra`` = train faces first
    out/5pt/wider/{train,test}/label.txt     RetinaFace-style, visibility flags
    out/5pt/mtfl/{training,testing}.txt      MTFL-style (pose label from yaw, smile, glasses)

:func:`load_synth` reads one split back through the official readers and attaches the domain
(and the six WFLW flags) from ``domains.csv``.
"""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ...io import atomic_open, atomic_write_bytes, atomic_write_text
from ..formats import SPLITS, read_records, write_records
from ..protocols import WFLW_ATTRIBUTES, get_protocol
from ..records import FaceRecord
from .sample import DEFAULT_DOMAINS, Domain, SynthFace, check_domains, synthesize

__all__ = ["generate", "load_synth", "FORMATS"]

# protocol -> the format its annotations are written in and read back from
FORMATS = {"wflw98": "wflw", "300w68": "300w", "cofw29": "cofw", "aflw19": "aflw", "5pt": "wider5"}
_CSV_FIELDS = ["image", "split", "index", "domain", "domain_id", "yaw", "pitch", "roll", "occluder",
               *WFLW_ATTRIBUTES]


def _image_name(index: int) -> str:
    return f"{index:06d}.jpg"


def _render_and_save(args) -> list:
    """Worker: render faces, write their JPEGs, return what the annotation files need."""
    indices, seed, domains, size, protocols, out, num_train = args
    rows = []
    for i in indices:
        f = synthesize(i, seed=seed, domains=domains, size=size, protocols=protocols)
        split = "train" if i < num_train else "test"
        path = Path(out) / "images" / split / _image_name(i)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, f.look.jpeg_quality])
        if not ok:
            raise OSError(f"{path}: JPEG encoding failed")
        atomic_write_bytes(path, buf.tobytes())
        f.image = f.geom = None  # keep worker results small
        rows.append((split, str(path), f))
    return rows


def _record(face: SynthFace, protocol: str, image_path: str) -> FaceRecord:
    attrs = {"domain": face.domain, "domain_id": face.domain_id, **face.flags,
             "yaw": face.pose.yaw, "pitch": face.pose.pitch, "roll": face.pose.roll}
    if protocol == "5pt":  # MTFL labels: pose 1-5 from left to right profile, 1 = yes / 2 = no
        attrs.update(pose_class=int(np.digitize(face.pose.yaw, [-45, -15, 15, 45]) + 1),
                     smile=1 if face.expr.smile > 0.5 else 2,
                     glasses=1 if face.look.occluder == "sunglasses" else 2)
    return FaceRecord(landmarks=face.points[protocol], box=face.box, protocol=protocol, image_path=image_path,
                      visible=face.visible[protocol], attributes=attrs, source=f"synth#{face.index}")


def _write_protocol(out: Path, protocol: str, split_records: dict[str, list[FaceRecord]]) -> None:
    images = out / "images"
    root = out / protocol
    if protocol == "wflw98":
        lists = root / "list_98pt_rect_attr_train_test"
        for split, recs in split_records.items():
            write_records("wflw", recs, lists / f"list_98pt_rect_attr_{split}.txt", images=images)
        link = root / "WFLW_images"
        if not link.exists():
            try:
                os.symlink(os.path.relpath(images, root), link, target_is_directory=True)
            except OSError:  # no symlinks here (some Windows setups): load_synth passes images=
                pass
    elif protocol == "300w68":
        for split, recs in split_records.items():
            write_records("300w", recs, root / split)
    elif protocol == "cofw29":
        for split, recs in split_records.items():
            write_records("cofw", recs, root / f"COFW_{split}_color.mat", split=split)
    elif protocol == "aflw19":
        everything = split_records.get("train", []) + split_records.get("test", [])
        write_records("aflw", everything, root / "AFLWinfo_release.mat", images=images)
    elif protocol == "5pt":
        for split, recs in split_records.items():
            write_records("wider5", recs, root / "wider" / split / "label.txt", images=images)
            mtfl = [FaceRecord(r.landmarks, r.box, r.protocol, r.image_path, r.visible,
                               {"smile": r.attributes["smile"], "glasses": r.attributes["glasses"],
                                "pose": r.attributes["pose_class"]}, r.source) for r in recs]
            name = "training.txt" if split == "train" else "testing.txt"
            write_records("mtfl", mtfl, root / "mtfl" / name, images=images)
    else:
        raise ValueError(f"no SynthFaces writer for protocol {protocol!r}; known: {sorted(FORMATS)}")


_OUTPUTS = ("images", *FORMATS, "domains.csv", "synth.json")


def _clear_previous(out: Path) -> None:
    """Remove an earlier SynthFaces run's outputs (only those paths, only where its synth.json
    says one was made here), so no stale image or .pts file joins the new splits."""
    if not (out / "synth.json").is_file():
        return
    for name in _OUTPUTS:
        p = out / name
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p)


def generate(
    out_dir: str | Path,
    protocols: Sequence[str] = tuple(FORMATS),
    num: int = 1000,
    *,
    seed: int = 0,
    domains: Sequence[Domain] | None = None,
    size: int | tuple[int, int] = 256,
    test_fraction: float = 0.2,
    workers: int = 1,
) -> dict:
    """Render ``num`` faces into ``out_dir`` with annotations in every protocol's official format.

    Args:
        out_dir: output folder (created). The outputs of an earlier run there (the paths listed
            in the module docstring) are removed first; nothing else in the folder is touched.
        protocols: protocol names (``"wflw98"``, ``"300w68"``, ``"cofw29"``, ``"aflw19"``, ``"5pt"``).
        num: number of faces; the first ``round(num * (1 - test_fraction))`` form the train split.
        seed: faces depend only on (seed, index).
        domains: mixture components (default :data:`DEFAULT_DOMAINS`, 15/70/15).
        size: image side, or (height, width).
        workers: processes rendering in parallel (same output for any value).

    Returns:
        The summary also saved as ``synth.json`` (counts per split and domain, settings).
    """
    domains = tuple(DEFAULT_DOMAINS if domains is None else domains)
    check_domains(domains)
    names = [get_protocol(p).name for p in protocols]
    bad = [n for n in names if n not in FORMATS]
    if bad:
        raise ValueError(f"SynthFaces cannot write protocol(s) {bad}; choose from {sorted(FORMATS)}")
    if num < 2:
        raise ValueError(f"num must be >= 2 (a train and a test face), got {num}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    num_train = min(num - 1, max(1, int(round(num * (1 - test_fraction)))))
    out = Path(out_dir)
    _clear_previous(out)
    for split in ("train", "test"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)

    chunks = [list(range(i, min(i + 64, num))) for i in range(0, num, 64)]
    jobs = [(c, seed, domains, hw, names, str(out), num_train) for c in chunks]
    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            results = pool.map(_render_and_save, jobs)
    else:
        results = [_render_and_save(j) for j in jobs]
    rows = [r for chunk in results for r in chunk]

    for name in names:
        per_split: dict[str, list[FaceRecord]] = {"train": [], "test": []}
        for split, path, face in rows:
            per_split[split].append(_record(face, name, path))
        _write_protocol(out, name, per_split)

    with atomic_open(out / "domains.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(_CSV_FIELDS)
        for split, path, f in rows:
            w.writerow([Path(path).relative_to(out).as_posix(), split, f.index, f.domain, f.domain_id,
                        f"{f.pose.yaw:.2f}", f"{f.pose.pitch:.2f}", f"{f.pose.roll:.2f}", f.look.occluder or "",
                        *[int(f.flags[a]) for a in WFLW_ATTRIBUTES]])
    counts = {s: {d.name: 0 for d in domains} for s in ("train", "test")}
    for split, _, f in rows:
        counts[split][f.domain] += 1
    summary = {
        "seed": seed, "num": num, "num_train": num_train, "num_test": num - num_train, "size": list(hw),
        "protocols": names, "domains": [asdict(d) for d in domains], "counts": counts,
    }
    atomic_write_text(out / "synth.json", json.dumps(summary, indent=2))
    return summary


def load_synth(out_dir: str | Path, protocol: str, split: str = "train") -> list[FaceRecord]:
    """Read one split of a :func:`generate` folder through the official reader of ``protocol``'s
    format, with ``attributes["domain"]``, ``["domain_id"]``, ``["mirror_domain_id"]`` (the domain of
    the mirrored face: the one with the negated yaw range, else its own), yaw/pitch/roll and the six WFLW
    flags attached from ``domains.csv``.

    Readers that carry visibility (COFW, AFLW, WIDER-5) return it; WFLW and 300-W files have none.
    """
    out = Path(out_dir)
    name = get_protocol(protocol).name
    if split not in SPLITS["synth"]:
        raise ValueError(f"split must be one of {list(SPLITS['synth'])}, got {split!r}")
    if name not in FORMATS:
        raise ValueError(f"no SynthFaces files for protocol {name!r}; known: {sorted(FORMATS)}")
    if not (out / "synth.json").is_file():
        raise FileNotFoundError(f"{out} is not a SynthFaces folder (no synth.json); make one with: sepbn synth --out {out}")
    meta = json.loads((out / "synth.json").read_text(encoding="utf-8"))
    if name not in meta["protocols"]:
        raise ValueError(f"{out} was generated without protocol {name!r} (it has {meta['protocols']})")
    root = out / name
    if name == "wflw98":
        recs = read_records("wflw", root, split=split, images=out / "images")
    elif name == "300w68":
        recs = read_records("300w", root / split, images=out / "images" / split)
    elif name == "cofw29":
        recs = read_records("cofw", root, split=split)
    elif name == "aflw19":
        recs = read_records("aflw", root / "AFLWinfo_release.mat", split="train" if split == "train" else "full",
                            train_size=int(meta["num_train"]), images=out / "images")
    else:
        recs = read_records("wider5", root / "wider", split=split, images=out / "images", min_size=0)

    with open(out / "domains.csv", newline="", encoding="utf-8") as fh:
        table = [r for r in csv.DictReader(fh) if r["split"] == split]
    by_name = {Path(r["image"]).name: r for r in table}
    # a mirrored face belongs to the domain whose yaw range is the negated one (left <-> right profile)
    yaws = [tuple(d["yaw"]) for d in meta["domains"]]
    mirror = {k: next((j for j, other in enumerate(yaws) if other == (-hi, -lo)), k)
              for k, (lo, hi) in enumerate(yaws)}
    if len(table) != len(recs):
        raise ValueError(f"{out}: {len(recs)} {name} {split} faces but {len(table)} rows in domains.csv")
    for k, rec in enumerate(recs):
        # COFW keeps images inside the .mat: match by order (written in index order)
        row = table[k] if rec.image_path is None else by_name.get(Path(rec.image_path).name)
        if row is None:
            raise ValueError(f"{rec.source}: image {rec.image_path} is not listed in {out / 'domains.csv'}")
        rec.attributes.update({"domain": row["domain"], "domain_id": int(row["domain_id"]),
                               "mirror_domain_id": mirror[int(row["domain_id"])],
                               "yaw": float(row["yaw"]), "pitch": float(row["pitch"]), "roll": float(row["roll"]),
                               "synth_index": int(row["index"])})
        for a in WFLW_ATTRIBUTES:
            rec.attributes.setdefault(a, bool(int(row[a])))
    return recs
