"""Decoded face cache: every face decoded and cut once, so training reads crops, not photos.

Section V-A's pipeline decodes a full photograph per sample to cut a 128x128 face out of it;
with a few hundred augmented samples per second per core that decoding dominates. The cache
cuts each face once, with a margin (``margin`` times the square face box, default 2x) at a fixed
resolution (``size`` px, default 256), into ONE uint8 numpy memmap ``(N, size, size, 3)``.
Per face it stores ``C``, the 2x3 matrix original image -> cached crop (``crop_matrix(box,
size, margin)``). A sample's augmentation matrix ``M`` (original -> training crop) is then
applied to the cached crop as ``M C^-1``: still ONE warp, the same geometry, and the inverse
``M^-1`` still maps predictions to ORIGINAL image coordinates. Only the resampling differs
(two bilinear interpolations instead of one; content beyond the margin is black).

Layout of a cache directory: ``faces-<fingerprint[:16]>.u8`` (raw memmap) and ``index.json``
(version, size, margin, count, fingerprint, data file name, the per-face matrices). The index is
written last, atomically (temp file + ``os.replace``): it is the commit point, so an interrupted
build leaves either the previous cache or none. The fingerprint covers the cache parameters and,
per record, the image path, mtime and size (or the pixels of an in-memory image), the box and
the landmarks; :func:`ensure_cache` rebuilds when it differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..io import atomic_write_text
from .records import FaceRecord
from .transforms import crop_matrix, invert_affine, warp_image

__all__ = ["CACHE_VERSION", "FaceCache", "records_fingerprint", "build_cache", "ensure_cache"]

CACHE_VERSION = 1
INDEX_NAME = "index.json"


def records_fingerprint(records: Sequence[FaceRecord], size: int, margin: float) -> str:
    """A sha256 over the cache parameters and everything about the records that shapes a crop."""
    h = hashlib.sha256(f"sepbn-cache v{CACHE_VERSION} size={size} margin={margin!r}".encode())
    for rec in records:
        if rec.image is not None:
            h.update(b"mem")
            h.update(np.ascontiguousarray(rec.image).tobytes())
        else:
            st = os.stat(rec.image_path) if rec.image_path is not None else None
            h.update(f"{rec.image_path}|{st.st_mtime_ns if st else -1}|{st.st_size if st else -1}".encode())
        h.update(np.asarray(rec.box, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(rec.landmarks, dtype=np.float64).tobytes())
    return h.hexdigest()


class FaceCache:
    """An opened cache: ``crop(i)`` (size, size, 3) uint8 and ``matrix(i)`` original -> crop.

    Pickles without its memmap (DataLoader workers reopen the file lazily), so worker start-up
    never copies the cache.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        index_path = self.root / INDEX_NAME
        try:
            meta = json.loads(index_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{index_path}: no face cache here (build it with `sepbn cache`)") from None
        if meta.get("version") != CACHE_VERSION:
            raise ValueError(f"{index_path}: cache version {meta.get('version')!r}, expected {CACHE_VERSION}")
        self.size = int(meta["size"])
        self.margin = float(meta["margin"])
        self.fingerprint = str(meta["fingerprint"])
        self.data_file = self.root / meta["data_file"]
        self.matrices = np.asarray(meta["matrices"], dtype=np.float64).reshape(-1, 2, 3)
        self.inverses = np.stack([invert_affine(m) for m in self.matrices]) if len(self.matrices) else self.matrices
        self._data: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.matrices)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_data": None}

    @property
    def data(self) -> np.ndarray:
        if self._data is None:
            self._data = np.memmap(self.data_file, dtype=np.uint8, mode="r",
                                   shape=(len(self), self.size, self.size, 3))
        return self._data

    def crop(self, i: int) -> np.ndarray:
        return self.data[i]

    def matrix(self, i: int) -> np.ndarray:
        """Original image -> cached crop of face ``i``, (2, 3)."""
        return self.matrices[i]

    def inverse(self, i: int) -> np.ndarray:
        """Cached crop -> original image of face ``i``, (2, 3)."""
        return self.inverses[i]

    def matches(self, records: Sequence[FaceRecord]) -> bool:
        """Whether this cache was built from exactly these records (same files, boxes, points)."""
        return len(records) == len(self) and records_fingerprint(records, self.size, self.margin) == self.fingerprint

    def __repr__(self) -> str:
        return f"FaceCache({str(self.root)!r}, faces={len(self)}, size={self.size}, margin={self.margin})"


def build_cache(
    records: Sequence[FaceRecord],
    root: str | Path,
    *,
    size: int = 256,
    margin: float = 2.0,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> FaceCache:
    """Decode and cut every face once into ``root`` (created if needed); returns the opened cache.

    ``progress(done, total)`` is called after each face.
    """
    if size < 8:
        raise ValueError(f"cache size must be >= 8 px, got {size}")
    if not margin >= 1.0:
        raise ValueError(f"cache margin must be >= 1 (a multiple of the face box), got {margin}")
    if not records:
        raise ValueError("cannot build a face cache from 0 records")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fingerprint = records_fingerprint(records, size, margin)
    data_name = f"faces-{fingerprint[:16]}.u8"
    tmp = root / f".{data_name}.{os.getpid()}.tmp"
    n = len(records)
    matrices = np.stack([crop_matrix(r.box, size, margin) for r in records])
    data = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(n, size, size, 3))

    def cut(i: int) -> None:
        data[i] = warp_image(records[i].load_image(), matrices[i], size)

    done = 0
    with ThreadPoolExecutor(max(1, workers)) as pool:  # cv2 releases the GIL while decoding
        for _ in pool.map(cut, range(n)):
            done += 1
            if progress is not None:
                progress(done, n)
    data.flush()
    del data
    os.replace(tmp, root / data_name)
    meta = {
        "version": CACHE_VERSION,
        "size": size,
        "margin": margin,
        "count": n,
        "fingerprint": fingerprint,
        "data_file": data_name,
        "sources": [r.source for r in records],
        "matrices": matrices.reshape(n, 6).tolist(),
    }
    atomic_write_text(root / INDEX_NAME, json.dumps(meta))
    for old in root.glob("faces-*.u8"):  # data files of earlier builds
        if old.name != data_name:
            old.unlink(missing_ok=True)
    return FaceCache(root)


def ensure_cache(
    records: Sequence[FaceRecord],
    root: str | Path,
    *,
    size: int = 256,
    margin: float = 2.0,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> FaceCache:
    """Open the cache at ``root`` if it was built from these records with these parameters,
    else (re)build it."""
    try:
        cache = FaceCache(root)
    except (FileNotFoundError, ValueError, KeyError):
        cache = None
    if (cache is not None and cache.size == size and cache.margin == margin
            and cache.data_file.is_file() and cache.matches(records)):
        return cache
    return build_cache(records, root, size=size, margin=margin, workers=workers, progress=progress)
