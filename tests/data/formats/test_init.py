"""read_records / write_records: dispatch, options, shared checks (check_images, bounds)."""

from __future__ import annotations

import numpy as np
import pytest

from sepbn.data import FormatError, RecordList, read_records, write_records
from sepbn.data.formats import READERS, WRITERS


def test_tables_cover_the_contract():
    assert {"wflw", "300w", "300w-csv", "cofw", "aflw", "wider5", "mtfl", "csv", "coco"} <= set(READERS)
    assert {"wflw", "300w", "mtfl", "csv", "wider5", "cofw", "aflw", "coco"} <= set(WRITERS)
    assert issubclass(FormatError, ValueError)


def test_unknown_format_and_option(tmp_path):
    with pytest.raises(ValueError, match="unknown annotation format 'ibug'"):
        read_records("ibug", tmp_path)
    with pytest.raises(ValueError, match=r"format 'mtfl' has no option\(s\) \['min_size'\]"):
        read_records("mtfl", tmp_path / "x.txt", min_size=3)
    with pytest.raises(ValueError, match=r"format 'wflw' has no option\(s\) \['version'\]"):
        write_records("wflw", [], tmp_path / "x.txt", version="5")


def test_returns_record_list(tmp_path, make_records):
    recs = make_records("5pt", 2, root=tmp_path)
    write_records("jsonl", recs, tmp_path / "f.jsonl")
    out = read_records("jsonl", tmp_path / "f.jsonl")
    assert isinstance(out, RecordList) and out.skipped == [] and len(out) == 2


def test_check_images_undecodable_and_far_outside(tmp_path, make_records, read_error):
    recs = make_records("5pt", 3, root=tmp_path)
    (tmp_path / "sub" / "face_1.jpg").write_bytes(b"not a jpeg")
    recs[2].landmarks = recs[2].landmarks.copy()
    recs[2].landmarks[3] = (90.0, 10.0)  # 32 px wide image: far outside
    write_records("jsonl", recs, tmp_path / "f.jsonl")
    assert len(read_records("jsonl", tmp_path / "f.jsonl")) == 3  # lazily: not checked
    message = read_error("jsonl", tmp_path / "f.jsonl", check_images=True)
    assert message.startswith(f"{tmp_path / 'f.jsonl'}:2: field image: ") and "cannot decode" in message
    with pytest.warns(UserWarning, match="kept 1 faces, skipped 2"):
        out = read_records("jsonl", tmp_path / "f.jsonl", check_images=True, skip_invalid=True)
    assert out.skipped[1] == (f"{tmp_path / 'f.jsonl'}:3",
                              "field landmarks[3]: point 3 at (90, 10) is far outside the 32x32 image")
    # A wider tolerance accepts it.
    with pytest.warns(UserWarning, match=r"kept 2 faces, skipped 1 \(1 # cannot decode image\)"):
        assert len(read_records("jsonl", tmp_path / "f.jsonl", check_images=True, image_tolerance=3.0,
                                skip_invalid=True)) == 2


def test_box_far_outside(tmp_path, make_records):
    recs = make_records("5pt", 1, root=tmp_path)
    recs[0].box = (1.0, 2.0, 29.0, 400.0)
    write_records("jsonl", recs, tmp_path / "f.jsonl")
    with pytest.raises(FormatError, match=r"f.jsonl:1: field box: y_max = 400 is far outside the 32x32 image"):
        read_records("jsonl", tmp_path / "f.jsonl", check_images=True)


def test_writers_need_image_paths(tmp_path, make_records):
    recs = make_records("5pt", 1, root=tmp_path)
    recs[0].image_path = None
    with pytest.raises(ValueError, match="made#0: record has no image_path"):
        write_records("mtfl", recs, tmp_path / "t.txt")
    assert np.asarray(recs[0].landmarks).shape == (5, 2)


def test_importing_the_readers_does_not_load_h5py_or_scipy_io():
    import subprocess
    import sys

    code = ("import sys, sepbn.data.formats; "
            "print(sorted(m for m in ('h5py', 'scipy.io') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
