"""FaceRecord: the one record type every annotation reader returns.

Coordinates are float 0-based pixels (see :mod:`sepbn.data.protocols` for the convention);
``box`` is ``(x_min, y_min, x_max, y_max)`` in the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["FaceRecord", "read_image", "ImageReadError"]


class ImageReadError(OSError):
    """An image file is missing or cannot be decoded."""


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file into an RGB uint8 array (H, W, 3); raise ImageReadError naming the file."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise ImageReadError(f"{path}: cannot decode image ({data.size} bytes)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@dataclass
class FaceRecord:
    """One annotated face.

    Attributes:
        landmarks: (L, 2) float64, 0-based pixel coordinates in the original image.
        box: face box (x_min, y_min, x_max, y_max) in the same pixels.
        protocol: name of the landmark protocol (see ``sepbn.data.get_protocol``).
        image_path: the image file, or None when the image is held in memory (COFW ``.mat``).
        visible: (L,) bool visibility (False = occluded / not visible), or None if unknown.
        attributes: per-face extras (WFLW attribute flags, MTFL labels, SynthFaces domain ...).
        source: where the record came from, ``"file:line"`` or ``"file#index"``.
        image: an in-memory RGB uint8 image (COFW), else None.
    """

    landmarks: np.ndarray
    box: tuple[float, float, float, float]
    protocol: str
    image_path: str | None = None
    visible: np.ndarray | None = None
    attributes: dict = field(default_factory=dict)
    source: str = ""
    image: np.ndarray | None = field(default=None, repr=False)

    def load_image(self) -> np.ndarray:
        """The face's image as RGB uint8 (H, W, 3)."""
        if self.image is not None:
            img = self.image
            if img.ndim == 2:
                img = np.repeat(img[:, :, None], 3, axis=2)
            return np.ascontiguousarray(img, dtype=np.uint8)
        if self.image_path is None:
            raise ImageReadError(f"{self.source}: record has neither an image path nor an image")
        return read_image(self.image_path)
