"""COCO keypoints: visibility codes, faces without keypoints, protocol source, errors, round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sepbn.data import FormatError, read_records, write_records


def _coco(anns) -> dict:
    return {"images": [{"id": 7, "file_name": "imgs/a.jpg", "width": 32, "height": 32}],
            "categories": [{"id": 1, "name": "face", "protocol": "5pt", "keypoints": list("abcde")}],
            "annotations": anns}


def _ann(**kw) -> dict:
    ann = {"image_id": 7, "category_id": 1, "bbox": [1, 2, 28, 29], "num_keypoints": 5,
           "keypoints": [5, 6, 2, 20, 6, 1, 12, 15, 2, 8, 22, 2, 19, 22, 2]}
    ann.update(kw)
    return ann


def test_reads_and_counts_faces_without_keypoints(tmp_path):
    f = tmp_path / "ann.json"
    f.write_text(json.dumps(_coco([_ann(), _ann(keypoints=[0] * 15, num_keypoints=0)])))
    with pytest.warns(UserWarning, match="kept 1 faces, skipped 1"):
        recs = read_records("coco", f)
    (r,) = recs
    assert recs.skipped == [(f"{f}#1", "no landmark annotation")]
    assert r.box == (1.0, 2.0, 29.0, 31.0) and r.source == f"{f}#0" and r.protocol == "5pt"
    assert r.visible.tolist() == [True, False, True, True, True]
    np.testing.assert_array_equal(r.landmarks[1], [20, 6])
    assert Path(r.image_path) == tmp_path / "imgs" / "a.jpg"


@pytest.mark.parametrize(
    "ann, message",
    [
        (_ann(keypoints=[5, 6, 2] * 4), "field keypoints: 12 values, protocol 5pt needs 3 x 5"),
        (_ann(keypoints=[5, 6, 2] * 4 + [1, 2, 0]), "field keypoints[14]: point 4 is not labelled (v=0)"),
        (_ann(bbox=[1, 2, 3]), "field bbox: [1, 2, 3] is not [x, y, w, h]"),
        (_ann(image_id=3), "field image_id: 3 is not an id in 'images'"),
        (_ann(category_id=9), "field category_id: no protocol"),
    ],
)
def test_errors_name_file_index_and_field(tmp_path, ann, message, read_error):
    f = tmp_path / "ann.json"
    f.write_text(json.dumps(_coco([_ann(), ann])))
    assert read_error("coco", f).startswith(f"{f}#1: {message}")


def test_bad_json_and_protocol_option(tmp_path):
    f = tmp_path / "ann.json"
    f.write_text('{"images": [],\n "annotations": [,]}')
    with pytest.raises(FormatError, match=r"ann.json:2: not JSON"):
        read_records("coco", f)
    doc = _coco([_ann()])
    del doc["categories"][0]["protocol"]
    f.write_text(json.dumps(doc))
    assert read_records("coco", f, protocol="5pt")[0].protocol == "5pt"


def test_round_trip(tmp_path, make_records, same_faces):
    recs = make_records("aflw19", 2, root=tmp_path, visible=True) + make_records("5pt", 1, root=tmp_path / "o")
    write_records("coco", recs, tmp_path / "ann.json")
    doc = json.loads((tmp_path / "ann.json").read_text())
    assert {c["protocol"] for c in doc["categories"]} == {"aflw19", "5pt"}
    assert doc["images"][0]["width"] == 32
    same_faces(read_records("coco", tmp_path / "ann.json", check_images=True), recs)
