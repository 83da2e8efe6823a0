"""Fixtures for the format tests: tiny images and records written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from sepbn.data import FaceRecord, FormatError, get_protocol, read_records


@pytest.fixture
def make_image(tmp_path: Path):
    """Write a deterministic 32x32 (or given size) image; returns its path."""

    def make(rel: str, size: tuple[int, int] = (32, 32), root: Path | None = None) -> Path:
        path = (root or tmp_path) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        h, w = size
        img = (np.arange(h * w * 3, dtype=np.int64).reshape(h, w, 3) * 7 % 251).astype(np.uint8)
        assert cv2.imwrite(str(path), img)
        return path

    return make


@pytest.fixture
def make_records(make_image, tmp_path: Path):
    """``n`` records of ``protocol`` whose points and boxes lie inside 32x32 images under
    ``root`` (default tmp_path/images); fractional coordinates test float round trips."""

    def make(protocol: str, n: int = 3, *, root: Path | None = None, visible: bool = False,
             ext: str = ".jpg", seed: int = 0) -> list[FaceRecord]:
        proto = get_protocol(protocol)
        rng = np.random.default_rng(seed)
        root = root or tmp_path / "images"
        out = []
        for i in range(n):
            pts = rng.uniform(4, 27, size=(proto.num_points, 2)).round(3) + 0.125
            out.append(FaceRecord(
                landmarks=pts,
                box=(1.5 + i, 2.25, 29.0, 30.5),
                protocol=proto.name,
                image_path=str(make_image(f"sub/face_{i}{ext}", root=root)),
                visible=(rng.uniform(size=proto.num_points) > 0.3) if visible else None,
                source=f"made#{i}",
            ))
        return out

    return make


def assert_same_faces(got, want, *, box: bool = True, visible: bool = True, atol: float = 1e-9) -> None:
    """Written-then-read records equal the originals (points, box, path, visibility)."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.protocol == w.protocol
        np.testing.assert_allclose(g.landmarks, w.landmarks, atol=atol, rtol=0)
        if box:
            np.testing.assert_allclose(g.box, w.box, atol=atol, rtol=0)
        if w.image_path is not None:
            assert Path(g.image_path).resolve() == Path(w.image_path).resolve()
        if visible and w.visible is not None:
            np.testing.assert_array_equal(g.visible, w.visible)


@pytest.fixture
def same_faces():
    """The comparison used by every write-then-read test."""
    return assert_same_faces


@pytest.fixture
def read_error():
    """The FormatError message ``read_records(*args, **kwargs)`` raises (fails if none)."""

    def read(*args, **kwargs) -> str:
        with pytest.raises(FormatError) as e:
            read_records(*args, **kwargs)
        return str(e.value)

    return read
