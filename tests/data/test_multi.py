"""CNT mixing: global indexing, proportional sampling, rank shares, per-protocol collation."""

import numpy as np
import pytest
import torch

from sepbn.data.dataset import LandmarkDataset
from sepbn.data.multi import MultiProtocolDataset, ProportionalSampler, collate_landmarks
from sepbn.data.protocols import get_protocol
from sepbn.data.records import FaceRecord


def _dataset(protocol, n, value):
    """n faces of ``protocol`` on in-memory uniform images of grey level ``value``."""
    L = get_protocol(protocol).num_points
    rng = np.random.default_rng(n)
    recs = [FaceRecord(rng.uniform(20, 40, (L, 2)), (18.0, 18.0, 42.0, 42.0), protocol,
                       image=np.full((60, 60, 3), value, np.uint8), attributes={"domain_id": value % 3},
                       source=f"{protocol}#{i}") for i in range(n)]
    return LandmarkDataset(recs, protocol, train=True, image_size=16)


@pytest.fixture
def mixed():
    return MultiProtocolDataset({"faces68": _dataset("300w68", 3, 10), "mtfl": _dataset("5pt", 2, 200),
                                 "wider": _dataset("5pt", 4, 100)})


def test_global_index_maps_to_dataset_and_local_index(mixed):
    assert len(mixed) == 9 and mixed.sizes == [3, 2, 4] and mixed.protocols == ["300w68", "5pt"]
    assert [mixed.locate(i) for i in (0, 2, 3, 4, 5, 8)] == [
        ("faces68", 0), ("faces68", 2), ("mtfl", 0), ("mtfl", 1), ("wider", 0), ("wider", 3)]
    item = mixed[4]
    assert item["dataset"] == "mtfl" and item["protocol"] == "5pt" and item["index"] == 1
    with pytest.raises(IndexError):
        mixed.locate(9)
    mixed.set_epoch(3)
    assert all(d.epoch == 3 for d in mixed.datasets.values())


def test_sampler_without_replacement_has_exact_shares_and_covers_each_dataset():
    sizes = [10, 30, 60]
    sampler = ProportionalSampler(sizes, 250, seed=1)
    idx = np.array(list(sampler))
    assert len(idx) == len(sampler) == 250
    counts = np.bincount(np.searchsorted([10, 40], idx, side="right"), minlength=3)
    np.testing.assert_array_equal(counts, sampler.counts())
    np.testing.assert_array_equal(counts, [25, 75, 150])
    per_face = np.bincount(idx, minlength=100)
    assert per_face[:10].min() >= 2 and per_face[:10].max() <= 3  # cycled permutations, not i.i.d.
    assert per_face[10:].min() >= 2 and per_face[10:].max() <= 3


def test_sampler_with_replacement_matches_proportions():
    sizes = np.array([10, 30, 60])
    sampler = ProportionalSampler(sizes, 6000, seed=2, replacement=True)
    idx = np.array(list(sampler))
    observed = np.bincount(np.searchsorted([10, 40], idx, side="right"), minlength=3)
    expected = 6000 * sizes / sizes.sum()
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < 13.8  # chi-square, 2 degrees of freedom, p = 0.001


def test_sampler_reproducible_by_seed_and_epoch():
    a, b = ProportionalSampler([5, 7], 12, seed=3), ProportionalSampler([5, 7], 12, seed=3)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and sorted(set(list(a))) == sorted(set(first))
    assert list(ProportionalSampler([5, 7], 12, seed=4)) != first


@pytest.mark.parametrize("num_samples,world", [(12, 3), (10, 3), (7, 4)])
def test_rank_shares_are_disjoint_and_cover_the_epoch(num_samples, world):
    shares = []
    for rank in range(world):
        s = ProportionalSampler([4, 6], num_samples, seed=5, rank=rank, world_size=world)
        s.set_epoch(2)
        shares.append(list(s))
    full = ProportionalSampler([4, 6], num_samples, seed=5)
    full.set_epoch(2)
    epoch = list(full)
    assert {len(s) for s in shares} == {-(-num_samples // world)}
    # Position j of rank r is epoch position r + j * world: disjoint, and together the whole epoch.
    positions = [r + j * world for r in range(world) for j in range(len(shares[r]))]
    assert len(set(positions)) == len(positions)
    assert set(range(num_samples)) <= set(positions)
    for r in range(world):
        for j, value in enumerate(shares[r]):
            pos = r + j * world
            assert value == epoch[pos % num_samples]


def test_sampler_arguments():
    with pytest.raises(ValueError, match="sizes"):
        ProportionalSampler([3, 0], 5)
    with pytest.raises(ValueError, match="rank"):
        ProportionalSampler([3], 5, rank=2, world_size=2)
    assert len(ProportionalSampler([3, 4])) == 7


def test_collate_groups_per_protocol_in_batch_order(mixed):
    samples = [mixed[i] for i in (5, 0, 3, 1, 8)]  # 5pt, 68, 5pt, 68, 5pt
    batch = collate_landmarks(samples)
    assert batch["image"].shape == (5, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert batch["protocol"] == ["5pt", "300w68", "5pt", "300w68", "5pt"]
    assert batch["dataset"] == ["wider", "faces68", "mtfl", "faces68", "wider"]
    assert batch["rows"]["5pt"].tolist() == [0, 2, 4] and batch["rows"]["300w68"].tolist() == [1, 3]
    assert batch["target"]["5pt"].shape == (3, 5, 2) and batch["target"]["300w68"].shape == (2, 68, 2)
    for p, rows in batch["rows"].items():
        for j, i in enumerate(rows.tolist()):
            np.testing.assert_array_equal(batch["target"][p][j].numpy(), samples[i]["target"])
            np.testing.assert_array_equal(batch["landmarks"][p][j].numpy(), samples[i]["landmarks"])
            np.testing.assert_array_equal(batch["visible"][p][j].numpy(), samples[i]["visible"])
    assert batch["matrix"].shape == (5, 2, 3) and batch["inverse"].shape == (5, 2, 3)
    assert batch["domain"].tolist() == [s["domain"] for s in samples]
    assert batch["index"].tolist() == [0, 0, 0, 1, 3]
    means = batch["image"].mean(dim=(1, 2, 3))
    assert means[1] < means[0] < means[2]  # images follow their rows: grey 10, 100 and 200


def test_dataloader_end_to_end(mixed):
    sampler = ProportionalSampler(mixed.sizes, 8, seed=0)
    loader = torch.utils.data.DataLoader(mixed, batch_size=4, sampler=sampler, collate_fn=collate_landmarks)
    batches = list(loader)
    assert len(batches) == 2
    assert sum(len(b["protocol"]) for b in batches) == 8
    for b in batches:
        assert sum(len(r) for r in b["rows"].values()) == 4
