"""Generic CSV and JSON lines: layout, protocol from option or field, errors, round trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sepbn.data import FormatError, read_records, write_records

HEADER = "image,x_min,y_min,x_max,y_max,x0,y0,x1,y1,x2,y2,x3,y3,x4,y4,v0,v1,v2,v3,v4,protocol,domain,domain_id"
ROW = "a/b.jpg,1,2,30,31,5.5,6,20,6.25,12,15,8,22,19,22,1,0,1,1,1,5pt,studio,2"


def test_csv_reads_columns(tmp_path):
    f = tmp_path / "faces.csv"
    f.write_text(HEADER + "\n" + ROW + "\n")
    (r,) = read_records("csv", f)
    assert r.protocol == "5pt" and r.box == (1.0, 2.0, 30.0, 31.0) and r.source == f"{f}:2"
    np.testing.assert_array_equal(r.landmarks, [[5.5, 6], [20, 6.25], [12, 15], [8, 22], [19, 22]])
    assert r.visible.tolist() == [True, False, True, True, True]
    assert r.attributes == {"domain": "studio", "domain_id": 2}
    assert Path(r.image_path) == tmp_path / "a" / "b.jpg"


def test_protocol_is_never_guessed(tmp_path):
    f = tmp_path / "faces.csv"
    f.write_text(HEADER.replace(",protocol", "") + "\n" + ROW.replace(",5pt", "") + "\n")
    with pytest.raises(FormatError, match=r"faces.csv:2: field 1 \(protocol\): no protocol: pass protocol="):
        read_records("csv", f)
    assert read_records("csv", f, protocol="5pt")[0].protocol == "5pt"
    with pytest.raises(FormatError, match=r"faces.csv:2: field header: 5 x/y column pairs, but protocol aflw19"):
        read_records("csv", f, protocol="aflw19")


@pytest.mark.parametrize(
    "row, message",
    [
        (ROW.replace(",5.5,", ",five,"), "field 6 (x0): 'five' is not a number"),
        (ROW.replace(",20,6.25,", ",20,NaN,"), "field 9 (y1): 'NaN' is not finite"),
        (ROW.replace(",1,0,1,1,1,", ",1,0,1,2,1,"), "field 19 (v3): '2' is not 0 or 1"),
        (ROW + ",extra", "24 fields, the header has 23"),
    ],
)
def test_csv_errors(tmp_path, row, message, read_error):
    f = tmp_path / "faces.csv"
    f.write_text(HEADER + "\n" + ROW + "\n" + row + "\n")
    assert read_error("csv", f).startswith(f"{f}:3: {message}")


def test_csv_header_must_name_columns(tmp_path):
    f = tmp_path / "faces.csv"
    f.write_text("img,x_min\n1,2\n")
    with pytest.raises(FormatError, match=r"faces.csv:1: header lacks the column 'image'"):
        read_records("csv", f)


def _jsonl_face(**kw) -> str:
    obj = {"image": "a.jpg", "box": [1, 2, 30, 31], "landmarks": [[5, 6], [20, 6], [12, 15], [8, 22], [19, 22]],
           "protocol": "5pt"}
    obj.update(kw)
    return json.dumps({k: v for k, v in obj.items() if v is not None})


def test_jsonl_reads(tmp_path):
    f = tmp_path / "faces.jsonl"
    f.write_text(_jsonl_face(visible=[True, True, False, True, True], attributes={"domain": "x"}) + "\n")
    (r,) = read_records("jsonl", f)
    assert r.visible.tolist() == [True, True, False, True, True] and r.attributes == {"domain": "x"}


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "not JSON"),
        (_jsonl_face(landmarks=[[1, 2]] * 4), "field landmarks: shape (4, 2), protocol 5pt needs (5, 2)"),
        (_jsonl_face(landmarks=[[1, 2]] * 4 + [[1, "x"]]), "field landmarks: "),
        (_jsonl_face(box=[1, 2, 3]), "field box: [1, 2, 3] is not [x_min, y_min, x_max, y_max]"),
        (_jsonl_face(image=None), "field image: missing"),
        (_jsonl_face(protocol=None), "field protocol: no protocol"),
        (_jsonl_face(visible=[1, 1]), "field visible: expected 5 booleans"),
    ],
)
def test_jsonl_errors(tmp_path, line, message, read_error):
    f = tmp_path / "faces.jsonl"
    f.write_text(_jsonl_face() + "\n" + line + "\n")
    assert read_error("jsonl", f).startswith(f"{f}:2: {message}")


def test_jsonl_non_finite(tmp_path, read_error):
    f = tmp_path / "faces.jsonl"
    f.write_text(_jsonl_face().replace("[19, 22]", "[19, NaN]") + "\n")
    assert read_error("jsonl", f) == f"{f}:1: field landmarks[4][1]: nan is not finite"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_round_trip(tmp_path, make_records, same_faces, fmt):
    recs = make_records("cofw29", 3, root=tmp_path, visible=True)
    recs[0].attributes = {"domain": "studio", "domain_id": 2, "ratio": 0.25}
    recs[2].attributes = {"domain": "night"}
    write_records(fmt, recs, tmp_path / f"faces.{fmt}")
    back = read_records(fmt, tmp_path / f"faces.{fmt}", check_images=True)
    same_faces(back, recs)
    assert [b.attributes for b in back] == [r.attributes for r in recs]
