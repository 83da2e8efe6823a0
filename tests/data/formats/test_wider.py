"""RetinaFace WIDER label.txt: -1 faces, the 80 px rule, occlusion flags, errors, round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sepbn.data import FormatError, read_records, write_records

BIG = "10 20 100 90 30 40 0.0 60 41 1.0 45 60 0.0 35 80 0.0 58 81 0.0 0.82"
SMALL = "5 5 80 120 10 10 0.0 20 10 0.0 15 15 0.0 12 20 0.0 18 20 0.0 0.5"
NOLM = "200 10 120 130 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1"


@pytest.fixture
def label(tmp_path):
    txt = tmp_path / "train" / "label.txt"
    txt.parent.mkdir()
    (tmp_path / "train" / "images").mkdir()
    txt.write_text(f"# 0--Parade/a.jpg\n{BIG}\n{SMALL}\n{NOLM}\n# 1--Handshaking/b.jpg\n{BIG}\n")
    return txt


def test_reads_and_reports_left_out_faces(label):
    with pytest.warns(UserWarning, match=r"kept 2 faces, skipped 2 \(1 box # not above min_size #, "
                                         r"1 no landmark annotation\)"):
        recs = read_records("wider5", label)
    assert [r.source for r in recs] == [f"{label}:2", f"{label}:6"]
    assert recs.skipped == [(f"{label}:3", "box 80x120 not above min_size 80"),
                            (f"{label}:4", "no landmark annotation")]
    r = recs[0]
    assert r.box == (10.0, 20.0, 110.0, 110.0) and r.protocol == "5pt"
    np.testing.assert_array_equal(r.landmarks, [[30, 40], [60, 41], [45, 60], [35, 80], [58, 81]])
    np.testing.assert_array_equal(r.visible, [True, False, True, True, True])
    assert Path(r.image_path) == label.parent / "images" / "0--Parade" / "a.jpg"
    assert r.attributes["score"] == 0.82


def test_min_size_option_and_split(tmp_path, label):
    with pytest.warns(UserWarning, match="skipped 1"):
        recs = read_records("wider5", tmp_path, split="train", min_size=0)
    assert len(recs) == 3 and recs.skipped == [(f"{label}:4", "no landmark annotation")]


@pytest.mark.parametrize(
    "line, message",
    [
        (BIG.replace("60 41 1.0", "60 41 2.0"), "field 10 (flag1): '2.0' is not 0 (visible) or 1 (occluded)"),
        (BIG.replace("45 60", "x45 60"), "field 11 (x2): 'x45' is not a number"),
        (BIG.replace(" 100 ", " nan "), "field 3 (w): 'nan' is not finite"),
        ("1 2 3", "3 fields, expected 20"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path, line, message, read_error):
    txt = tmp_path / "label.txt"
    txt.write_text(f"# a.jpg\n{BIG}\n{line}\n")
    assert read_error("wider5", txt).startswith(f"{txt}:3: {message}")


def test_face_before_image_line(tmp_path):
    txt = tmp_path / "label.txt"
    txt.write_text(f"{BIG}\n")
    with pytest.raises(FormatError, match=r"label.txt:1: face line before the first '# image' line"):
        read_records("wider5", txt)


def test_round_trip(tmp_path, make_records, same_faces):
    recs = make_records("5pt", 3, root=tmp_path / "images", visible=True)
    write_records("wider5", recs, tmp_path / "label.txt")
    back = read_records("wider5", tmp_path / "label.txt", min_size=0, check_images=True)
    same_faces(back, recs)
    assert (tmp_path / "label.txt").read_text().startswith("# sub/face_0.jpg\n")
