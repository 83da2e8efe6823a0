"""FaceRecord: the one record type every annotation reader returns.

Coordinates are float 0-based pixels (see :mod:`sepbn.data.protocols` for the convention);
``box`` is ``(x_min, y_min, x_max, y_max)`` in the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

__all__ = ["FaceRecord", "read_image", "ImageReadError", "jpeg_truncated"]


class ImageReadError(OSError):
    """An image file is missing or cannot be decoded."""


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file into an RGB uint8 array (H, W, 3) in its stored pixel frame (an EXIF
    orientation tag is ignored, as the points are annotated in that frame); raise ImageReadError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    data = np.fromfile(str(path), dtype=np.uint8)
    if jpeg_truncated(data):  # some decoders return the top of a cut JPEG, grey below
        raise ImageReadError(f"{path}: truncated JPEG (no end-of-image marker after the image data)")
    # the stored pixel frame, which annotations are made in: OpenCV would otherwise apply EXIF orientation
    img = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    if img is None:
        raise ImageReadError(f"{path}: cannot decode image ({data.size} bytes)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def jpeg_truncated(data: np.ndarray | bytes) -> bool:
    """True for a JPEG file whose image data has no end-of-image marker (FFD9) after it: a file cut short.

    Walks the marker segments up to the first start-of-scan (skipping APPn payloads, where an EXIF
    thumbnail keeps its own FFD9), then looks for FFD9 anywhere after it, so data appended after the
    image (motion photos) is fine. Not a JPEG, or a layout this walk does not know: False (the decoder judges).
    """
    b = bytes(data[:3])
    if b != b"\xff\xd8\xff":
        return False
    b = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    i, n = 2, len(b)
    while i + 4 <= n:
        if b[i] != 0xFF:
            return False
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            i += 2
        elif marker == 0xDA:  # start of scan: the entropy-coded data follows
            return b.find(b"\xff\xd9", i + 2) < 0
        else:
            i += 2 + int.from_bytes(b[i + 2:i + 4], "big")
    return True  # the file ends before its image data


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
