"""SynthFaces' one face: every protocol's points, mirror consistency, semantics, visibility."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sepbn.data.protocols import PROTOCOLS, get_protocol
from sepbn.data.synth.sample import sample_face
from sepbn.data.synth.face import SLICES, face_points, geometry
from sepbn.data.synth.head import Expression, Pose, Shape, mirror_pose

SIZE = (96, 96)
FRONTAL = Pose(yaw=0.0, pitch=0.0, roll=0.0, scale=30.0)


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_mirrored_face_gives_the_flipped_permuted_points(name):
    proto = get_protocol(name)
    for i in range(6):  # random identities, expressions and poses (yaw up to 90 degrees)
        f = sample_face(7, i, size=SIZE)
        pts, vis = face_points(name, f.shape, f.expr, f.pose, SIZE)
        mpts, mvis = face_points(name, f.shape, f.expr, mirror_pose(f.pose), SIZE)
        np.testing.assert_allclose(mpts, proto.flip(pts, SIZE[1]), atol=1e-6)
        np.testing.assert_array_equal(mvis, vis[list(proto.flip_perm)])


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_points_that_flip_onto_themselves_lie_on_the_midline(name):
    proto = get_protocol(name)
    pts, _ = face_points(name, Shape(), Expression(), FRONTAL, SIZE)
    centre = (SIZE[1] - 1) / 2
    for i, j in enumerate(proto.flip_perm):
        if i == j:
            assert abs(pts[i, 0] - centre) < 1e-6, proto.point_names[i]
        else:  # a pair sits symmetrically about the midline, point i on its own side
            assert abs((pts[i, 0] - centre) + (pts[j, 0] - centre)) < 1e-6


def _groups(name: str) -> dict[str, list[int]]:
    """Semantic index groups per protocol, from the protocol's point names and groups."""
    p = get_protocol(name)
    names = p.point_names
    pick = lambda *subs: [i for i, n in enumerate(names) if all(s in n for s in subs)]  # noqa: E731
    if name in ("wflw98", "300w68"):
        g = p.groups
        return {"left_eye": list(g["left_eye"]), "right_eye": list(g["right_eye"]),
                "left_brow": list(g["left_brow"]), "right_brow": list(g["right_brow"]),
                "nose": list(g["nose_bridge"]) + list(g["nose_bottom"]),
                "mouth": list(g["outer_lip"]), "chin": [16 if name == "wflw98" else 8]}
    if name == "5pt":
        return {"left_eye": [0], "right_eye": [1], "nose": [2], "mouth": [3, 4]}
    return {"left_eye": pick("left_eye") + pick("left_pupil"), "right_eye": pick("right_eye") + pick("right_pupil"),
            "left_brow": pick("left_brow"), "right_brow": pick("right_brow"),
            "nose": pick("nose"), "mouth": pick("mouth") + pick("lip"), "chin": pick("chin")}


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_frontal_face_points_are_semantically_placed(name):
    pts, vis = face_points(name, Shape(), Expression(mouth_open=0.3), FRONTAL, SIZE)
    g = {k: pts[v] for k, v in _groups(name).items()}
    assert vis.all()
    assert (pts >= 0).all() and (pts[:, 0] <= SIZE[1] - 1).all() and (pts[:, 1] <= SIZE[0] - 1).all()
    assert g["left_eye"][:, 0].max() < g["right_eye"][:, 0].min()  # image left / right
    assert g["nose"][:, 1].mean() > g["left_eye"][:, 1].mean()  # nose below the eyes
    assert g["mouth"][:, 1].min() > g["nose"][:, 1].mean()  # mouth below the nose
    if "left_brow" in g:
        assert g["left_brow"][:, 1].max() < g["left_eye"][:, 1].min()  # brows above the eyes
        assert g["left_brow"][:, 0].mean() < g["right_brow"][:, 0].mean()
    if "chin" in g:
        assert g["chin"][:, 1].min() > g["mouth"][:, 1].max()  # chin below the mouth


def test_contour_and_lip_order_follow_the_protocol():
    pts, _ = face_points("300w68", Shape(), Expression(mouth_open=0.5), FRONTAL, SIZE)
    assert np.all(np.diff(pts[0:9, 1]) > 0) and np.all(np.diff(pts[8:17, 1]) < 0)  # jaw down to the chin 8
    assert np.all(np.diff(pts[0:17, 0]) > 0)  # left to right
    assert pts[51, 1] < pts[62, 1] < pts[66, 1] < pts[57, 1]  # outer top, inner top, inner bottom, outer bottom
    assert pts[37, 1] < pts[41, 1] and pts[38, 1] < pts[40, 1]  # upper lid above the lower lid
    wflw, _ = face_points("wflw98", Shape(), Expression(mouth_open=0.5), FRONTAL, SIZE)
    np.testing.assert_allclose(wflw[0:33:2], pts[0:17])  # WFLW's contour refines 300-W's


def test_points_are_inside_the_image_for_sampled_faces():
    for i in range(20):
        f = sample_face(0, i, size=SIZE)
        g = geometry(f.shape, f.expr, f.pose, SIZE)
        for name in PROTOCOLS:
            pts = g[name]
            assert (pts >= 0).all() and (pts[:, 0] <= SIZE[1] - 1).all() and (pts[:, 1] <= SIZE[0] - 1).all()


def test_large_yaw_hides_the_far_side():
    # positive yaw turns the nose to image right: the image-left half of the face stays in view
    pts, vis = face_points("300w68", Shape(), Expression(), replace(FRONTAL, yaw=80.0), SIZE)
    assert vis[36:42].all() and not vis[42:48].any()  # left eye seen, right eye hidden
    assert vis[0:5].all() and not vis[12:17].any()  # jaw: near side seen, far side hidden
    assert vis[30]  # the nose tip sits on the silhouette
    _, vis_left = face_points("300w68", Shape(), Expression(), replace(FRONTAL, yaw=-80.0), SIZE)
    assert not vis_left[36:42].any() and vis_left[42:48].all()
    _, vis_small = face_points("wflw98", Shape(), Expression(), replace(FRONTAL, yaw=15.0), SIZE)
    assert vis_small[33:].all() and vis_small[:24].all()  # only the far end of the contour turns away


def test_pose_moves_the_points_the_stated_way():
    base, _ = face_points("5pt", Shape(), Expression(), FRONTAL, SIZE)
    right, _ = face_points("5pt", Shape(), Expression(), replace(FRONTAL, yaw=30.0), SIZE)
    up, _ = face_points("5pt", Shape(), Expression(), replace(FRONTAL, pitch=20.0), SIZE)
    assert right[2, 0] > base[2, 0]  # nose tip moves to image right
    assert up[2, 1] < base[2, 1]  # looking up raises the nose tip in the image
    shifted, _ = face_points("5pt", Shape(), Expression(), replace(FRONTAL, shift_x=5.0, shift_y=-3.0), SIZE)
    np.testing.assert_allclose(shifted - base, np.tile([5.0, -3.0], (5, 1)))


def test_geometry_placed_equals_a_fresh_evaluation():
    f = sample_face(1, 2, size=SIZE)
    g = geometry(f.shape, f.expr, replace(f.pose, scale=10.0, shift_x=0.0, shift_y=0.0), SIZE)
    placed = g.placed(f.pose.scale, f.pose.shift_x, f.pose.shift_y, SIZE)
    fresh = geometry(f.shape, f.expr, f.pose, SIZE)
    np.testing.assert_allclose(placed.uv, fresh.uv, atol=1e-9)


def test_expression_opens_the_mouth_and_closes_the_eyes():
    closed, _ = face_points("300w68", Shape(), Expression(), FRONTAL, SIZE)
    opened, _ = face_points("300w68", Shape(), Expression(mouth_open=1.0, eyes_closed=1.0), FRONTAL, SIZE)
    assert opened[66, 1] - opened[62, 1] > closed[66, 1] - closed[62, 1] + 1.0
    assert opened[41, 1] - opened[37, 1] < closed[41, 1] - closed[37, 1]


def test_unknown_protocol_raises():
    with pytest.raises(ValueError, match="unknown protocol"):
        face_points("nope", Shape(), Expression(), FRONTAL, SIZE)


def test_the_nose_hides_the_far_inner_eye_corner_at_large_yaw():
    g = geometry(Shape(), Expression(), replace(FRONTAL, yaw=65.0), SIZE)
    s = SLICES["300w68"]
    facing_camera = g.facing[s] > -g.h[s]
    vis = g.visible("300w68")
    assert facing_camera[42] and not vis[42]  # turned towards the camera, yet behind the nose
    assert vis[30] and vis[39]  # the nose tip and the near inner corner stay visible
    assert geometry(Shape(), Expression(), FRONTAL, SIZE).visible("300w68").all()
