"""300-W .pts (with and without header, 1-based), split folders, HRNet CSV; errors; round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sepbn.data import FormatError, read_records, write_records
from sepbn.data.formats.w300 import SPLITS_300W


def _pts_text(pts, header: bool = True) -> str:
    body = [f"{x:.6f} {y:.6f}" for x, y in pts]
    return "\n".join((["version: 1", "n_points:  68", "{"] if header else []) + body + (["}"] if header else [])) + "\n"


def _points(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(2, 30, size=(68, 2)).round(6)


@pytest.fixture
def w300_root(tmp_path, make_image):
    root = tmp_path / "300W"
    n = 0
    for folder in sorted({f for fs in SPLITS_300W.values() for f in fs}):
        for k in range(2):
            d = root / folder
            d.mkdir(parents=True, exist_ok=True)
            (d / f"img{k}.pts").write_text(_pts_text(_points(n), header=bool(n % 2)))
            make_image(f"{folder}/img{k}.png", root=root)
            n += 1
    return root


def test_one_based_to_zero_based_and_landmark_box(tmp_path, w300_root):
    (w300_root / "ibug" / "img0.pts").write_text(_pts_text(_points(7)))
    recs = read_records("300w", w300_root / "ibug" / "img0.pts")
    assert len(recs) == 1
    want = _points(7) - 1.0
    np.testing.assert_allclose(recs[0].landmarks, want)
    assert recs[0].box == (want[:, 0].min(), want[:, 1].min(), want[:, 0].max(), want[:, 1].max())
    assert recs[0].image_path == str(w300_root / "ibug" / "img0.png")
    assert recs[0].source == f"{w300_root / 'ibug' / 'img0.pts'}:1"


def test_given_boxes_replace_the_landmark_box(w300_root, read_error):
    src = [w300_root / "ibug" / "img0.pts", w300_root / "ibug" / "img1.pts"]
    boxes = {"img0.png": (1, 2, 20, 25), "img1.png": (0, 0, 10, 10)}
    recs = read_records("300w", src, boxes=boxes)
    assert [r.box for r in recs] == [(1.0, 2.0, 20.0, 25.0), (0.0, 0.0, 10.0, 10.0)]
    message = read_error("300w", src, boxes={"img0.png": (1, 2, 20, 25)})
    assert message == f"{src[1]}:1: field box: no entry for 'img1.png' in boxes="


def test_header_is_optional(tmp_path):
    pts = _points(3)
    (tmp_path / "a.pts").write_text(_pts_text(pts, header=True))
    (tmp_path / "b.pts").write_text(_pts_text(pts, header=False))
    a, b = read_records("300w", [tmp_path / "a.pts", tmp_path / "b.pts"])
    np.testing.assert_allclose(a.landmarks, pts - 1)
    np.testing.assert_allclose(b.landmarks, pts - 1)


@pytest.mark.parametrize("split, folders", [(s, f) for s, f in SPLITS_300W.items()])
def test_splits_select_folders(w300_root, split, folders):
    recs = read_records("300w", w300_root, split=split, check_images=True)
    got = sorted({Path(r.image_path).relative_to(w300_root).parent.as_posix() for r in recs})
    assert got == sorted(folders) and len(recs) == 2 * len(folders)


def test_full_is_common_plus_challenging(w300_root):
    full = read_records("300w", w300_root, split="full")
    parts = read_records("300w", w300_root, split="common") + read_records("300w", w300_root, split="challenging")
    assert [r.source for r in full] == [r.source for r in parts]


def test_missing_split_folder(tmp_path, make_image):
    (tmp_path / "afw").mkdir()
    (tmp_path / "afw" / "a.pts").write_text(_pts_text(_points()))
    with pytest.raises(FormatError, match=r"split 'train' needs the folders .*helen.*trainset"):
        read_records("300w", tmp_path, split="train")
    assert len(read_records("300w", tmp_path, split="train", missing_ok=True)) == 1
    with pytest.raises(ValueError, match="300-W split must be one of"):
        read_records("300w", tmp_path, split="valid")


@pytest.mark.parametrize(
    "text, where, message",
    [
        ("version: 1\nn_points: 68\n{\n" + "1 2\n" * 20 + "1 abc\n" + "1 2\n" * 47 + "}\n", 24,
         "field 2 (y20): 'abc' is not a number"),
        ("version: 1\nn_points: 68\n{\n" + "1 2\n" * 5 + "1 nan\n" + "1 2\n" * 62 + "}\n", 9,
         "field 2 (y5): 'nan' is not finite"),
        ("version: 1\nn_points: 68\n{\n" + "1 2\n" * 67 + "}\n", 70,
         "field n_points: header declares 68 points, file has 67"),
        ("1 2\n" * 67, 67, "field n_points: 67 points, but the protocol has 68"),
        ("version: 1\nn_points: x\n{\n" + "1 2\n" * 68 + "}\n", 2, "field n_points: 'x' is not a point count"),
        ("1 2 3\n" + "1 2\n" * 67, 1, "3 fields, expected 2"),
        ("version: 1\nn_points: 68\n{\n" + "1 2\n" * 68, 71, "expected '}' at the end"),
    ],
)
def test_pts_errors_name_file_line_and_field(tmp_path, text, where, message, read_error):
    p = tmp_path / "bad.pts"
    p.write_text(text)
    assert read_error("300w", p).startswith(f"{p}:{where}: {message}")


def test_skip_invalid_and_empty_pts(tmp_path):
    (tmp_path / "a.pts").write_text(_pts_text(_points()))
    (tmp_path / "b.pts").write_text("")
    with pytest.raises(FormatError, match="b.pts: file is empty"):
        read_records("300w", tmp_path)
    with pytest.warns(UserWarning, match="skipped 1"):
        recs = read_records("300w", tmp_path, skip_invalid=True)
    assert len(recs) == 1 and recs.skipped == [(str(tmp_path / "b.pts"), "file is empty (no faces)")]


def test_pts_round_trip(tmp_path, make_records, same_faces):
    recs = make_records("300w68", 3, root=tmp_path / "faces", ext=".png")
    for r in recs:  # 300-W's box is the landmark box
        r.box = tuple(np.r_[r.landmarks.min(0), r.landmarks.max(0)])
    write_records("300w", recs, tmp_path / "faces" / "sub")
    back = read_records("300w", tmp_path / "faces", check_images=True)
    same_faces(back, recs, atol=1e-9)
    assert (tmp_path / "faces" / "sub" / "face_0.pts").read_text().startswith("version: 1\nn_points: 68\n{\n")
    write_records("300w", recs[:1], tmp_path / "one.pts", header=False)
    assert len((tmp_path / "one.pts").read_text().splitlines()) == 68
    np.testing.assert_allclose(read_records("300w", tmp_path / "one.pts")[0].landmarks, recs[0].landmarks)


def test_csv_reads_hrnet_layout(tmp_path, read_error):
    pts = _points(1)
    row = ["helen/trainset/x.jpg", "0.5", "16.0", "17.0"] + [f"{v}" for v in pts.reshape(-1)]
    header = ["image_name", "scale", "center_w", "center_h"] + [f"original_{i}_{c}" for i in range(68) for c in "xy"]
    csv = tmp_path / "face_landmarks_300w_valid.csv"
    csv.write_text(",".join(header) + "\n" + ",".join(row) + "\n")
    (r,) = read_records("300w-csv", csv, images=tmp_path / "images")
    np.testing.assert_allclose(r.landmarks, pts)
    assert r.box == (16.0 - 50.0, 17.0 - 50.0, 16.0 + 50.0, 17.0 + 50.0)
    assert r.image_path == str(tmp_path / "images" / "helen" / "trainset" / "x.jpg")
    (r1,) = read_records("300w-csv", csv, images=tmp_path / "images", origin=1)
    np.testing.assert_allclose(r1.landmarks, pts - 1)
    bad = list(row)
    bad[10] = "zz"
    csv.write_text(",".join(header) + "\n" + ",".join(row) + "\n" + ",".join(bad) + "\n")
    assert read_error("300w-csv", csv) == f"{csv}:3: field 11 (x3): 'zz' is not a number"


def test_csv_round_trip(tmp_path, make_records, same_faces):
    recs = make_records("300w68", 2, root=tmp_path)
    for r in recs:
        r.box = (2.0, 3.0, 30.0, 31.0)  # the CSV stores a square box (centre + scale)
    write_records("300w-csv", recs, tmp_path / "a.csv")
    same_faces(read_records("300w-csv", tmp_path / "a.csv"), recs, atol=1e-9)
