"""Round trips and consistency of the single augmentation matrix (sepbn.data.transforms)."""

import numpy as np
import pytest

from sepbn.data.protocols import PROTOCOLS
from sepbn.data.transforms import (
    AugmentConfig,
    AugmentParams,
    apply_affine,
    augment_matrix,
    compose_affine,
    crop_matrix,
    decode_points,
    denormalize_image,
    encode_points,
    invert_affine,
    normalize_image,
    photometric,
    sample_augment,
    warp_image,
)

S = 32
BOX = (20.0, 30.0, 60.0, 62.0)  # w 40, h 32: squared to side 40 around (40, 46)


def _image(h=96, w=100, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_encode_decode_round_trip_and_crop_edges():
    x = np.random.default_rng(1).uniform(-5, S + 5, (7, 2))
    np.testing.assert_allclose(decode_points(encode_points(x, S), S), x, atol=1e-12)
    # The outer pixel edges of the crop are -1 and +1 (align_corners=False).
    np.testing.assert_allclose(encode_points(np.array([-0.5, S - 0.5]), S), [-1.0, 1.0])


def test_crop_matrix_maps_square_box_edges_to_crop_edges():
    m = crop_matrix(BOX, S, box_scale=1.0)
    corners = np.array([[40 - 20, 46 - 20], [40 + 20, 46 + 20], [40, 46]], dtype=float)
    np.testing.assert_allclose(encode_points(apply_affine(m, corners), S), [[-1, -1], [1, 1], [0, 0]], atol=1e-12)
    m2 = crop_matrix(BOX, S, box_scale=2.0)
    np.testing.assert_allclose(encode_points(apply_affine(m2, corners[:2]), S), [[-0.5, -0.5], [0.5, 0.5]], atol=1e-12)


@pytest.mark.parametrize("bad", [(10, 10, 10, 20), (0, 0, np.nan, 5), (5, 5, 1, 1)])
def test_degenerate_box_raises(bad):
    with pytest.raises(ValueError, match="box"):
        crop_matrix(bad, S)


def _assert_close_images(a: np.ndarray, b: np.ndarray) -> None:
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 8 and diff.mean() < 0.5, (diff.max(), diff.mean())


def test_flip_is_the_mirror_in_crop_pixels_and_twice_identity():
    params = AugmentParams(corner_shift=(0.05, -0.1, 0.02, 0.1), angle=12.0, shear=0.2, scale=1.1)
    plain = augment_matrix(BOX, S, 1.2, params)
    flipped = augment_matrix(BOX, S, 1.2, AugmentParams(**{**params.__dict__, "flip": True}))
    mirror = compose_affine(flipped, invert_affine(plain))
    np.testing.assert_allclose(mirror, [[-1, 0, S - 1], [0, 1, 0]], atol=1e-9)  # x' = S - 1 - x
    img = _image()
    crop = warp_image(img, plain, S)
    # OpenCV 4 rounds sampling positions to 1/32 px, which is not mirror-symmetric: allow that.
    _assert_close_images(warp_image(img, flipped, S), crop[:, ::-1])
    _assert_close_images(warp_image(warp_image(crop, mirror, S), mirror, S), crop)
    pts = np.random.default_rng(2).uniform(0, S - 1, (5, 2))
    np.testing.assert_allclose(apply_affine(mirror, apply_affine(mirror, pts)), pts, atol=1e-9)


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_protocol_flip_twice_is_identity(name):
    p = PROTOCOLS[name]
    pts = np.random.default_rng(3).uniform(0, 50, (p.num_points, 2))
    np.testing.assert_allclose(p.flip(p.flip(pts, 51), 51), pts, atol=1e-12)


def test_affine_then_inverse_returns_points():
    rng = np.random.default_rng(4)
    cfg = AugmentConfig(scale=(0.8, 1.2), flip_prob=0.5)
    for _ in range(50):
        m = augment_matrix(BOX, 128, 1.3, sample_augment(cfg, rng))
        pts = rng.uniform(-50, 300, (98, 2))
        back = apply_affine(invert_affine(m), apply_affine(m, pts))
        assert np.abs(back - pts).max() < 1e-4


def test_sampled_matrix_moves_image_and_points_together():
    """A dot drawn at a landmark lands, after the warp, on the warped landmark."""
    rng = np.random.default_rng(5)
    cfg = AugmentConfig(scale=(0.9, 1.1))
    yy, xx = np.mgrid[0:120, 0:130]
    for _ in range(8):
        dot = np.array([rng.uniform(45, 85), rng.uniform(45, 75)])
        blob = 255 * np.exp(-((xx - dot[0]) ** 2 + (yy - dot[1]) ** 2) / (2 * 2.0**2))
        img = np.repeat(blob[..., None], 3, axis=2).astype(np.uint8)
        m = augment_matrix((35, 30, 95, 90), 64, 1.2, sample_augment(cfg, rng))
        crop = warp_image(img, m, 64)[..., 0].astype(float)
        cy, cx = np.mgrid[0:64, 0:64]
        found = np.array([(crop * cx).sum(), (crop * cy).sum()]) / crop.sum()
        expected = apply_affine(m, dot[None])[0]
        assert np.linalg.norm(found - expected) < 0.5, (found, expected)


def test_sample_augment_ranges_and_reproducibility():
    cfg = AugmentConfig()
    a = [sample_augment(cfg, np.random.default_rng(7)) for _ in range(2)]
    assert a[0] == a[1]
    draws = [sample_augment(cfg, np.random.default_rng(i)) for i in range(300)]
    angles = np.array([d.angle for d in draws])
    shifts = np.array([d.corner_shift for d in draws])
    assert np.abs(angles).max() <= 25 and np.abs(angles).max() > 20
    assert np.abs(shifts).max() <= 0.15 and np.abs(shifts).max() > 0.12
    assert 0.4 < np.mean([d.flip for d in draws]) < 0.6
    assert all(d.scale == 1.0 and not d.photometric for d in draws)


def test_augment_config_validation_and_from_dict():
    with pytest.raises(ValueError, match="corner_jitter"):
        AugmentConfig(corner_jitter=0.6)
    with pytest.raises(ValueError, match="flip_prob"):
        AugmentConfig(flip_prob=1.5)
    with pytest.raises(ValueError, match="unknown augmentation keys"):
        AugmentConfig.from_dict({"rotaton": 10})
    assert AugmentConfig.from_dict({"rotation": 10, "scale": [0.9, 1.1]}).scale == (0.9, 1.1)


def test_photometric_occlusion_and_identity():
    crop = np.full((S, S, 3), 100, np.uint8)
    rng = np.random.default_rng(8)
    assert photometric(crop, AugmentParams(), rng) is crop
    out = photometric(crop, AugmentParams(occlusion=(0.25, 0.25, 0.5, 0.5)), rng)
    assert (out != 100).any(axis=2)[8:24, 8:24].all() and (out[:8] == 100).all()
    brighter = photometric(crop, AugmentParams(brightness=0.2), rng)
    assert (brighter == 151).all()
    flat = photometric(crop, AugmentParams(contrast=0.5, saturation=0.0), rng)
    assert (flat == 100).all()  # a uniform grey crop has nothing to contrast or saturate


def test_normalize_round_trip():
    crop = _image(S, S)
    x = normalize_image(crop)
    assert x.shape == (3, S, S) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 3, 4], (crop[3, 4] / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225], rtol=1e-5)
    np.testing.assert_array_equal(denormalize_image(x), crop)


def test_invert_affine_closed_form_and_singular():
    m = np.array([[2.0, 0.5, 3.0], [-0.25, 1.5, -7.0]])
    np.testing.assert_allclose(compose_affine(m, invert_affine(m)), [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    with pytest.raises(ValueError, match="not invertible"):
        invert_affine(np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 1.0]]))
