"""LandmarkDataset: FaceRecords -> network inputs and targets by the paper's pipeline (section V-A).

Each item is the face cropped from its box (made square, enlarged by ``box_scale``) and resized
to ``image_size`` (128 in the paper); in training, the augmentation of
:mod:`sepbn.data.transforms` is drawn once per sample and composed into the same single matrix.

Item (a dict of numpy arrays and scalars):

=============  =====================  ===================================================
``image``      float32 (3, S, S)      RGB, ``(x / 255 - IMAGENET_MEAN) / IMAGENET_STD``
``target``     float32 (L, 2)         crop points, normalised by ``encode_points``
``visible``    bool (L,)              all True when the format has no visibility
``matrix``     float32 (2, 3)         original image -> crop
``inverse``    float32 (2, 3)         crop -> original image
``landmarks``  float32 (L, 2)         ground truth in original pixels, in ``target`` order
``box``        float32 (4,)           the record's face box (x_min, y_min, x_max, y_max)
``domain``     int                    ``record.attributes["domain_id"]``, -1 if absent; for a
                                      mirrored sample ``["mirror_domain_id"]`` when present
``flipped``    bool                   whether the sample was mirrored
``protocol``   str                    the protocol's name
``index``      int                    position in ``records``
=============  =====================  ===================================================

A mirrored sample reorders its points by the protocol's flip permutation, and ``landmarks``
with them, so ``apply_affine(inverse, decode_points(target, S)) == landmarks`` always holds.

Box and enlargement: ``box_scale=1.0`` crops the record's box made square (side
``max(w, h)``): the paper's "cropped according to the official bounding box" for WFLW, COFW,
AFLW and WIDER FACE. Formats without an official box carry the tight landmark box; give them
context with ``box_scale`` (docs/data.md lists the choice per dataset).

Reproducibility: a sample's augmentation comes from a numpy Generator seeded by
``(seed, epoch, index)``, so it does not depend on the DataLoader's worker count or order.
Call ``set_epoch(e)`` before each epoch (DataLoader workers get a fresh copy of the dataset
each epoch unless ``persistent_workers=True``; with persistent workers the epoch does not
reach them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .cache import FaceCache, ensure_cache
from ..protocols import Protocol, get_protocol
from .records import FaceRecord
from .transforms import (
    AugmentConfig,
    augment_matrix,
    compose_affine,
    crop_matrix,
    encode_points,
    invert_affine,
    normalize_image,
    photometric,
    sample_augment,
    warp_image,
)

__all__ = ["LandmarkDataset"]


class LandmarkDataset:
    """Faces of one protocol, cropped and (with ``train=True``) augmented.

    Args:
        records: the faces; every record must use ``protocol``.
        protocol: the :class:`Protocol` (a built-in name is resolved once by ``get_protocol``).
        train: draw an augmentation per sample (``augment``, default the paper's).
        image_size: S, the side of the square crop (128 in the paper).
        augment: an :class:`AugmentConfig` used when ``train``; None means ``AugmentConfig()``.
        box_scale: enlargement of the square face box (1.0: the box itself).
        cache: a :class:`FaceCache`, or a directory that :func:`ensure_cache` opens or builds.
        seed: base seed of the augmentation draws.
    """

    def __init__(
        self,
        records: Sequence[FaceRecord],
        protocol: str | Protocol,
        *,
        train: bool = False,
        image_size: int = 128,
        augment: AugmentConfig | None = None,
        box_scale: float = 1.0,
        cache: FaceCache | str | Path | None = None,
        seed: int = 0,
    ) -> None:
        self.protocol = get_protocol(protocol)
        self.records = list(records)
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size}")
        if not box_scale > 0:
            raise ValueError(f"box_scale must be > 0, got {box_scale}")
        L = self.protocol.num_points
        for i, rec in enumerate(self.records):
            if not self.protocol.answers_to(rec.protocol):
                raise ValueError(f"{rec.source or i}: record has protocol {rec.protocol!r}, "
                                 f"the dataset {self.protocol.name!r}")
            if np.shape(rec.landmarks) != (L, 2):
                raise ValueError(f"{rec.source or i}: landmarks of shape {np.shape(rec.landmarks)}, "
                                 f"protocol {self.protocol.name!r} needs ({L}, 2)")
        self.train = bool(train)
        self.image_size = int(image_size)
        if augment is not None and not self.train:
            raise ValueError("augment was given but train=False: evaluation crops are never augmented")
        self.augment = (augment or AugmentConfig()) if self.train else None
        self.box_scale = float(box_scale)
        if cache is not None and not isinstance(cache, FaceCache):
            cache = ensure_cache(self.records, cache)
        if cache is not None and not cache.matches(self.records):
            raise ValueError(f"{cache!r} was not built from these records; rebuild it (sepbn cache)")
        if cache is not None and self.box_scale > cache.margin:
            raise ValueError(f"box_scale {self.box_scale} exceeds the cache margin {cache.margin}: "
                             "the crop would leave the cached region; build the cache with a larger margin")
        self.cache = cache
        self.seed = int(seed)
        self.epoch = 0
        self._perm = np.asarray(self.protocol.flip_perm)

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (see the module docstring)."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        """The Generator of sample ``index`` in the current epoch."""
        return np.random.default_rng((self.seed, self.epoch, int(index)))

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} faces")
        index = int(index) % len(self)
        rec = self.records[index]
        S = self.image_size
        rng = params = None
        if self.augment is not None:
            rng = self.rng(index)
            params = sample_augment(self.augment, rng)
            matrix = augment_matrix(rec.box, S, self.box_scale, params)
        else:
            matrix = crop_matrix(rec.box, S, self.box_scale)
        if self.cache is not None:  # one warp from the cached crop: M C^-1
            crop = warp_image(self.cache.crop(index), compose_affine(matrix, self.cache.inverse(index)), S)
        else:
            crop = warp_image(rec.load_image(), matrix, S)
        if params is not None:
            crop = photometric(crop, params, rng)

        landmarks = np.asarray(rec.landmarks, dtype=np.float64)
        visible = np.ones(len(landmarks), bool) if rec.visible is None else np.asarray(rec.visible, bool)
        flipped = params is not None and params.flip
        if flipped:
            landmarks, visible = landmarks[self._perm], visible[self._perm]
        points = landmarks @ matrix[:, :2].T + matrix[:, 2]
        return {
            "image": normalize_image(crop),
            "target": encode_points(points, S).astype(np.float32),
            "visible": visible,
            "matrix": matrix.astype(np.float32),
            "inverse": invert_affine(matrix).astype(np.float32),
            "landmarks": landmarks.astype(np.float32),
            "box": np.asarray(rec.box, dtype=np.float32),
            "domain": self._domain(rec, flipped),
            "flipped": bool(flipped),
            "protocol": self.protocol.name,
            "index": index,
        }

    @staticmethod
    def _domain(rec: FaceRecord, flipped: bool) -> int:
        domain = int(rec.attributes.get("domain_id", -1))
        # a mirrored left profile is a right profile: brute-force SepBN must route it as one
        return int(rec.attributes.get("mirror_domain_id", domain)) if flipped else domain

    def __repr__(self) -> str:
        return (f"LandmarkDataset({self.protocol.name}, faces={len(self)}, train={self.train}, "
                f"image_size={self.image_size}, box_scale={self.box_scale}, cache={self.cache!r})")
