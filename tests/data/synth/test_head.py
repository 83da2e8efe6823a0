"""SynthFaces' head: the rotation is a rotation with the stated signs, and the camera puts the head
centre at the image centre plus the shift."""

from __future__ import annotations

import numpy as np

from sepbn.data.synth.head import Pose, Shape, mirror_pose, project, rotation, surface


def test_rotation_is_orthonormal_and_yaw_turns_the_nose_to_image_right():
    R = rotation(Pose(yaw=30.0, pitch=-10.0, roll=5.0))
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(R), 1.0)
    nose = rotation(Pose(yaw=30.0)) @ np.array([0.0, 0.0, -1.0])
    assert nose[0] > 0  # positive yaw: towards +x, image right


def test_the_head_centre_projects_to_the_image_centre_plus_the_shift():
    uv, _ = project(np.zeros((1, 3)), None, Pose(yaw=40.0, shift_x=3.0, shift_y=-2.0), (64, 96))
    np.testing.assert_allclose(uv[0], [(96 - 1) / 2 + 3.0, (64 - 1) / 2 - 2.0])


def test_a_mirrored_pose_mirrors_a_surface_point():
    size = (80, 80)
    p = surface(Shape(), np.array([0.4]), np.array([0.2]))
    q = p * np.array([-1.0, 1.0, 1.0])  # its mirror on the symmetric head
    pose = Pose(yaw=25.0, roll=10.0, shift_x=4.0)
    uv, _ = project(p, None, pose, size)
    muv, _ = project(q, None, mirror_pose(pose), size)
    np.testing.assert_allclose(muv[0], [size[1] - 1 - uv[0, 0], uv[0, 1]], atol=1e-9)
