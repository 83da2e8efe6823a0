"""sepbn.data.preflight: image probes (missing, truncated, undecodable), the size/mtime cache, and the
per-face check of points and box against the image size; plus the truncated-JPEG test of read_image."""

import os

import cv2
import numpy as np
import pytest

from sepbn.data import FaceRecord
from sepbn.data import preflight as pf
from sepbn.data.records import ImageReadError, jpeg_truncated, read_image


def _jpeg(path, seed=0, size=(40, 48)):
    rng = np.random.default_rng(seed)
    ok, buf = cv2.imencode(".jpg", rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    path.write_bytes(buf.tobytes())
    return path


@pytest.fixture
def images(tmp_path):
    good = _jpeg(tmp_path / "good.jpg")
    cut = _jpeg(tmp_path / "cut.jpg", 1)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return {"good": str(good), "cut": str(cut), "junk": str(junk), "missing": str(tmp_path / "missing.jpg")}


def test_probe_image_finds_size_or_cause(images):
    assert pf.probe_image(images["good"]) == pf.ImageInfo(width=48, height=40)
    assert pf.probe_image(images["cut"]).cause == "truncated"
    assert pf.probe_image(images["junk"]).cause == "undecodable"
    assert pf.probe_image(images["missing"]).cause == "missing"


def test_jpeg_end_marker_check_and_read_image(images, tmp_path):
    data = open(images["good"], "rb").read()
    assert not jpeg_truncated(data) and not jpeg_truncated(data + b"appended video" * 500)  # motion photos
    assert all(jpeg_truncated(data[:n]) for n in (len(data) - 2, len(data) // 2, 100, 4))
    assert not jpeg_truncated(b"\x89PNG\r\n\x1a\n")  # not a JPEG: the decoder judges
    with pytest.raises(ImageReadError, match="cut.jpg: truncated JPEG"):
        read_image(images["cut"])


def test_probe_images_in_threads_and_cached_by_size_and_mtime(images, tmp_path, monkeypatch):
    cache = tmp_path / "cache.json"
    paths = list(images.values()) + [images["good"]]  # a repeated path is probed once
    first = pf.probe_images(paths, workers=2, cache=cache)
    assert set(first) == set(images.values()) and cache.is_file()
    calls = []
    real = pf.probe_image
    monkeypatch.setattr(pf, "probe_image", lambda p: calls.append(p) or real(p))
    assert pf.probe_images(paths, workers=2, cache=cache) == first and calls == []  # a restart pays nothing
    st = os.stat(images["good"])
    os.utime(images["good"], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: probed again
    _jpeg(tmp_path / "cut.jpg", 1)  # repaired: size changed
    again = pf.probe_images(paths, workers=1, cache=cache)
    assert sorted(calls) == sorted([images["good"], images["cut"]]) and again[images["cut"]].cause is None
    cache.write_text("{not json")  # a damaged cache is rebuilt, never trusted
    assert pf.probe_images(paths, cache=cache) == again


def _face(path, pts, box=(5, 5, 40, 35), source="a.csv:2"):
    return FaceRecord(landmarks=np.asarray(pts, float), box=box, protocol="5pt", image_path=path, source=source)


def test_check_records_keeps_fitting_faces_and_reports_the_rest(images):
    pts = [[10, 10], [30, 10], [20, 20], [12, 30], [28, 30]]
    cut_by_frame = [[-3, 10], [30, 10], [20, 20], [12, 30], [50, 30]]  # 2 points just outside a 48 px width
    far = [[10, 10], [30, 10], [20, 20], [12, 30], [200, 30]]
    recs = [_face(images["good"], pts), _face(images["good"], cut_by_frame), _face(images["good"], far, source="a.csv:4"),
            _face(images["good"], pts, box=(5, 5, 40, 300), source="a.csv:5"),
            _face(images["cut"], pts), _face(images["missing"], pts)]
    info = pf.probe_images([r.image_path for r in recs])
    kept, report = pf.check_records(recs, info, name="a", skipped=[("a.csv:9", "field 3 (x1): 'x' is not a number")])
    assert kept == recs[:2] and report.faces == 2
    assert report.points_outside == 2 and report.faces_cut == 1
    assert report.image_sizes == [(48, 40)] * 2 and report.box_sides == [35.0, 35.0]
    assert report.causes() == {"annotation": 1, "points outside": 1, "box outside": 1, "truncated": 1, "missing": 1}
    messages = [str(p) for p in report.problems]
    assert "a.csv:4: landmarks[4]: point 4 at (200, 30) is far outside the 48x40 image " + images["good"] in messages
    assert f"{images['missing']}: image file not found" in messages
    assert "a.csv:5: box: y_max = 300 is far outside the 48x40 image" in messages[2] + messages[3]
    text = "\n".join(report.lines())
    assert "train a: 2 faces; unusable 5:" in text and "points outside the image: 2 in 1 faces" in text


def _exif_rotated_jpeg(path, orientation=6):
    """A 64 x 40 JPEG (stored frame) whose EXIF tag tells viewers to turn it 90 degrees; a white dot at (50, 10)."""
    from PIL import Image

    img = np.zeros((40, 64, 3), np.uint8)
    img[8:13, 48:53] = 255
    exif = Image.Exif()
    exif[pf.EXIF_ORIENTATION] = orientation
    Image.fromarray(img).save(path, quality=95, exif=exif)
    return path


def test_exif_rotated_image_is_read_in_the_stored_frame_of_its_points(tmp_path):
    path = _exif_rotated_jpeg(tmp_path / "rotated.jpg")
    data = np.fromfile(str(path), np.uint8)
    assert cv2.imdecode(data, cv2.IMREAD_COLOR).shape == (64, 40, 3)  # OpenCV's default turns the pixels
    img = read_image(path)
    assert img.shape == (40, 64, 3) and img[10, 50].min() > 200  # the point (x=50, y=10) is on its dot
    info = pf.probe_image(str(path))
    assert (info.width, info.height, info.orientation) == (64, 40, 6)
    rec = FaceRecord(landmarks=np.array([[50.0, 10.0]] * 5), box=(40, 2, 60, 20), protocol="5pt",
                     image_path=str(path), source="faces.csv:2")
    kept, report = pf.check_records([rec], {str(path): info})
    assert kept == [rec] and not report.problems
    assert report.lines()[-1] == (f"  EXIF orientation tag on 1 image(s), e.g. {path}: read in the stored pixel frame "
                                  "(the tag ignored); their points must be in that frame too")
    plain = pf.probe_image(str(_jpeg(tmp_path / "plain.jpg")))
    assert plain.orientation == 1


def test_orientation_survives_the_cache(tmp_path):
    path = str(_exif_rotated_jpeg(tmp_path / "r.jpg", 8))
    cache = tmp_path / "preflight.json"
    first = pf.probe_images([path], cache=cache)
    assert first == pf.probe_images([path], cache=cache) and first[path].orientation == 8


def test_duplicate_faces_are_reported_and_skip_invalid_drops_and_counts_them(images):
    def face(i, dx=0.0):
        return FaceRecord(landmarks=np.full((5, 2), 10.0 + dx), box=(2, 2, 30, 30), protocol="5pt",
                          image_path=images["good"], source=f"faces.csv:{i}")

    records = [face(2), face(3, dx=1.0), face(4), face(5), face(6, dx=1.0)]  # 4 and 5 copy 2; 6 copies 3
    info = pf.probe_images([images["good"]])
    kept, report = pf.check_records(records, info, name="w", skip_invalid=True)
    assert [r.source for r in kept] == ["faces.csv:2", "faces.csv:3"] and report.faces == 2
    assert report.causes() == {"duplicate": 3}
    assert str(report.problems[0]) == "faces.csv:4: the same image, box and points as faces.csv:2"
    assert report.lines()[0] == "train w: 2 faces; skipped 3: 3 duplicate"
    _, strict = pf.check_records(records, info, name="w")
    assert strict.lines()[0] == "train w: 2 faces; unusable 3: 3 duplicate"
