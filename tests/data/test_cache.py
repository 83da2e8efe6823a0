"""The decoded face cache: same samples as from the files, rebuilt when the source changes."""

import argparse
import json
import pickle

import cv2
import numpy as np
import pytest

from sepbn.data.cache import FaceCache, build_cache, ensure_cache
from sepbn.data.dataset import LandmarkDataset
from sepbn.data.records import FaceRecord
from sepbn.data.transforms import AugmentConfig, denormalize_image


def _smooth_photo(path, seed, h=120, w=140):
    """A smooth random photo (low-pass noise), so double resampling stays close to single."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 10, w // 10, 3), dtype=np.uint8)
    cv2.imwrite(str(path), cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC))


def _records(tmp_path, n=3):
    recs = []
    for i in range(n):
        path = tmp_path / f"face{i}.png"
        _smooth_photo(path, seed=i)
        box = (40.0 + 5 * i, 35.0, 90.0 + 5 * i, 80.0)
        pts = np.random.default_rng(10 + i).uniform([45, 40], [85, 75], (5, 2))
        recs.append(FaceRecord(pts, box, "5pt", image_path=str(path), source=f"t:{i}"))
    return recs


def test_cache_samples_equal_file_samples(tmp_path):
    recs = _records(tmp_path)
    cache = build_cache(recs, tmp_path / "cache", size=128, margin=2.0)
    # Mild augmentation keeps the crop inside the cached 2x margin (beyond it the cache is black).
    cfg = AugmentConfig(rotation=10, corner_jitter=0.05, shear=0.1)
    from_files = LandmarkDataset(recs, "5pt", train=True, image_size=48, augment=cfg, seed=1)
    from_cache = LandmarkDataset(recs, "5pt", train=True, image_size=48, augment=cfg, seed=1, cache=cache)
    for epoch in range(3):
        from_files.set_epoch(epoch)
        from_cache.set_epoch(epoch)
        for i in range(len(recs)):
            a, b = from_files[i], from_cache[i]
            for key in ("target", "matrix", "inverse", "landmarks", "visible", "box"):
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
            diff = np.abs(denormalize_image(a["image"]).astype(int) - denormalize_image(b["image"]).astype(int))
            assert diff.mean() < 2.0 and np.percentile(diff, 99) < 12, (diff.mean(), diff.max())


def test_cache_path_argument_builds_and_reuses(tmp_path):
    recs = _records(tmp_path, n=2)
    ds = LandmarkDataset(recs, "5pt", image_size=32, cache=tmp_path / "c")
    assert isinstance(ds.cache, FaceCache) and len(ds.cache) == 2
    data_file = ds.cache.data_file
    mtime = data_file.stat().st_mtime_ns
    again = ensure_cache(recs, tmp_path / "c")
    assert again.data_file == data_file and data_file.stat().st_mtime_ns == mtime  # not rebuilt
    assert not list((tmp_path / "c").glob(".*tmp"))
    meta = json.loads((tmp_path / "c" / "index.json").read_text())
    assert meta["count"] == 2 and meta["sources"] == ["t:0", "t:1"]


def test_cache_rebuilt_when_a_file_changes(tmp_path):
    recs = _records(tmp_path)
    first = ensure_cache(recs, tmp_path / "c", size=64)
    old_crop = first.crop(1).copy()
    _smooth_photo(recs[1].image_path, seed=99)  # new content, new size and mtime
    second = ensure_cache(recs, tmp_path / "c", size=64)
    assert second.fingerprint != first.fingerprint
    assert not first.data_file.exists()  # the earlier build's data is removed
    np.testing.assert_array_equal(second.crop(0), first.crop(0))
    assert np.abs(second.crop(1).astype(int) - old_crop).mean() > 5
    # Boxes and points are part of the fingerprint too, and so are the cache parameters.
    recs[2].box = (41.0, 35.0, 100.0, 80.0)
    assert not second.matches(recs)
    assert ensure_cache(recs, tmp_path / "c", size=64).matches(recs)
    assert ensure_cache(recs, tmp_path / "c", size=48).size == 48


def test_dataset_rejects_a_cache_of_other_records(tmp_path):
    recs = _records(tmp_path)
    cache = build_cache(recs[:2], tmp_path / "c", size=32)
    with pytest.raises(ValueError, match="not built from these records"):
        LandmarkDataset(recs, "5pt", cache=cache)


def test_cache_pickles_without_its_pixels(tmp_path):
    recs = _records(tmp_path, n=2)
    cache = build_cache(recs, tmp_path / "c", size=64)
    _ = cache.crop(0)
    blob = pickle.dumps(cache)
    assert len(blob) < 64 * 64 * 3
    np.testing.assert_array_equal(pickle.loads(blob).crop(1), cache.crop(1))


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="0 records"):
        build_cache([], tmp_path / "c")
    with pytest.raises(ValueError, match="margin"):
        build_cache(_records(tmp_path, n=1), tmp_path / "c", margin=0.5)
    with pytest.raises(FileNotFoundError, match="no face cache"):
        FaceCache(tmp_path / "nothing")


def test_cache_command(tmp_path, monkeypatch, capsys):
    from sepbn.commands import cache as command

    recs = _records(tmp_path, n=2)
    seen = {}

    def fake_read_records(fmt, source, **kwargs):
        seen.update(fmt=fmt, source=source, **kwargs)
        return recs

    monkeypatch.setattr(command, "read_records", fake_read_records)  # the name the command calls
    parser = argparse.ArgumentParser()
    command.configure(parser)
    args = parser.parse_args(["--fmt", "mtfl", "--source", "x.txt", "--split", "train", "--out", str(tmp_path / "c"),
                              "--size", "32"])
    assert command.run(args) == 0
    assert seen == {"fmt": "mtfl", "source": "x.txt", "images": None, "split": "train", "skip_invalid": False}
    assert "2 faces, 32 px" in capsys.readouterr().out
    assert command.run(args) == 0
    assert "up to date" in capsys.readouterr().out


def test_box_scale_beyond_the_cache_margin_raises(tmp_path):
    recs = _records(tmp_path, n=1)
    cache = build_cache(recs, tmp_path / "c", size=32, margin=1.5)
    with pytest.raises(ValueError, match="exceeds the cache margin 1.5"):
        LandmarkDataset(recs, "5pt", box_scale=2.0, cache=cache)
