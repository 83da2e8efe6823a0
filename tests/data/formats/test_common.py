"""Shared helpers: line numbering, number parsing, path normalisation, derived boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sepbn.data import FaceRecord, FormatError, get_protocol
from sepbn.data.formats.common import (
    enlarged_box, landmark_box, parse_floats, read_lines, resolve_image, validate_record,
)


def test_read_lines_keeps_editor_line_numbers(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"\xef\xbb\xbfone\r\n\r\n  \ntwo\x0bstill two\r\nthree")
    assert read_lines(f) == [(1, "one"), (4, "two\x0bstill two"), (5, "three")]


def test_read_lines_errors(tmp_path):
    with pytest.raises(FormatError, match="nope.txt: annotation file not found"):
        read_lines(tmp_path / "nope.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00garbage\xff")
    with pytest.raises(FormatError, match="bin.txt: not UTF-8 text"):
        read_lines(tmp_path / "bin.txt")


def test_parse_floats_names_field():
    np.testing.assert_array_equal(parse_floats(["1", "-2.5e1"], "f:3", 7, ["a", "b"]), [1.0, -25.0])
    with pytest.raises(FormatError) as e:
        parse_floats(["1", "1,5"], "f:3", 7, ["a", "b"])
    assert str(e.value) == "f:3: field 8 (b): '1,5' is not a number"
    assert e.value.source == "f:3" and e.value.field == "8 (b)" and e.value.reason == "'1,5' is not a number"


def test_resolve_image_normalises_backslashes(tmp_path):
    assert Path(resolve_image(tmp_path, "lfw_5590\\A_B_0001.jpg")) == tmp_path / "lfw_5590" / "A_B_0001.jpg"
    assert Path(resolve_image(tmp_path, " a/b.jpg ")) == tmp_path / "a" / "b.jpg"
    assert resolve_image(tmp_path, "/abs/c.jpg") == "/abs/c.jpg"


def test_boxes_from_points():
    pts = np.array([[1.0, 2.0], [5.0, 4.0], [3.0, 10.0]])
    assert landmark_box(pts) == (1.0, 2.0, 5.0, 10.0)
    assert enlarged_box(pts, 2.0) == (3.0 - 8.0, 6.0 - 8.0, 3.0 + 8.0, 6.0 + 8.0)


def test_validate_record_point_count_and_visible():
    p = get_protocol("5pt")
    rec = FaceRecord(np.zeros((4, 2)), (0, 0, 1, 1), "5pt", source="x:1")
    with pytest.raises(FormatError, match=r"x:1: field landmarks: 4 points, but protocol 5pt has 5"):
        validate_record(rec, p)
    rec = FaceRecord(np.zeros((5, 2)), (0, 0, 1, 1), "5pt", visible=np.ones(3, bool), source="x:1")
    with pytest.raises(FormatError, match=r"x:1: field visible: \(3,\) flags for 5 points"):
        validate_record(rec, p)


def test_box_without_area_prints_plain_numbers():
    """A 1x1 image's box read as numpy values: the message shows 0, not np.float64(0.0)."""
    rec = FaceRecord(landmarks=np.zeros((5, 2)), box=tuple(np.zeros(4)), protocol="5pt", source="one.csv:2")
    with pytest.raises(FormatError) as e:
        validate_record(rec, get_protocol("5pt"))
    assert str(e.value) == "one.csv:2: field box: (0, 0, 0, 0) has no area (need x_max > x_min and y_max > y_min)"
