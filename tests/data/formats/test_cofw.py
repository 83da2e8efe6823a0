"""COFW .mat: v7.3 (HDF5 written here as MATLAB lays it out) and v5; grey and colour images;
occlusion flags; the 1-based convention; errors; round trips."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io

from sepbn.data import FormatError, read_records, write_records

L = 29


def _faces(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    imgs = [rng.integers(0, 256, size=(20 + i, 24, 3), dtype=np.uint8) for i in range(n)]
    imgs[-1] = imgs[-1][:, :, 0].copy()  # one grey image, as in the older release
    phis = np.concatenate([rng.uniform(1, 20, (n, 2 * L)).round(2), (rng.uniform(size=(n, L)) > 0.7)], axis=1)
    boxes = np.array([[2.0, 3.0, 15.0, 16.0]] * n)
    return imgs, phis.astype(np.float64), boxes


def _write_v73_like_matlab(path, imgs, phis, boxes, suffix="Tr"):
    """Mimic COFW_train_color.mat: IsTr is a 1 x N HDF5 dataset of object references, every
    array transposed, MATLAB_class attributes; no user block (it is optional)."""
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        ref_arr = np.empty((1, len(imgs)), dtype=h5py.ref_dtype)
        for i, im in enumerate(imgs):
            d = refs.create_dataset(f"r{i}", data=im.T)
            d.attrs["MATLAB_class"] = np.bytes_("uint8")
            ref_arr[0, i] = d.ref
        f.create_dataset("Is" + suffix, data=ref_arr).attrs["MATLAB_class"] = np.bytes_("cell")
        f.create_dataset("phis" + suffix, data=phis.T).attrs["MATLAB_class"] = np.bytes_("double")
        f.create_dataset("bboxes" + suffix, data=boxes.T).attrs["MATLAB_class"] = np.bytes_("double")


def _check(recs, imgs, phis, boxes):
    assert len(recs) == len(imgs)
    for i, r in enumerate(recs):
        assert r.protocol == "cofw29" and r.image_path is None
        np.testing.assert_array_equal(r.image, imgs[i])
        np.testing.assert_allclose(r.landmarks[:, 0], phis[i, :L] - 1)  # MATLAB 1-based -> 0-based
        np.testing.assert_allclose(r.landmarks[:, 1], phis[i, L:2 * L] - 1)
        np.testing.assert_array_equal(r.visible, phis[i, 2 * L:] == 0)  # 1 = occluded
        assert r.attributes["occluded_points"] == int(phis[i, 2 * L:].sum())
        x, y, w, h = boxes[i]
        assert r.box == (x - 1, y - 1, x - 1 + w, y - 1 + h)
        assert r.load_image().shape == imgs[i].shape[:2] + (3,)


def test_v73_as_matlab_writes_it(tmp_path):
    imgs, phis, boxes = _faces(3)
    path = tmp_path / "COFW_train_color.mat"
    _write_v73_like_matlab(path, imgs, phis, boxes)
    recs = read_records("cofw", path)
    _check(recs, imgs, phis, boxes)
    assert recs[2].source == f"{path}#2"
    assert read_records("cofw", tmp_path, split="train")[0].source == f"{path}#0"


def test_v5_grey_file_with_both_sets(tmp_path):
    imgs, phis, boxes = _faces(3)
    timgs, tphis, tboxes = _faces(2, seed=1)
    cell = lambda xs: np.array([[x] for x in xs] + [[None]], dtype=object)[:-1]  # noqa: E731 (ragged cell)
    path = tmp_path / "COFW.mat"
    scipy.io.savemat(path, {"IsTr": cell(imgs), "phisTr": phis, "bboxesTr": boxes,
                            "IsT": cell(timgs), "phisT": tphis, "bboxesT": tboxes})
    _check(read_records("cofw", path, split="train"), imgs, phis, boxes)
    _check(read_records("cofw", path, split="test"), timgs, tphis, tboxes)
    with pytest.raises(FormatError, match="holds both sets .* choose one with split"):
        read_records("cofw", path)
    asis = read_records("cofw", path, split="test", origin=0)
    np.testing.assert_allclose(asis[0].landmarks[:, 0], tphis[0, :L])


def test_errors_name_file_index_and_field(tmp_path, read_error):
    imgs, phis, boxes = _faces(3)
    phis[1, 5] = np.nan
    phis[2, 2 * L + 3] = 2.0
    path = tmp_path / "c.mat"
    _write_v73_like_matlab(path, imgs, phis, boxes)
    assert read_error("cofw", path) == f"{path}#1: field phisTr[:, 5] (x5): nan is not finite"
    with pytest.warns(UserWarning, match="kept 1 faces, skipped 2"):
        recs = read_records("cofw", path, skip_invalid=True)
    assert recs.skipped[1] == (f"{path}#2", f"field phisTr[:, {2 * L + 3}] (occlusion3): 2.0 is not 0 or 1")
    _write_v73_like_matlab(path, imgs, phis[:, :58], boxes)
    with pytest.raises(FormatError, match=r"c.mat: field phisTr: has shape \(3, 58\), expected \(N, 87\)"):
        read_records("cofw", path)
    scipy.io.savemat(tmp_path / "other.mat", {"x": np.zeros(3)})
    with pytest.raises(FormatError, match="holds none of the COFW variable sets"):
        read_records("cofw", tmp_path / "other.mat")


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_round_trip(tmp_path, version, same_faces):
    imgs, phis, boxes = _faces(3)
    src = tmp_path / "src.mat"
    _write_v73_like_matlab(src, imgs, phis, boxes, suffix="T")
    recs = read_records("cofw", src)
    write_records("cofw", recs, tmp_path / "out.mat", split="test", version=version)
    back = read_records("cofw", tmp_path / "out.mat", split="test")
    same_faces(back, recs)
    for a, b in zip(back, recs):
        np.testing.assert_array_equal(a.image, b.image)
