"""LandmarkDataset items: shapes, geometry, flips with the protocol permutation, seeding."""

import cv2
import numpy as np
import pytest
import torch

from sepbn.data.dataset import LandmarkDataset
from sepbn.data.protocols import PROTOCOLS, get_protocol
from sepbn.data.records import FaceRecord
from sepbn.data.transforms import AugmentConfig, apply_affine, crop_matrix, decode_points, encode_points

S = 32
BOX = (30.0, 25.0, 70.0, 75.0)


def _faces(tmp_path, protocol="300w68", n=3, seed=0, **attrs):
    """n faces of ``protocol`` with random points inside BOX, one png each."""
    rng = np.random.default_rng(seed)
    L = get_protocol(protocol).num_points
    out = []
    for i in range(n):
        path = tmp_path / f"{protocol}_{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (90, 100, 3), dtype=np.uint8))
        pts = rng.uniform([32, 27], [68, 73], (L, 2))
        vis = rng.random(L) > 0.3
        out.append(FaceRecord(pts, BOX, protocol, image_path=str(path), visible=vis,
                              attributes=dict(attrs), source=f"test:{i}"))
    return out


def test_item_keys_shapes_dtypes(tmp_path):
    ds = LandmarkDataset(_faces(tmp_path, domain_id=2), "300w68", train=True, image_size=S)
    item = ds[1]
    expected = {
        "image": ((3, S, S), np.float32), "target": ((68, 2), np.float32), "visible": ((68,), np.bool_),
        "matrix": ((2, 3), np.float32), "inverse": ((2, 3), np.float32), "landmarks": ((68, 2), np.float32),
        "box": ((4,), np.float32),
    }
    for key, (shape, dtype) in expected.items():
        assert item[key].shape == shape and item[key].dtype == dtype, key
    assert item["domain"] == 2 and item["protocol"] == "300w68" and item["index"] == 1
    assert isinstance(item["flipped"], bool)
    assert len(ds) == 3 and ds[-1]["index"] == 2
    with pytest.raises(IndexError):
        ds[3]


def test_eval_item_is_the_plain_crop(tmp_path):
    recs = _faces(tmp_path, "5pt", n=1)
    item = LandmarkDataset(recs, "5pt", image_size=S, box_scale=1.5)[0]
    m = crop_matrix(BOX, S, 1.5)
    np.testing.assert_allclose(item["matrix"], m, rtol=1e-6)
    np.testing.assert_allclose(item["target"], encode_points(apply_affine(m, recs[0].landmarks), S), atol=1e-6)
    np.testing.assert_array_equal(item["visible"], recs[0].visible)
    assert item["domain"] == -1 and not item["flipped"]
    assert np.abs(item["target"]).max() <= 1 / 1.5 + 1e-6  # points inside the box, box 1/1.5 of the crop


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_inverse_maps_target_back_to_landmarks(tmp_path, protocol):
    ds = LandmarkDataset(_faces(tmp_path, protocol, n=2), protocol, train=True, image_size=S,
                         augment=AugmentConfig(flip_prob=0.5, scale=(0.8, 1.2)))
    flips = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            flips.add(item["flipped"])
            back = apply_affine(item["inverse"].astype(np.float64), decode_points(item["target"].astype(np.float64), S))
            assert np.abs(back - item["landmarks"]).max() < 1e-3
    assert flips == {True, False}


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_flip_keeps_left_points_on_the_image_left(tmp_path, protocol):
    """Flipped samples keep semantics: the shared 5 points (PROTOCOLS.md) stay left/right."""
    p = get_protocol(protocol)
    rec = _faces(tmp_path, protocol, n=1)[0]
    pts = rec.landmarks.copy()
    anchors = [(40, 40), (60, 42), (51, 55), (42, 66), (58, 65)]  # eyes, nose, mouth corners
    for group, xy in zip(p.five_point, anchors):
        pts[list(group)] = xy
    rec.landmarks = pts
    ds = LandmarkDataset([rec], protocol, train=True, image_size=S,
                         augment=AugmentConfig(rotation=0, corner_jitter=0, shear=0, flip_prob=1.0))
    item = ds[0]
    assert item["flipped"]
    five = p.to_five_points(item["target"][None].astype(np.float64))[0]
    assert five[0, 0] < five[1, 0] and five[3, 0] < five[4, 0]
    # The flipped left eye is the photo's right eye mirrored in the crop (u -> -u).
    right_eye = encode_points(apply_affine(crop_matrix(BOX, S), np.array([anchors[1]], float)), S)[0]
    np.testing.assert_allclose(five[0], right_eye * [-1, 1], atol=1e-5)
    np.testing.assert_array_equal(item["visible"], rec.visible[list(p.flip_perm)])


def test_flipped_image_is_the_mirrored_crop(tmp_path):
    recs = _faces(tmp_path, n=1)
    cfg = AugmentConfig(rotation=0, corner_jitter=0, shear=0, flip_prob=1.0)
    flipped = LandmarkDataset(recs, "300w68", train=True, image_size=S, augment=cfg)[0]
    plain = LandmarkDataset(recs, "300w68", image_size=S)[0]
    np.testing.assert_array_equal(flipped["image"], plain["image"][:, :, ::-1])
    perm = list(get_protocol("300w68").flip_perm)
    np.testing.assert_allclose(flipped["target"], plain["target"][perm] * [-1, 1], atol=1e-6)


def test_seeding_reproducible_and_epoch_dependent(tmp_path):
    recs = _faces(tmp_path, n=2)
    a = LandmarkDataset(recs, "300w68", train=True, image_size=S, seed=5)
    b = LandmarkDataset(recs, "300w68", train=True, image_size=S, seed=5)
    np.testing.assert_array_equal(a[1]["image"], b[1]["image"])
    np.testing.assert_array_equal(a[1]["matrix"], b[1]["matrix"])
    first = a[1]["matrix"]
    a.set_epoch(1)
    assert not np.allclose(a[1]["matrix"], first)
    c = LandmarkDataset(recs, "300w68", train=True, image_size=S, seed=6)
    assert not np.allclose(c[1]["matrix"], first)


def test_samples_independent_of_worker_count_and_order(tmp_path):
    ds = LandmarkDataset(_faces(tmp_path, n=4), "300w68", train=True, image_size=S, seed=3)
    ds.set_epoch(2)
    reference = {i: ds[i]["matrix"] for i in reversed(range(4))}
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
        for item in loader:
            np.testing.assert_array_equal(item["matrix"].numpy(), reference[int(item["index"])])


def test_bad_records_raise(tmp_path):
    recs = _faces(tmp_path, n=1)
    with pytest.raises(ValueError, match="protocol '300w68'"):
        LandmarkDataset(recs, "wflw98")
    recs[0].landmarks = recs[0].landmarks[:60]
    with pytest.raises(ValueError, match=r"test:0: landmarks of shape \(60, 2\)"):
        LandmarkDataset(recs, "300w68")
    with pytest.raises(ValueError, match="box_scale"):
        LandmarkDataset([], "300w68", box_scale=0)


def test_photometric_options_change_pixels_not_geometry(tmp_path):
    recs = _faces(tmp_path, n=2)
    plain = LandmarkDataset(recs, "300w68", train=True, image_size=S, seed=9)
    jitter = AugmentConfig(brightness=0.2, contrast=0.3, saturation=0.3, blur_prob=1.0, occlusion_prob=1.0)
    photo = LandmarkDataset(recs, "300w68", train=True, image_size=S, seed=9, augment=jitter)
    for i in range(2):
        a, b = plain[i], photo[i]
        np.testing.assert_array_equal(a["matrix"], b["matrix"])  # same draws for the geometry
        np.testing.assert_array_equal(a["target"], b["target"])
        assert np.abs(a["image"] - b["image"]).mean() > 0.05
