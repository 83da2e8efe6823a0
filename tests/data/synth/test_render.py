"""SynthFaces appearance: pure rendering, occluder flags, image statistics of features."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sepbn.data.synth.face import geometry
from sepbn.data.synth.head import Expression, Pose, Shape
from sepbn.data.synth.draw import Look
from sepbn.data.synth.effects import OCCLUDERS, occluded
from sepbn.data.synth.render import render

SIZE = (96, 96)
POSE = Pose(scale=28.0)


def test_render_is_a_pure_function_of_its_arguments():
    look = Look(seed=5, occluder="hand", noise=4.0, blur=1.0)
    a, ma = render(Shape(), Expression(), POSE, look, SIZE)
    b, mb = render(Shape(), Expression(), POSE, look, SIZE)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ma, mb)
    c, _ = render(Shape(), Expression(), POSE, replace(look, seed=6), SIZE)
    assert not np.array_equal(a, c)


def test_sunglasses_occlude_the_eye_points_only():
    img, mask = render(Shape(), Expression(), POSE, Look(occluder="sunglasses", noise=0.0), SIZE)
    g = geometry(Shape(), Expression(), POSE, SIZE)
    occ = occluded(mask, g["300w68"])
    assert occ[36:48].all()  # both eyes
    assert not occ[48:68].any() and not occ[0:17].any()  # mouth and jaw stay visible
    # the lenses are dark where the eyes are
    eye = np.round(g["5pt"][0]).astype(int)
    assert img[eye[1], eye[0]].mean() < 90


def test_no_occluder_means_no_occlusion():
    _, mask = render(Shape(), Expression(), POSE, Look(), SIZE)
    assert mask is None
    assert not occluded(None, np.zeros((5, 2))).any()


@pytest.mark.parametrize("kind", OCCLUDERS)
def test_every_occluder_draws_a_mask(kind):
    _, mask = render(Shape(), Expression(), POSE, Look(seed=1, occluder=kind, occluder_at=(0.0, 0.5)), SIZE)
    assert mask.shape == SIZE and mask.any()


def test_the_face_is_drawn_where_its_points_are():
    look = Look(noise=0.0, skin=(200.0, 150.0, 120.0))
    img, _ = render(Shape(), Expression(), POSE, look, SIZE)
    g = geometry(Shape(), Expression(), POSE, SIZE)
    cheek = np.round(0.5 * (g["300w68"][3] + g["300w68"][31])).astype(int)  # between jaw and nose
    r, gr, b = img[cheek[1], cheek[0]].astype(int)
    assert r > b  # skin, not background clutter
    lip = np.round(g["300w68"][57] + [0, -1]).astype(int)
    assert img[lip[1], lip[0], 0] > img[lip[1], lip[0], 2]  # lips are reddish


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="occluder"):
        render(Shape(), Expression(), POSE, Look(occluder="umbrella"), SIZE)
    with pytest.raises(ValueError, match="at least 8x8"):
        render(Shape(), Expression(), POSE, Look(), (4, 4))
