"""SynthFaces' features: every protocol is defined on known curves with its point count."""

from __future__ import annotations

import numpy as np
import pytest

from sepbn.data.protocols import PROTOCOLS
from sepbn.data.synth.curves import CURVES, PROTOCOL_POINTS, point_set, template
from sepbn.data.synth.head import Expression, Shape


def test_every_protocol_is_defined_with_its_point_count():
    assert set(PROTOCOL_POINTS) == set(PROTOCOLS)
    for name, pts in PROTOCOL_POINTS.items():
        assert len(pts) == PROTOCOLS[name].num_points


def test_right_curves_mirror_the_left_ones_in_the_template():
    left = point_set([("eye_upper_L", 0.3), ("brow_mid_L", 0.7), ("nostril_L", 0.0)])
    right = point_set([("eye_upper_R", 0.3), ("brow_mid_R", 0.7), ("nostril_R", 0.0)])
    XL, YL, hL = template(left, Shape(), Expression())
    XR, YR, hR = template(right, Shape(), Expression())
    np.testing.assert_allclose(XR, -XL)
    np.testing.assert_allclose((YR, hR), (YL, hL))
    assert np.all(XL < 0)  # "left" is image left of a frontal face


def test_an_unknown_curve_is_named():
    with pytest.raises(ValueError, match="unknown SynthFaces curve 'ear_L'"):
        point_set([("ear_L", 0.5)])
    assert "jaw" in CURVES
