"""SynthFaces sampling: determinism, domain proportions, flags, domain parsing."""

from __future__ import annotations

import numpy as np
import pytest

from sepbn.data.protocols import WFLW_ATTRIBUTES
from sepbn.data.synth.curves import PROTOCOL_POINTS
from sepbn.data.synth.sample import DEFAULT_DOMAINS, Domain, parse_domains, sample_face, synthesize

SIZE = (64, 64)


def test_a_face_depends_only_on_seed_and_index():
    a = [sample_face(3, i, size=SIZE) for i in (0, 1, 2)]
    b = [sample_face(3, i, size=SIZE) for i in (2, 1, 0)][::-1]  # other order: same faces
    for x, y in zip(a, b):
        assert (x.shape, x.expr, x.pose, x.look, x.domain) == (y.shape, y.expr, y.pose, y.look, y.domain)
    assert sample_face(4, 0, size=SIZE).pose != a[0].pose


def test_synthesize_is_deterministic():
    f = synthesize(2, seed=9, size=SIZE)
    g = synthesize(2, seed=9, size=SIZE)
    np.testing.assert_array_equal(f.image, g.image)
    for name in PROTOCOL_POINTS:
        np.testing.assert_array_equal(f.points[name], g.points[name])
        np.testing.assert_array_equal(f.visible[name], g.visible[name])
    assert not np.array_equal(f.image, synthesize(2, seed=10, size=SIZE).image)


def test_domain_proportions_follow_the_weights():
    doms = [sample_face(0, i, size=SIZE) for i in range(300)]
    share = {d.name: np.mean([f.domain == d.name for f in doms]) for d in DEFAULT_DOMAINS}
    assert 0.6 < share["frontal"] < 0.8
    assert 0.07 < share["left-profile"] < 0.24 and 0.07 < share["right-profile"] < 0.24
    for f in doms:
        d = DEFAULT_DOMAINS[f.domain_id]
        assert d.name == f.domain and d.yaw[0] <= f.pose.yaw <= d.yaw[1]
    only_left = (Domain("left-profile", 1.0, (-90.0, -40.0)), Domain("frontal", 0.0, (-40.0, 40.0)))
    assert {sample_face(0, i, only_left, SIZE).domain for i in range(20)} == {"left-profile"}


def test_wflw_flags_follow_the_generation_parameters():
    faces = [synthesize(i, seed=1, size=SIZE, protocols=["wflw98"]) for i in range(40)]
    for f in faces:
        assert set(f.flags) == set(WFLW_ATTRIBUTES)
        assert f.flags["pose"] == (abs(f.pose.yaw) > 45 or max(abs(f.pose.pitch), abs(f.pose.roll)) > 22)
        assert f.flags["make-up"] == (f.look.eye_shadow is not None)
        if f.look.occluder is None:
            assert not f.flags["occlusion"]
        if f.flags["occlusion"]:
            assert not f.visible["wflw98"].all()
    assert any(f.flags["pose"] for f in faces) and any(f.flags["occlusion"] for f in faces)


def test_parse_domains():
    doms = parse_domains("left-profile:0.3,frontal:0.4,right-profile:0.3")
    assert [d.weight for d in doms] == [0.3, 0.4, 0.3] and doms[0].yaw == (-90.0, -40.0)
    custom = parse_domains("near:1:-20:20,far:2:60:90")
    assert custom[1] == Domain("far", 2.0, (60.0, 90.0))
    for bad in ("frontal", "x:1", "a:1:0:10,a:1:0:10", "a:0:0:10", "a:1:-100:0", "a:one:0:10"):
        with pytest.raises(ValueError):
            parse_domains(bad)
