"""MTFL txt as released: backslash paths, space-prefixed lines, CRLF; labels; derived box; round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sepbn.data import read_records, write_records


def _line(name: str, lead: str = "") -> str:
    xs = ["10.25", "20.75", "15.5", "11", "19"]
    ys = ["12", "12.5", "17", "22.25", "22.75"]
    return lead + f"lfw_5590\\{name}.jpg " + " ".join(xs + ys + ["1", "2", "2", "3"])


def test_reads_release_quirks(tmp_path, make_image):
    make_image("lfw_5590/A.jpg", root=tmp_path)
    make_image("lfw_5590/B.jpg", root=tmp_path)
    txt = tmp_path / "training.txt"
    txt.write_bytes((_line("A") + "\r\n" + _line("B", lead=" ") + "\r\n").encode())
    recs = read_records("mtfl", txt, check_images=True)
    assert [Path(r.image_path) for r in recs] == [tmp_path / "lfw_5590" / "A.jpg", tmp_path / "lfw_5590" / "B.jpg"]
    r = recs[1]
    assert r.protocol == "5pt" and r.source == f"{txt}:2"
    np.testing.assert_allclose(r.landmarks, [[10.25, 12], [20.75, 12.5], [15.5, 17], [11, 22.25], [19, 22.75]])
    assert r.attributes == {"gender": 1, "smile": 2, "glasses": 2, "pose": 3}
    # No box in the file: a square of 2x the landmark box's longer side (10.75), centred on it.
    cx, cy, half = (10.25 + 20.75) / 2, (12 + 22.75) / 2, 10.75
    np.testing.assert_allclose(r.box, (cx - half, cy - half, cx + half, cy + half))
    wide = read_records("mtfl", txt, box_scale=3.0)[1]
    assert wide.box[2] - wide.box[0] == pytest.approx(3.0 * 10.75)


def test_split_and_images_root(tmp_path):
    (tmp_path / "testing.txt").write_text(_line("A") + "\n")
    (r,) = read_records("mtfl", tmp_path, split="test", images=tmp_path / "imgs")
    assert Path(r.image_path) == tmp_path / "imgs" / "lfw_5590" / "A.jpg"


@pytest.mark.parametrize(
    "tokens_edit, message",
    [
        (lambda t: t.__setitem__(7, "1e"), "field 8 (y1): '1e' is not a number"),
        (lambda t: t.__setitem__(2, "-inf"), "field 3 (x1): '-inf' is not finite"),
        (lambda t: t.__setitem__(14, "1.5"), "field 15 (pose): '1.5' is not an integer label"),
        (lambda t: t.pop(), "14 fields, expected 15"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path, tokens_edit, message, read_error):
    t = _line("A").split()
    tokens_edit(t)
    txt = tmp_path / "training.txt"
    txt.write_text(_line("B") + "\n" + " " + " ".join(t) + "\n")
    assert read_error("mtfl", txt).startswith(f"{txt}:2: {message}")
    with pytest.warns(UserWarning, match="kept 1 faces, skipped 1"):
        assert read_records("mtfl", txt, skip_invalid=True).skipped[0][0] == f"{txt}:2"


def test_missing_image_found_by_check_images(tmp_path, read_error):
    txt = tmp_path / "training.txt"
    txt.write_text(_line("A") + "\n")
    (r,) = read_records("mtfl", txt)  # lazily: fine until loaded
    message = read_error("mtfl", txt, check_images=True)
    assert message.startswith(f"{txt}:1: field image: ") and "image file not found" in message


def test_round_trip_writes_backslashes_and_crlf(tmp_path, make_records, same_faces):
    recs = make_records("5pt", 3, root=tmp_path)
    recs[0].attributes = {"gender": 2, "smile": 1, "glasses": 1, "pose": 5}
    write_records("mtfl", recs, tmp_path / "training.txt")
    raw = (tmp_path / "training.txt").read_bytes().decode()
    assert raw.startswith("sub\\face_0.jpg ") and raw.count("\r\n") == 3
    back = read_records("mtfl", tmp_path / "training.txt", check_images=True)
    same_faces(back, recs, box=False)
    assert back[0].attributes == recs[0].attributes
