"""SynthFaces contact sheet: a grid of generated faces with one protocol's landmarks drawn.

Not from the paper (see head.py). Visible points are green, hidden ones (self-occluded or
under an occluder) red; each tile is captioned with its domain and yaw.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .sample import DEFAULT_DOMAINS, Domain, synthesize

__all__ = ["contact_sheet"]


def contact_sheet(
    num: int = 24, *, protocol: str = "wflw98", seed: int = 0, domains: Sequence[Domain] = DEFAULT_DOMAINS,
    size: int = 256, tile: int = 160, columns: int = 8,
) -> np.ndarray:
    """An RGB uint8 grid of ``num`` faces (tiles of ``tile`` px) with ``protocol``'s points drawn.

    >>> contact_sheet(2, size=64, tile=32, columns=2).shape
    (32, 64, 3)
    """
    if num < 1 or columns < 1:
        raise ValueError(f"num and columns must be >= 1, got {num}, {columns}")
    rows = -(-num // columns)
    sheet = np.full((rows * tile, min(num, columns) * tile, 3), 255, np.uint8)
    k = tile / size
    for i in range(num):
        f = synthesize(i, seed=seed, domains=domains, size=(size, size), protocols=[protocol])
        img = cv2.resize(f.image, (tile, tile), interpolation=cv2.INTER_AREA)
        r = max(1, int(round(tile / 110)))
        for (x, y), v in zip(f.points[protocol], f.visible[protocol]):
            c = (0, 255, 0) if v else (255, 40, 40)
            cv2.circle(img, (int(round((x + 0.5) * k - 0.5)), int(round((y + 0.5) * k - 0.5))), r, c, -1,
                       cv2.LINE_AA)
        label = f"{f.domain} {f.pose.yaw:+.0f}"
        cv2.putText(img, label, (3, tile - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.3 * tile / 128, (0, 0, 0), 2,
                    cv2.LINE_AA)
        cv2.putText(img, label, (3, tile - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.3 * tile / 128, (255, 255, 255), 1,
                    cv2.LINE_AA)
        y0, x0 = (i // columns) * tile, (i % columns) * tile
        sheet[y0:y0 + tile, x0:x0 + tile] = img
    return sheet
