"""Face boxes: calibration maths, YuNet output parsing, detector availability messages."""

import cv2
import numpy as np
import pytest

from sepbn.inference.detector import (
    BoxCalibration,
    DetectorUnavailable,
    HaarDetector,
    WholeImageDetector,
    create_detector,
    fit_calibration,
    parse_yunet,
    xywh_to_xyxy,
)


def test_calibration_moves_centre_and_scales_sides():
    box = np.array([[10.0, 20.0, 50.0, 100.0]])  # w 40, h 80, centre (30, 60)
    out = BoxCalibration(scale=1.5, shift_x=0.25, shift_y=-0.125).apply(box)[0]
    np.testing.assert_allclose(out, [30 + 10 - 30, 60 - 10 - 60, 30 + 10 + 30, 60 - 10 + 60])


def test_fit_calibration_recovers_a_known_conversion():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 300, (20, 2))
    wh = rng.uniform(30, 120, (20, 2))
    detected = np.concatenate([xy, xy + wh], axis=1)
    truth = BoxCalibration(0.8, -0.05, 0.12)
    fitted = fit_calibration(detected, truth.apply(detected))
    assert fitted.scale == pytest.approx(0.8)
    assert fitted.shift_x == pytest.approx(-0.05)
    assert fitted.shift_y == pytest.approx(0.12)


@pytest.mark.parametrize("bad", [np.zeros((0, 4)), np.array([[0, 0, 0, 5.0]])])
def test_fit_calibration_rejects_empty_or_degenerate_boxes(bad):
    with pytest.raises(ValueError):
        fit_calibration(bad, bad)


def test_calibration_rejects_non_positive_scale():
    with pytest.raises(ValueError, match="-1"):
        BoxCalibration(scale=-1)


def test_yunet_rows_become_sorted_xyxy_boxes():
    rows = np.zeros((2, 15), np.float32)
    rows[0, :4], rows[0, 14] = (5, 6, 10, 20), 0.7
    rows[1, :4], rows[1, 14] = (50, 60, 30, 40), 0.9
    found = parse_yunet(rows)
    np.testing.assert_allclose(found.boxes, [[50, 60, 80, 100], [5, 6, 15, 26]])
    np.testing.assert_allclose(found.scores, [0.9, 0.7], rtol=1e-6)
    assert len(parse_yunet(None)) == 0


def test_xywh_to_xyxy():
    np.testing.assert_allclose(xywh_to_xyxy([[1, 2, 3, 4]]), [[1, 2, 4, 6]])


def test_whole_image_detector_covers_the_image():
    found = WholeImageDetector()(np.zeros((30, 40, 3), np.uint8))
    np.testing.assert_allclose(found.boxes, [[0, 0, 39, 29]])


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_bundled_haar_cascade_finds_faces_and_nothing_else():
    # opencv-python-headless is pinned below 5 so that the bundled cascade exists.
    from sepbn.data.synth import synthesize

    det = HaarDetector()
    assert len(det(np.zeros((64, 64, 3), np.uint8))) == 0
    found = 0
    for i in range(40):
        face = synthesize(i, seed=0)
        boxes = det(face.image).boxes
        for box in boxes:  # every detection lies on the face, never on the clutter
            assert _iou(box, face.box) > 0.2, (i, box, face.box)
        found += len(boxes) > 0
    assert found >= 2  # the cartoon faces are hard for a cascade trained on photos; some must be found


def test_haar_with_a_bad_cascade_file_says_so(tmp_path):
    bad = tmp_path / "cascade.xml"
    bad.write_text("<opencv_storage></opencv_storage>")
    with pytest.raises(DetectorUnavailable, match="cascade"):
        HaarDetector(bad)
    with pytest.raises(DetectorUnavailable, match="not found"):
        HaarDetector(tmp_path / "missing.xml")


def test_yunet_needs_its_model_file(tmp_path):
    with pytest.raises(DetectorUnavailable, match="--yunet-model"):
        create_detector("yunet")
    with pytest.raises(DetectorUnavailable, match="not found"):
        create_detector("yunet", model=tmp_path / "missing.onnx")
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not an onnx file")
    with pytest.raises(DetectorUnavailable, match="bogus.onnx"):
        create_detector("yunet", model=bogus)


def test_unknown_detector_is_named():
    with pytest.raises(ValueError, match="'dlib'"):
        create_detector("dlib")


def _marked(value, size=(200, 250)):
    image = np.zeros((*size, 3), np.uint8)
    image[64:96, 96:128] = value  # exactly the stride-32 cell (column 3, row 2)
    return image


def test_yunet_detector_decodes_opencvs_output(fake_yunet):
    # 250 x 200 is not a multiple of 32: OpenCV pads; the cell centre is (3.5, 2.5) * 32
    found = create_detector("yunet", model=fake_yunet)(_marked(255))
    w, h = 40.0, 48.0  # the fake model's box (conftest.YUNET_BOX_WH)
    np.testing.assert_allclose(found.boxes, [[112 - w / 2, 80 - h / 2, 112 + w / 2, 80 + h / 2]], atol=1e-3)
    np.testing.assert_allclose(found.scores, [1.0], atol=1e-6)
    assert len(create_detector("yunet", model=fake_yunet)(_marked(0))) == 0


def test_yunet_score_threshold_is_applied(fake_yunet):
    dim = _marked(100)  # score 100 / 255 = 0.39
    assert len(create_detector("yunet", model=fake_yunet)(dim)) == 0  # default threshold 0.6
    found = create_detector("yunet", model=fake_yunet, score_threshold=0.3)(dim)
    np.testing.assert_allclose(found.scores, [100 / 255], atol=1e-3)
