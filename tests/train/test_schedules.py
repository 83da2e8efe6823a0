"""LR warm-up + cosine and the tau annealing at chosen epochs (paper section V-A)."""

import math

import pytest

from sepbn.train.schedules import lr_at, tau_at

PAPER = dict(total_steps=500, warmup_steps=120, max_lr=1e-3, min_lr=5e-6)  # one step per epoch


def test_lr_warmup_is_linear_from_min_to_max():
    assert lr_at(0, **PAPER) == pytest.approx(5e-6)
    assert lr_at(60, **PAPER) == pytest.approx(5e-6 + (1e-3 - 5e-6) / 2)
    assert lr_at(120, **PAPER) == pytest.approx(1e-3)


def test_lr_cosine_after_warmup():
    mid = 120 + (500 - 120) // 2  # 310: half way through the cosine
    assert lr_at(mid, **PAPER) == pytest.approx((1e-3 + 5e-6) / 2)
    t = (400 - 120) / 380
    assert lr_at(400, **PAPER) == pytest.approx(5e-6 + (1e-3 - 5e-6) * (1 + math.cos(math.pi * t)) / 2)
    assert lr_at(500, **PAPER) == pytest.approx(5e-6)
    values = [lr_at(s, **PAPER) for s in range(120, 500)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_lr_per_step_uses_steps_per_epoch():
    k = 7
    scaled = dict(PAPER, total_steps=500 * k, warmup_steps=120 * k)
    for epoch in (0, 30, 120, 250, 499):
        assert lr_at(epoch * k, **scaled) == pytest.approx(lr_at(epoch, **PAPER))


def test_tau_annealing_30_to_1_over_30_epochs():
    assert [tau_at(e) for e in (0, 1, 15, 29, 30, 499)] == [30.0, 29.0, 15.0, 1.0, 1.0, 1.0]
    assert tau_at(5, start=10.0, end=2.0, epochs=5) == 2.0
    assert tau_at(2, start=10.0, end=2.0, epochs=5) == 6.0


@pytest.mark.parametrize("kwargs", [dict(PAPER, warmup_steps=500), dict(PAPER, total_steps=0)])
def test_lr_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        lr_at(0, **kwargs)


def test_tau_rejects_bad_arguments():
    with pytest.raises(ValueError, match="-1"):
        tau_at(-1)
    with pytest.raises(ValueError, match="0"):
        tau_at(0, epochs=0)
