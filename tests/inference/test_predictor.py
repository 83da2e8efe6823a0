"""LandmarkDetector: predictions come back in original image coordinates, batched over faces.

The networks here are stand-ins with a known answer (inside the tests only): ``FixedNet`` always
predicts the same normalised coordinates, ``BlobNet`` finds one bright blob per colour channel,
so a synthetic face drawn rotated and scaled at a known place must be found where it was drawn.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from sepbn.data.protocols import protocol_from_dict
from sepbn.inference.detector import BoxCalibration, Detections
from sepbn.data.transforms import to_original
from sepbn.inference.predictor import CropSpec, LandmarkDetector, crop_spec_from_config

TRI = protocol_from_dict({"name": "tri", "num_points": 3, "flip_perm": [1, 0, 2],
                          "point_names": ["left", "right", "chin"],
                          "normalizer": {"kind": "box", "box_formula": "sqrt_wh"}})


class FixedNet(nn.Module):
    def __init__(self, u):
        super().__init__()
        self.register_buffer("u", torch.as_tensor(u, dtype=torch.float32))
        self.calls = []

    def forward(self, x, protocols=None):
        self.calls.append(x.shape[0])
        return {protocols: self.u.expand(x.shape[0], -1, -1).clone()}


class BlobNet(nn.Module):
    """Point c = weighted centroid of the upper half of channel c's values, in normalised coords."""

    def forward(self, x, protocols=None):
        n, c, h, w = x.shape
        lo = x.amin((2, 3), keepdim=True)
        hi = x.amax((2, 3), keepdim=True)
        wgt = torch.relu(x - (lo + hi) / 2)
        wgt = wgt / wgt.sum((2, 3), keepdim=True)
        cols = (torch.arange(w) + 0.5) / w * 2 - 1
        rows = (torch.arange(h) + 0.5) / h * 2 - 1
        u = (wgt.sum(2) * cols).sum(-1)
        v = (wgt.sum(3) * rows).sum(-1)
        return {protocols: torch.stack([u, v], -1)}


def draw_face(img, centre, side, angle_deg):
    """Three Gaussian blobs (R: left eye, G: right eye, B: chin) of a face rotated by angle."""
    template = np.array([[-0.25, -0.2], [0.25, -0.2], [0.0, 0.3]])
    t = math.radians(angle_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    pts = template @ rot.T * side + np.asarray(centre)
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    for ch, (x, y) in enumerate(pts):
        blob = 255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (side / 25) ** 2))
        img[..., ch] = np.maximum(img[..., ch], blob.astype(np.uint8))
    return pts


def test_blobs_of_rotated_scaled_faces_are_found_in_original_coordinates():
    img = np.zeros((240, 320, 3), np.uint8)
    truth_a = draw_face(img, (90.0, 80.0), 70.0, 30.0)
    truth_b = draw_face(img, (235.5, 160.25), 110.0, -50.0)
    boxes = [[50, 45, 135, 120], [170, 95, 300, 225]]  # rough boxes, not centred on the faces
    det = LandmarkDetector(BlobNet(), TRI, CropSpec(64, box_scale=1.2), batch_size=1)
    faces = det.predict(img, boxes)
    assert [f.protocol for f in faces] == ["tri", "tri"]
    assert faces[0].point_names == ("left", "right", "chin")
    np.testing.assert_allclose(faces[0].landmarks, truth_a, atol=0.6)
    np.testing.assert_allclose(faces[1].landmarks, truth_b, atol=0.6)


def test_fixed_prediction_maps_through_the_square_box_by_hand():
    u = np.array([[-1.0, -1.0], [1.0, 1.0], [0.5, -0.25]])
    box = np.array([20.0, 40.0, 60.0, 140.0])  # w 40, h 100: square side 100 * 1.5 around (40, 90)
    det = LandmarkDetector(FixedNet(u), TRI, CropSpec(32, box_scale=1.5))
    (face,) = det.predict(np.zeros((200, 100, 3), np.uint8), [box])
    expected = np.array([40.0, 90.0]) + u * 150 / 2
    np.testing.assert_allclose(face.landmarks, expected, atol=1e-6)
    np.testing.assert_allclose(face.box, box)
    assert face.score == 1.0


def test_faces_of_many_images_are_batched_together():
    net = FixedNet(np.zeros((3, 2)))
    det = LandmarkDetector(net, TRI, CropSpec(16), batch_size=2)
    imgs = [np.zeros((50, 50, 3), np.uint8), np.zeros((30, 30), np.uint8), np.zeros((40, 40, 3), np.uint8)]
    boxes = [[[0, 0, 10, 10], [10, 10, 30, 30]], np.zeros((0, 4)), [[5, 5, 15, 25]]]
    out = det.predict_many(imgs, boxes, [[0.9, 0.8], [], [0.7]])
    assert [len(r) for r in out] == [2, 0, 1]
    assert net.calls == [2, 1]
    np.testing.assert_allclose(out[0][1].landmarks, np.full((3, 2), 20.0))
    np.testing.assert_allclose(out[2][0].landmarks, np.tile([10.0, 15.0], (3, 1)))
    assert out[2][0].score == pytest.approx(0.7)


class StubDetector:
    name = "stub"

    def __init__(self, boxes):
        self.boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)

    def __call__(self, image):
        return Detections(self.boxes, np.linspace(1, 0.5, len(self.boxes)))


def test_detector_boxes_are_converted_to_the_training_convention():
    det = LandmarkDetector(FixedNet(np.zeros((3, 2))), TRI, CropSpec(16), detector=StubDetector([[0, 0, 40, 20]]),
                           calibration=BoxCalibration(2.0, 0.5, 0.25))
    (face,) = det.predict(np.zeros((60, 80, 3), np.uint8))
    # centre (20, 10) + (0.5 * 40, 0.25 * 20) = (40, 15); sides 40 x 20 doubled
    np.testing.assert_allclose(face.box, [0.0, -5.0, 80.0, 35.0])
    np.testing.assert_allclose(face.landmarks, np.tile([40.0, 15.0], (3, 1)))


def test_no_face_found_gives_an_empty_list_and_no_boxes_no_detector_is_an_error():
    det = LandmarkDetector(FixedNet(np.zeros((3, 2))), TRI, CropSpec(16), detector=StubDetector(np.zeros((0, 4))))
    assert det.predict(np.zeros((20, 20, 3), np.uint8)) == []
    with pytest.raises(ValueError, match="no face detector"):
        LandmarkDetector(FixedNet(np.zeros((3, 2))), TRI, CropSpec(16)).predict(np.zeros((20, 20, 3), np.uint8))


def test_to_original_inverts_encode_and_crop():
    inverse = np.array([[[2.0, 0.0, 10.0], [0.0, 2.0, -4.0]]])
    u = np.array([[[-1.0, 1.0]]])  # crop pixel (-0.5, 7.5) of an 8 px crop
    np.testing.assert_allclose(to_original(u, inverse, 8), [[[9.0, 11.0]]])


def test_crop_spec_follows_the_training_dataset_of_the_protocol():
    config = {"data": {"train": [{"fmt": "300w", "protocol": "300w68", "box_scale": 1.3, "source": "x"},
                                 {"fmt": "wflw", "protocol": "wflw98", "box_scale": None, "source": "y"}]}}
    assert crop_spec_from_config(config, "300w", 64) == CropSpec(64, 1.3, "landmarks")
    assert crop_spec_from_config(config, "wflw98", 64) == CropSpec(64, 1.0, "official")
    assert crop_spec_from_config({}, "5pt", 32) == CropSpec(32, 1.0, "unknown")


def test_bad_images_are_rejected_with_their_shape():
    det = LandmarkDetector(FixedNet(np.zeros((3, 2))), TRI, CropSpec(16))
    with pytest.raises(ValueError, match="float32"):
        det.predict(np.zeros((10, 10, 3), np.float32), [[0, 0, 5, 5]])


def test_bruteforce_networks_need_a_domain_branch(bruteforce_model):
    net = bruteforce_model
    with pytest.raises(ValueError, match=r"domain= \(--domain\) in 0..2"):
        LandmarkDetector(net, "5pt", CropSpec(64))
    img = np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8)
    preds = [LandmarkDetector(net, "5pt", CropSpec(64), domain=d).predict(img, [[5, 5, 70, 70]])[0].landmarks
             for d in (0, 1)]
    assert np.abs(preds[0] - preds[1]).max() > 1e-3  # the branch is really used
    assert LandmarkDetector(FixedNet(np.zeros((3, 2))), TRI, CropSpec(16), domain=1).domain is None


def test_prediction_equals_the_evaluation_pipeline_of_the_dataset(tmp_path):
    """The predictor's crop is the dataset's test-time crop: same input, same points back."""
    import cv2

    from sepbn.data import FaceRecord, LandmarkDataset
    from sepbn.data.transforms import apply_affine, decode_points
    from sepbn.models import create_model

    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))
    rec = FaceRecord(landmarks=rng.uniform(30, 80, (5, 2)), box=(31.5, 20.0, 84.0, 77.25), protocol="5pt",
                     image_path=str(path))
    item = LandmarkDataset([rec], "5pt", image_size=64, box_scale=1.25)[0]
    torch.manual_seed(0)
    net = create_model("vanilla", ["5pt"], width=1 / 16, input_size=64).eval()
    with torch.no_grad():
        u = net(torch.from_numpy(item["image"])[None], "5pt")["5pt"][0].numpy()
    expected = apply_affine(item["inverse"].astype(np.float64), decode_points(u, 64))
    (face,) = LandmarkDetector(net, "5pt", CropSpec(64, 1.25, "landmarks")).predict(str(path), [rec.box])
    np.testing.assert_allclose(face.landmarks, expected, atol=1e-3)


def test_detector_runs_the_folded_model_by_default(checkpoint):
    from sepbn.nn import FoldedAway, MixedAffine2d, SepBatchNorm2d
    from sepbn.nn.deploy import DeployedGroupedAttention

    fused = LandmarkDetector.from_checkpoint(checkpoint, "5pt")
    plain = LandmarkDetector.from_checkpoint(checkpoint, "5pt", fuse=False)
    kinds = {type(m) for m in fused.model.modules()}
    assert MixedAffine2d in kinds and SepBatchNorm2d not in kinds and nn.BatchNorm2d not in kinds
    assert DeployedGroupedAttention in kinds  # the inference chain of issue 18
    assert SepBatchNorm2d in {type(m) for m in plain.model.modules()} and "unfused" in repr(plain)
    assert FoldedAway not in {type(m) for m in plain.model.modules()}
    img = np.random.default_rng(1).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    boxes = [[5, 5, 60, 60], [20, 10, 80, 66]]
    a, b = fused.predict(img, boxes), plain.predict(img, boxes)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.landmarks, y.landmarks, rtol=0, atol=1e-3)  # pixels


def test_detector_runs_channels_last_by_default_with_the_same_points(checkpoint):
    fast = LandmarkDetector.from_checkpoint(checkpoint, "5pt")
    nchw = LandmarkDetector.from_checkpoint(checkpoint, "5pt", channels_last=False)
    assert fast.memory_format == torch.channels_last and "channels-last" in repr(fast)
    assert nchw.memory_format == torch.contiguous_format and "channels-last" not in repr(nchw)
    conv = next(m for m in fast.model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    img = np.random.default_rng(2).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    boxes = [[5, 5, 60, 60], [20, 10, 80, 66]]
    for one in (boxes[:1], boxes):  # batch 1 (BatchNorm's kernel) and batch 2 (addcmul)
        for x, y in zip(fast.predict(img, one), nchw.predict(img, one)):
            np.testing.assert_allclose(x.landmarks, y.landmarks, rtol=0, atol=1e-3)  # pixels
    unfused = LandmarkDetector.from_checkpoint(checkpoint, "5pt", fuse=False)
    assert unfused.memory_format == torch.contiguous_format  # the caller's module is left as it is
