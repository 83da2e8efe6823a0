"""evaluate(): predictions mapped back to original pixels, summary numbers, domains, CED plot."""

import numpy as np
import pytest
import torch
from torch import nn

from sepbn.data import LandmarkDataset
from sepbn.data.formats import read_records
from sepbn.data.transforms import to_original
from sepbn.evaluation.evaluate import evaluate, summarize
from sepbn.nn import BruteForceSepBN2d, current_domains
from sepbn.protocols import FIVE_POINT, WFLW98


class Oracle(nn.Module):
    """Stand-in network: returns the dataset's own targets (plus ``offset``), batch after batch."""

    def __init__(self, dataset, offset=0.0):
        super().__init__()
        self.targets = torch.from_numpy(np.stack([dataset[i]["target"] for i in range(len(dataset))])) + offset
        self.protocol = dataset.protocol.name
        self.seen = 0

    @property
    def output_protocols(self):
        return (self.protocol,)

    def forward(self, x, protocols=None):
        out = self.targets[self.seen:self.seen + len(x)]
        self.seen += len(x)
        return {self.protocol: out}


@pytest.fixture()
def dataset(tiny_faces):
    return LandmarkDataset(read_records("csv", tiny_faces["300w68"]), "300w68", image_size=64, box_scale=1.2)


def test_to_original_inverts_the_crop(dataset):
    item = dataset[3]
    back = to_original(item["target"][None], item["inverse"][None], 64)[0]
    assert np.allclose(back, item["landmarks"], atol=1e-3)


def test_perfect_predictions_score_zero(dataset, tmp_path):
    res = evaluate(Oracle(dataset), dataset, batch_size=5, ced_path=tmp_path / "ced.png", name="tiny")
    s = res.summary
    assert res.predictions.shape == (12, 68, 2) and np.allclose(res.predictions, res.landmarks, atol=1e-3)
    assert s["nme"] < 1e-4 and s["fr@10"] == 0.0 and s["auc@10"] > 0.99 and s["faces"] == 12
    assert s["normalizer"] == "NME (300w68, inter-ocular (36, 45))"
    assert set(s["domains"]) == {"left", "frontal"} and s["domains"]["left"]["faces"] == 6
    assert (tmp_path / "ced.png").stat().st_size > 0 and s["ced"].endswith("ced.png")


def test_offset_error_is_measured_in_original_pixels(dataset):
    offset = 0.1  # normalised crop units: 0.1 * 64 / 2 = 3.2 crop pixels along x and y
    res = evaluate(Oracle(dataset, offset), dataset, batch_size=4)
    items = [dataset[i] for i in range(len(dataset))]
    crop_px = offset * 64 / 2 * np.sqrt(2)
    scale = np.array([np.sqrt(abs(np.linalg.det(it["inverse"][:, :2]))) for it in items])  # original px per crop px
    gt = np.stack([it["landmarks"] for it in items])
    d = np.linalg.norm(gt[:, 36] - gt[:, 45], axis=-1)
    assert np.allclose(res.errors, crop_px * scale / d, rtol=1e-4)
    assert res.summary["nme"] == pytest.approx(float(np.mean(crop_px * scale / d)), rel=1e-4)


def test_summary_has_wflw_subsets_when_flags_exist():
    e = np.array([0.05, 0.12, 0.07])
    attrs = [dict.fromkeys(("pose", "expression", "illumination", "make-up", "occlusion", "blur"), 0) for _ in e]
    attrs[1]["pose"] = 1
    s = summarize(e, WFLW98, attributes=attrs)
    assert s["subsets"]["pose"]["faces"] == 1 and s["subsets"]["pose"]["nme"] == pytest.approx(0.12)
    assert s["fr@10"] == pytest.approx(1 / 3) and s["fr@8"] == pytest.approx(1 / 3)
    assert "subsets" not in summarize(e, WFLW98) and "domains" not in summarize(e, WFLW98)


def test_wrong_protocol_is_refused(dataset):
    with pytest.raises(ValueError, match="5pt"):
        evaluate(Oracle(dataset), dataset, protocol=FIVE_POINT)


class BruteOracle(nn.Module):
    """Brute-force stand-in: the targets, shifted by ``offsets[branch]`` for the branch each face is routed to."""

    def __init__(self, dataset, offsets):
        super().__init__()
        items = [dataset[i] for i in range(len(dataset))]
        self.images = torch.from_numpy(np.stack([np.asarray(it["image"]) for it in items])).float()
        self.targets = torch.from_numpy(np.stack([it["target"] for it in items]))
        self.offsets = torch.tensor(offsets)
        self.norm = BruteForceSepBN2d(3, num_domains=len(offsets))
        self.protocol = dataset.protocol.name

    @property
    def output_protocols(self):
        return (self.protocol,)

    def forward(self, x, protocols=None):
        self.norm(x)  # raises without a route, as a real brute-force network does
        route = current_domains()
        branch = torch.full((len(x),), route) if isinstance(route, int) else route
        index = torch.stack([(self.images - xi.float()).abs().flatten(1).sum(1).argmin() for xi in x])
        return {self.protocol: self.targets[index] + self.offsets[branch][:, None, None]}


def test_brute_force_best_branch_is_each_faces_lowest_error(dataset):
    model = BruteOracle(dataset, [0.3, 0.0, 0.1])
    best = evaluate(model, dataset, batch_size=5)  # default for brute-force networks: "best"
    assert best.summary["nme"] < 1e-4 and best.summary["branch"] == "best"
    assert best.summary["branch_counts"] == [0, 12, 0] and (best.branches == 1).all()
    fixed = evaluate(model, dataset, batch_size=5, branch=2)
    single = evaluate(BruteOracle(dataset, [0.1]), dataset, batch_size=5, branch=0)
    assert np.allclose(fixed.errors, single.errors) and fixed.summary["nme"] > 0.01
    assert fixed.summary["branch_counts"] == [0, 0, 12]


def test_brute_force_label_routing_uses_each_records_domain(dataset):
    model = BruteOracle(dataset, [0.0, 0.2])
    res = evaluate(model, dataset, batch_size=5, branch="label")
    assert (res.branches == res.domains).all() and res.summary["branch_counts"] == [6, 6]
    assert np.all(res.errors[res.domains == 0] < 1e-4) and np.all(res.errors[res.domains == 1] > 0.01)
    with pytest.raises(ValueError, match="flip averaging cannot route faces by their domain label"):
        evaluate(model, dataset, batch_size=5, branch="label", flip=True)


def test_branch_is_checked(dataset):
    with pytest.raises(ValueError, match="brute-force SepBN networks only"):
        evaluate(Oracle(dataset), dataset, branch=1)
    with pytest.raises(ValueError, match="got 3"):
        evaluate(BruteOracle(dataset, [0.0, 0.1, 0.2]), dataset, branch=3)
