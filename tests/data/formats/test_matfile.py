"""MAT-file layer: v5 and v7.3 load to MATLAB's shapes; v7.3 as MATLAB lays it out in HDF5."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from sepbn.data import FormatError
from sepbn.data.formats.matfile import is_v73, load_mat, save_mat


def _cell(items) -> np.ndarray:
    c = np.empty((len(items), 1), dtype=object)
    for i, v in enumerate(items):
        c[i, 0] = v
    return c


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_save_then_load(tmp_path, version):
    rgb = np.arange(2 * 5 * 3, dtype=np.uint8).reshape(2, 5, 3)
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    values = {"I": _cell([rgb, grey]), "M": np.arange(6.0).reshape(2, 3), "S": _cell(["a/b.jpg", "c\\d.png"]),
              "B": np.array([[True, False]])}
    path = tmp_path / "x.mat"
    save_mat(path, values, version=version)
    assert is_v73(path) == (version == "7.3")
    got = load_mat(path, ["I", "M", "S", "B", "absent"])
    assert sorted(got) == ["B", "I", "M", "S"]
    assert got["I"].shape == (2, 1)
    np.testing.assert_array_equal(got["I"][0, 0], rgb)
    np.testing.assert_array_equal(got["I"][1, 0], grey)
    np.testing.assert_array_equal(got["M"], values["M"])
    assert got["S"][:, 0].tolist() == ["a/b.jpg", "c\\d.png"]
    assert np.asarray(got["B"]).astype(bool).tolist() == [[True, False]]


def test_v73_layout_is_matlabs(tmp_path):
    img = np.arange(2 * 5 * 3, dtype=np.uint8).reshape(2, 5, 3)
    path = tmp_path / "x.mat"
    save_mat(path, {"I": _cell([img]), "M": np.zeros((4, 87))}, version="7.3")
    assert path.read_bytes()[:10] == b"MATLAB 7.3" and path.read_bytes()[126:128] == b"IM"
    with h5py.File(path, "r") as f:
        assert f["M"].shape == (87, 4)  # transposed, as h5py shows COFW's phisTr
        assert f["I"].shape == (1, 1) and h5py.check_dtype(ref=f["I"].dtype) is not None
        assert f[f["I"][0, 0]].shape == (3, 5, 2)  # an (H, W, 3) image stored as (3, W, H)
        assert f["I"].attrs["MATLAB_class"] == b"cell"


def test_unreadable_file(tmp_path):
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"not a mat file at all")
    with pytest.raises(FormatError, match="bad.mat: cannot read as a MATLAB"):
        load_mat(bad, ["x"])
    with pytest.raises(FormatError, match="MATLAB file not found"):
        load_mat(tmp_path / "none.mat", ["x"])
    with pytest.raises(ValueError, match="'5' or '7.3', got '7'"):
        save_mat(tmp_path / "y.mat", {}, version="7")
