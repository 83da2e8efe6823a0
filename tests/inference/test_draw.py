"""Drawing: points land at their coordinates, the input image is not modified."""

import numpy as np

from sepbn.inference.draw import draw_faces, draw_landmarks
from sepbn.inference.predictor import FaceLandmarks


def test_points_are_drawn_where_they_are():
    img = np.zeros((40, 60, 3), np.uint8)
    out = draw_landmarks(img, np.array([[10.0, 30.0], [50.0, 5.0]]), radius=2, color=(0, 255, 0))
    assert img.max() == 0  # a copy was drawn on
    assert out[30, 10, 1] == 255 and out[5, 50, 1] == 255
    assert out[20, 30].max() == 0 and out[30, 10, 0] == 0


def test_draw_faces_draws_boxes_and_points():
    img = np.zeros((50, 50, 3), np.uint8)
    face = FaceLandmarks(np.array([[25.0, 25.0]]), np.array([10.0, 10.0, 40.0, 40.0]), 1.0, "5pt")
    out = draw_faces(img, [face], box_color=(255, 0, 0), color=(0, 0, 255))
    assert out[10, 25, 0] > 0  # top edge of the box
    assert out[25, 25, 2] > 0  # the point
    assert out[2, 2].max() == 0
