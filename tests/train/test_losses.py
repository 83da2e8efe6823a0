"""L1 and Wing losses against hand-computed values."""

import math

import pytest
import torch

from sepbn.train.losses import l1_loss, wing_loss


def test_l1_value_and_mask():
    pred = torch.tensor([[[0.0, 0.0], [1.0, -1.0]]])
    target = torch.tensor([[[0.5, 0.0], [0.0, 0.0]]])
    assert l1_loss(pred, target).item() == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    assert l1_loss(pred, target, torch.tensor([[True, False]])).item() == pytest.approx(0.25)


def test_wing_piecewise():
    S, w, eps = 128, 10.0, 2.0
    target = torch.zeros(1, 1, 2)
    small = torch.tensor([[[2.0 / (S / 2), 0.0]]])  # 2 px error -> w ln(1 + 1)
    big = torch.tensor([[[20.0 / (S / 2), 0.0]]])  # 20 px -> 20 - C
    c = w - w * math.log1p(w / eps)
    assert wing_loss(small, target, image_size=S).item() == pytest.approx(w * math.log(2) / 2, rel=1e-5)
    assert wing_loss(big, target, image_size=S).item() == pytest.approx((20 - c) / 2, rel=1e-5)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        l1_loss(torch.zeros(1, 2, 2), torch.zeros(1, 3, 2))
