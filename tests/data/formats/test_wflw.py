"""WFLW list files: parse, split lookup, attributes, errors naming file/line/field, round trip."""

from __future__ import annotations

import pytest

from sepbn.data import FormatError, read_records, write_records
from sepbn.data.protocols import WFLW_ATTRIBUTES


def _line(i: int, path: str = "51--Dresses/a.jpg", flags=(1, 0, 0, 1, 0, 1)) -> str:
    coords = [f"{(k % 20) + 0.5 * i}" for k in range(196)]
    return " ".join(coords + ["1", "2", "30", "31"] + [str(f) for f in flags] + [path])


def test_reads_official_layout(tmp_path, make_image):
    root = tmp_path / "WFLW"
    ann = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    ann.mkdir(parents=True)
    (ann / "list_98pt_rect_attr_test.txt").write_text(_line(0) + "\n" + _line(1, "b/c.jpg", (0,) * 6) + "\n")
    recs = read_records("wflw", root / "WFLW_annotations", split="test")
    assert len(recs) == 2 and recs.skipped == []
    r = recs[0]
    assert r.protocol == "wflw98" and r.landmarks.shape == (98, 2)
    assert r.landmarks[1, 0] == 2.0 and r.landmarks[1, 1] == 3.0  # x1 y1 = fields 3, 4
    assert r.box == (1.0, 2.0, 30.0, 31.0)
    assert r.attributes == dict(zip(WFLW_ATTRIBUTES, (True, False, False, True, False, True)))
    # Without a WFLW_images folder nearby, paths resolve against the list file's folder.
    assert r.image_path == str(ann / "51--Dresses" / "a.jpg")
    assert r.source.endswith("list_98pt_rect_attr_test.txt:1")
    assert recs[1].landmarks[0, 0] == 0.5


def test_images_root_found_next_to_annotations(tmp_path):
    root = tmp_path / "WFLW"
    (root / "WFLW_images").mkdir(parents=True)
    txt = root / "WFLW_annotations" / "list.txt"
    txt.parent.mkdir(parents=True)
    txt.write_text(_line(0) + "\n")
    assert read_records("wflw", txt)[0].image_path == str(root / "WFLW_images" / "51--Dresses" / "a.jpg")


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda t: t.__setitem__(44, "abc"), "field 45 (x22): 'abc' is not a number"),
        (lambda t: t.__setitem__(3, "nan"), "field 4 (y1): 'nan' is not finite"),
        (lambda t: t.__setitem__(197, "inf"), "field 198 (y_min): 'inf' is not finite"),
        (lambda t: t.__setitem__(200, "2"), "field 201 (attribute pose): '2' is not 0 or 1"),
        (lambda t: t.pop(5), "206 fields, expected 207"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path, edit, field, read_error):
    tokens = _line(0).split()
    edit(tokens)
    txt = tmp_path / "list.txt"
    txt.write_text(_line(0) + "\n\n" + " ".join(tokens) + "\n")
    assert read_error("wflw", txt).startswith(f"{txt}:3: {field}")


def test_skip_invalid_reports_and_warns(tmp_path):
    txt = tmp_path / "list.txt"
    txt.write_text("\n".join([_line(0), "1 2 3", _line(1)]) + "\n")
    with pytest.warns(UserWarning, match="kept 2 faces, skipped 1"):
        recs = read_records("wflw", txt, skip_invalid=True)
    assert len(recs) == 2
    assert recs.skipped == [(f"{txt}:2", "3 fields, expected 207 (196 coordinates, 4 box numbers, "
                                        "6 attribute flags, image path)")]


def test_empty_file_is_an_error(tmp_path):
    txt = tmp_path / "list.txt"
    txt.write_text("\n  \n")
    with pytest.raises(FormatError, match="list.txt: file is empty"):
        read_records("wflw", txt, skip_invalid=True)


def test_bad_box_is_an_error(tmp_path):
    tokens = _line(0).split()
    tokens[198] = "0"  # x_max < x_min
    txt = tmp_path / "list.txt"
    txt.write_text(" ".join(tokens) + "\n")
    with pytest.raises(FormatError, match=r"list.txt:1: field box: .* has no area"):
        read_records("wflw", txt)


def test_round_trip(tmp_path, make_records, same_faces):
    recs = make_records("wflw98", 3, root=tmp_path / "WFLW_images")
    recs[1].attributes = {"pose": True, "blur": True}
    dest = tmp_path / "ann" / "list.txt"
    write_records("wflw", recs, dest, images=tmp_path / "WFLW_images")
    back = read_records("wflw", dest, images=tmp_path / "WFLW_images", check_images=True)
    same_faces(back, recs)
    assert back[1].attributes == {a: a in ("pose", "blur") for a in WFLW_ATTRIBUTES}
    assert not any(back[0].attributes.values())


def test_writer_refuses_other_protocols(tmp_path, make_records):
    with pytest.raises(ValueError, match="protocol wflw98, got '5pt'"):
        write_records("wflw", make_records("5pt", 1), tmp_path / "x.txt")
