"""Metrics against hand-computed values: NME per normaliser kind, FR, AUC, CED, WFLW table."""

import math

import numpy as np
import pytest

from sepbn.protocols import AFLW19, FIVE_POINT, W300_68, WFLW98, WFLW_ATTRIBUTES, Normalizer, get_protocol
from sepbn.evaluation.metrics import (
    auc,
    ced,
    failure_rate,
    format_subset_table,
    group_mean,
    nme,
    normalizer_label,
    plot_ced,
    wflw_subset_table,
)


def _five_points():
    # eye centres 10 px apart; every prediction off by (3, 4): error 5 px on each point.
    gt = np.array([[0.0, 0.0], [10.0, 0.0], [5.0, 5.0], [1.0, 9.0], [9.0, 9.0]])
    return gt + [3.0, 4.0], gt


def test_nme_points_normaliser():
    pred, gt = _five_points()
    np.testing.assert_allclose(nme(pred, gt, FIVE_POINT), [0.5])  # 5 / 10
    # Two faces, the second twice as large with a 1-px error on one point only: (1 / 5) / 20.
    gt2 = np.stack([gt, 2 * gt])
    pred2 = np.stack([pred, 2 * gt])
    pred2[1, 2, 0] += 1
    np.testing.assert_allclose(nme(pred2, gt2, FIVE_POINT), [0.5, 0.01])


def test_nme_300w_inter_ocular_and_inter_pupil():
    p = get_protocol(W300_68)
    gt = np.zeros((68, 2))
    gt[36:42] = [[0, 0], [2, -1], [4, -1], [6, 0], [4, 1], [2, 1]]  # left eye, centre (3, 0)
    gt[42:48] = gt[36:42] + [20, 0]  # right eye, centre (23, 0); outer corner 45 at (26, 0)
    gt[45] = [26, 0]
    pred = gt.copy()
    pred[0] += [0, 6.8]  # one point off by 6.8 px: mean error 0.1 px
    np.testing.assert_allclose(nme(pred, gt, p), [0.1 / 26])  # inter-ocular: 36 (0,0) to 45 (26,0)
    pupil = np.linalg.norm(gt[42:48].mean(0) - gt[36:42].mean(0))
    np.testing.assert_allclose(nme(pred, gt, p, normalizer="inter-pupil"), [0.1 / pupil])
    assert "inter-pupil" in normalizer_label(p, "inter-pupil") and "36" in normalizer_label(p)


@pytest.mark.parametrize("name,d", [("box", math.sqrt(30 * 40)), ("box-max", 40.0), ("box-diag", 50.0)])
def test_nme_box_normalisers(name, d):
    pred, gt = _five_points()
    boxes = np.array([[10.0, 20.0, 40.0, 60.0]])  # w 30, h 40
    np.testing.assert_allclose(nme(pred, gt, FIVE_POINT, boxes=boxes, normalizer=name), [5 / d])
    custom = Normalizer("custom", "box", box_formula="max_side")
    np.testing.assert_allclose(nme(pred, gt, FIVE_POINT, boxes=boxes, normalizer=custom), [5 / 40])


def test_aflw_default_is_box_sqrt_wh():
    gt = np.random.default_rng(0).uniform(0, 50, (2, 19, 2))
    boxes = np.array([[0, 0, 20, 80], [5, 5, 45, 15]], float)  # sqrt(w h) = 40 and 20
    np.testing.assert_allclose(nme(gt + [0, 2], gt, AFLW19, boxes=boxes), [2 / 40, 2 / 20])
    assert "sqrt(w*h)" in normalizer_label(AFLW19)


def test_nme_bad_input():
    pred, gt = _five_points()
    with pytest.raises(ValueError, match=r"\(N, 68, 2\)"):
        nme(pred, gt, W300_68)
    with pytest.raises(ValueError, match="needs face boxes"):
        nme(pred, gt, FIVE_POINT, normalizer="box")
    with pytest.raises(ValueError, match="no normalizer 'pupil'"):
        nme(pred, gt, FIVE_POINT, normalizer="pupil")
    with pytest.raises(ValueError, match="not positive for faces \\[0\\]"):
        nme(pred, np.zeros_like(gt), FIVE_POINT)
    with pytest.raises(TypeError, match="resolve names once"):  # below the edge, no name is looked up
        nme(pred, gt, "5pt")


def test_failure_rate():
    e = np.array([0.05, 0.09, 0.11, 0.2])
    assert failure_rate(e, 0.1) == 0.5
    assert failure_rate(e, 0.08) == 0.75
    assert failure_rate(np.array([0.1]), 0.1) == 0.0  # "above" the threshold


def test_auc_hand_computed():
    # CED: 0 up to 0.02, 1/3 up to 0.06, 2/3 up to 0.1 -> area 0.04 * 1/3 + 0.04 * 2/3 = 0.04.
    assert auc(np.array([0.2, 0.06, 0.02]), 0.1) == pytest.approx(0.4)
    assert auc(np.array([0.0, 0.0]), 0.1) == pytest.approx(1.0)
    assert auc(np.array([0.1, 0.3]), 0.1) == 0.0
    with pytest.raises(ValueError, match="non-finite"):
        auc(np.array([0.1, np.nan]), 0.1)


def test_auc_matches_the_fine_step_integration_of_the_literature():
    e = np.random.default_rng(1).gamma(2.0, 0.025, 500)
    step = 1e-5
    xs = np.arange(0, 0.1 + step / 2, step)
    ys = np.array([np.count_nonzero(e <= x) for x in xs]) / len(e)
    assert auc(e, 0.1) == pytest.approx(np.trapezoid(ys, xs) / 0.1, abs=1e-4)
    assert auc(e, 0.1) == pytest.approx(np.mean(np.maximum(0, 1 - e / 0.1)), abs=1e-12)


def test_ced_arrays():
    x, y = ced(np.array([0.02, 0.06, 0.2]), 0.1, steps=11)
    np.testing.assert_allclose(x, np.linspace(0, 0.1, 11))
    np.testing.assert_allclose(y, [0, 0, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3])


def test_plot_ced_writes_a_png(tmp_path):
    rng = np.random.default_rng(2)
    path = plot_ced({"BN": rng.uniform(0, 0.1, 20), "SepBN": rng.uniform(0, 0.08, 20)}, 0.1,
                    tmp_path / "sub" / "ced.png", xlabel=normalizer_label(WFLW98))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_wflw_subset_table():
    errors = np.array([0.04, 0.06, 0.12, 0.08])
    flags = np.zeros((4, 6), int)
    flags[[2, 3], 0] = 1  # pose: faces 2 and 3
    flags[1, 5] = 1  # blur: face 1
    rows = wflw_subset_table(errors, flags)
    assert [r.subset for r in rows] == ["test", *WFLW_ATTRIBUTES]
    test, pose, blur = rows[0], rows[1], rows[6]
    assert (test.count, pose.count, blur.count, rows[2].count) == (4, 2, 1, 0)
    assert test.nme == pytest.approx(0.075) and pose.nme == pytest.approx(0.1) and blur.nme == pytest.approx(0.06)
    assert test.failure_rate == 0.25 and pose.failure_rate == 0.5
    assert pose.auc == pytest.approx((0 + 0.2) / 2)
    assert math.isnan(rows[2].nme)
    as_dicts = [dict(zip(WFLW_ATTRIBUTES, f)) for f in flags]
    assert repr(wflw_subset_table(errors, as_dicts)) == repr(rows)  # NaN rows compare by repr
    text = format_subset_table({"SepBN": rows})
    lines = text.splitlines()
    assert lines[0].split()[1:] == ["test", *WFLW_ATTRIBUTES]
    assert lines[1].split()[:3] == ["SepBN", "7.50", "10.00"]
    with pytest.raises(ValueError, match=r"\(4, 6\)"):
        wflw_subset_table(errors, flags[:, :5])


def test_group_mean_per_domain():
    e = np.array([0.1, 0.3, 0.2, 0.4])
    assert group_mean(e, ["frontal", "profile", "frontal", "profile"]) == pytest.approx(
        {"frontal": 0.15, "profile": 0.35})
    assert group_mean(e, [1, 1, 0, 0]) == pytest.approx({0: 0.3, 1: 0.2})
