"""Shared fixtures: tiny on-disk landmark datasets for training/evaluation/CLI tests.

``tiny_faces`` writes two generic-CSV datasets (300w68 and 5pt, 12 faces each, 64 px images with
the landmarks drawn as bright dots) and returns their folder. Faces carry SynthFaces-style
``domain``/``domain_id`` attributes so per-domain evaluation has labels.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from sepbn.data import FaceRecord, get_protocol


def write_tiny_faces(root, *, n: int = 12, size: int = 64, seed: int = 0) -> dict:
    import cv2

    from sepbn.data.formats import write_records

    rng = np.random.default_rng(seed)
    out = {}
    for proto in ("300w68", "5pt"):
        p = get_protocol(proto)
        folder = root / proto
        folder.mkdir(parents=True, exist_ok=True)
        base = rng.uniform(-1, 1, (p.num_points, 2)) * size * 0.25
        records = []
        for i in range(n):
            centre = size / 2 + rng.uniform(-4, 4, 2)
            pts = centre + base * rng.uniform(0.8, 1.2) + rng.normal(0, 1.0, base.shape)
            img = (rng.uniform(0, 60, (size, size, 3))).astype(np.uint8)
            for x, y in pts:
                cv2.circle(img, (int(round(x)), int(round(y))), 1, (255, 255, 255), -1)
            name = f"{i:03d}.png"
            cv2.imwrite(str(folder / name), img)
            lo, hi = pts.min(0) - 4, pts.max(0) + 4
            records.append(FaceRecord(
                landmarks=pts, box=(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])), protocol=proto,
                image_path=str(folder / name), attributes={"domain": ["left", "frontal"][i % 2], "domain_id": i % 2},
            ))
        write_records("csv", records, folder / "faces.csv")
        out[proto] = folder / "faces.csv"
    return out


@pytest.fixture(scope="session")
def tiny_faces(tmp_path_factory):
    """{protocol: path of a generic CSV} for 300w68 and 5pt (12 faces each)."""
    return write_tiny_faces(tmp_path_factory.mktemp("tiny_faces"))



@pytest.fixture(scope="session", autouse=True)
def _onnx_cache(tmp_path_factory):
    """Networks exported for the onnxruntime backend go to a folder of this test session, not the user's cache."""
    os.environ["SEPBN_CACHE_DIR"] = str(tmp_path_factory.mktemp("sepbn_cache"))
    yield
