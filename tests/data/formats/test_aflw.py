"""AFLW-19 AFLWinfo_release.mat: splits by ra (1-based), frontal by mask_new, bbox order,
v5 and v7.3, errors, round trip."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.io

from sepbn.data import FormatError, read_records, write_records
from sepbn.data.formats.matfile import save_mat

L = 19


def _release(n: int = 8, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    mask = np.ones((n, L))
    mask[[1, 4, 6], 3] = 0  # three faces with an invisible point
    names = np.empty((n, 1), dtype=object)
    for i in range(n):
        names[i, 0] = f"{i % 3}/image{i:05d}.jpg"
    return {
        "data": rng.uniform(3, 28, (n, 2 * L)).round(3),
        "bbox": np.array([[2.0 + i, 30.0, 3.0, 31.0] for i in range(n)]),  # left, right, top, bottom
        "mask_new": mask,
        "nameList": names,
        "ra": rng.permutation(n).astype(np.float64).reshape(1, -1) + 1,  # 1-based
    }


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_reads_all_faces_in_file_order(tmp_path, version):
    rel = _release()
    path = tmp_path / "AFLWinfo_release.mat"
    save_mat(path, rel, version=version)
    recs = read_records("aflw", tmp_path, images=tmp_path / "flickr")
    assert len(recs) == 8 and [r.source for r in recs] == [f"{path}#{i}" for i in range(8)]
    r = recs[1]
    np.testing.assert_allclose(r.landmarks[:, 0], rel["data"][1, :L] - 1)
    np.testing.assert_allclose(r.landmarks[:, 1], rel["data"][1, L:] - 1)
    assert r.box == (3.0 - 1, 3.0 - 1, 30.0 - 1, 31.0 - 1)  # [left, right, top, bottom] -> x0, y0, x1, y1
    assert r.image_path == str(tmp_path / "flickr" / "1" / "image00001.jpg")
    assert r.visible.tolist() == [j != 3 for j in range(L)] and r.attributes == {"frontal": False}


def test_splits_follow_ra(tmp_path, caplog):
    rel = _release()
    path = tmp_path / "a.mat"
    scipy.io.savemat(path, rel)
    ra = rel["ra"].ravel().astype(int) - 1
    train = read_records("aflw", path, split="train", train_size=5)
    full = read_records("aflw", path, split="full", train_size=5)
    assert [r.source for r in train] == [f"{path}#{i}" for i in ra[:5]]
    assert [r.source for r in full] == [f"{path}#{i}" for i in ra[5:]]
    with caplog.at_level(logging.INFO, logger="sepbn.data.formats.aflw"):
        frontal = read_records("aflw", path, split="frontal", train_size=5)
    want = [i for i in ra[5:] if i not in (1, 4, 6)]
    assert [r.source for r in frontal] == [f"{path}#{i}" for i in want]
    assert f"AFLW-Frontal: {len(want)} faces" in caplog.text
    assert all(r.attributes["frontal"] for r in frontal)
    with pytest.raises(ValueError, match="AFLW split must be one of"):
        read_records("aflw", path, split="test")


def test_errors(tmp_path, read_error):
    rel = _release()
    rel["data"][2, L + 4] = np.inf
    rel["mask_new"][5, 7] = 0.5
    path = tmp_path / "a.mat"
    scipy.io.savemat(path, rel)
    assert read_error("aflw", path) == f"{path}#2: field data[:, {L + 4}] (y4): inf is not finite"
    with pytest.warns(UserWarning, match="kept 6 faces, skipped 2"):
        recs = read_records("aflw", path, skip_invalid=True)
    assert recs.skipped[1] == (f"{path}#5", "field mask_new[:, 7]: 0.5 is not 0 or 1")
    bad_ra = _release()
    bad_ra["ra"][0, 0] = bad_ra["ra"][0, 1]
    scipy.io.savemat(path, bad_ra)
    with pytest.raises(FormatError, match=r"a.mat: field ra: is not a 1-based permutation of the 8 faces"):
        read_records("aflw", path, split="train", train_size=4)
    del bad_ra["mask_new"]
    scipy.io.savemat(path, bad_ra)
    with pytest.raises(FormatError, match=r"lacks the variables \['mask_new'\]"):
        read_records("aflw", path)


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_round_trip(tmp_path, make_records, same_faces, version):
    recs = make_records("aflw19", 3, root=tmp_path / "img", visible=True)
    write_records("aflw", recs, tmp_path / "out.mat", images=tmp_path / "img", version=version, ra=[3, 1, 2])
    back = read_records("aflw", tmp_path / "out.mat", images=tmp_path / "img", check_images=True)
    same_faces(back, recs)
    full = read_records("aflw", tmp_path / "out.mat", images=tmp_path / "img", split="full", train_size=1)
    assert [r.source.rsplit("#", 1)[1] for r in full] == ["0", "1"]
