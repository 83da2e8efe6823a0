"""Pose sub-domains from landmarks, for brute-force SepBN (paper section III-A, Fig. 3, Table II).

The paper splits the AFLW training set "into 3 subsets: near-frontal, left profile and right profile
face sets, based on the t-SNE visualization" of Fig. 3; it gives no rule a program can follow. Ours:

1. each face's shared 5 points (eye centres, nose tip, mouth corners; ``Protocol.to_five_points``)
   are fitted to a frontal template by a least-squares similarity transform (removes position,
   scale and roll, never mirrors);
2. the yaw score is the aligned nose tip's horizontal offset from the eyes' midpoint, in half
   inter-ocular units of the template: about 0 frontal, negative when the nose points to the image
   left, positive to the right; a mirrored face gets the negated score. On SynthFaces' 3-D model it
   grows like 0.8 sin(yaw) up to about 40 degrees and then stays near +-0.6-0.7 (the fit squeezes
   profiles), so it separates frontal from profile faces but does not measure large yaws;
3. ``method="yaw"`` (default): |score| <= ``threshold`` (0.55, about 40 degrees there) is frontal,
   beyond it left or right profile; ``method="kmeans"``: K groups by k-means in one dimension
   (deterministic start at the quantiles), closer to the paper's clusters of the data itself but
   sensitive to how imbalanced the poses are. Groups are numbered from the most negative score up.

Measured on 300 SynthFaces faces drawn 15/70/15 from yaw ranges [-90, -40], [-40, 40], [40, 90]
(every protocol gives the same scores): the yaw rule recovers the true domain of 84 % of them,
k-means of 65 % (tests/data/test_pose_domains.py checks the yaw rule).

With 3 groups they are named ``left-profile``, ``frontal``, ``right-profile`` (the SynthFaces
convention: a left profile looks to the image left) with ids 0, 1, 2. Every face gets
``attributes["domain"]``, ``["domain_id"]``, ``["yaw_score"]`` and ``["mirror_domain_id"]``
(K - 1 - id: a horizontally flipped training sample changes domain, see `LandmarkDataset`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from .protocols import Protocol, get_protocol
from .records import FaceRecord

__all__ = ["POSE_DOMAIN_NAMES", "POSE_METHODS", "yaw_scores", "cluster_scores", "assign_pose_domains"]

POSE_DOMAIN_NAMES = ("left-profile", "frontal", "right-profile")
POSE_METHODS = ("yaw", "kmeans")

# Frontal 5-point template (image-left eye, image-right eye, nose tip, left and right mouth corner);
# x in half inter-ocular units. Only its symmetry matters: the score is a horizontal offset.
_TEMPLATE = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 0.9], [-0.8, 1.7], [0.8, 1.7]])


def yaw_scores(landmarks: np.ndarray, protocol: str | Protocol) -> np.ndarray:
    """(N, L, 2) landmarks -> (N,) yaw scores (see the module doc)."""
    p = get_protocol(protocol)
    five = p.to_five_points(np.asarray(landmarks, dtype=np.float64))  # (N, 5, 2)
    if five.ndim != 3:
        raise ValueError(f"expected landmarks of shape (N, {p.num_points}, 2), got {np.shape(landmarks)}")
    # similarity fit in complex numbers: template ~ a * z + b, least squares over the 5 points
    z = five[..., 0] + 1j * five[..., 1]
    t = _TEMPLATE[:, 0] + 1j * _TEMPLATE[:, 1]
    zc = z - z.mean(axis=1, keepdims=True)
    tc = t - t.mean()
    denom = (np.abs(zc) ** 2).sum(axis=1)
    if np.any(denom <= 0):
        raise ValueError(f"face {int(np.argmin(denom))}: its five points coincide; no pose can be estimated")
    a = (np.conj(zc) * tc).sum(axis=1) / denom
    aligned = a[:, None] * zc + t.mean()
    eyes_mid = (aligned[:, 0] + aligned[:, 1]) / 2
    return (aligned[:, 2] - eyes_mid).real


def cluster_scores(scores: np.ndarray, k: int = 3, *, iterations: int = 100) -> np.ndarray:
    """1-D k-means of ``scores`` -> (N,) ids in 0..k-1, numbered by increasing cluster centre."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    if k < 1:
        raise ValueError(f"the number of domains must be >= 1, got {k}")
    if len(s) < k:
        raise ValueError(f"{len(s)} faces cannot form {k} pose domains")
    centres = np.quantile(s, (np.arange(k) + 0.5) / k)
    labels = np.zeros(len(s), dtype=np.int64)
    for _ in range(iterations):
        labels = np.abs(s[:, None] - centres[None]).argmin(axis=1)
        new = np.array([s[labels == j].mean() if np.any(labels == j) else centres[j] for j in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    order = np.argsort(centres)
    return np.argsort(order)[labels]



def assign_pose_domains(records: Sequence[FaceRecord], protocol: str | Protocol | None = None, *,
                        method: str = "yaw", threshold: float = 0.55, num_domains: int = 3) -> list[FaceRecord]:
    """Copies of ``records`` with pose-domain attributes (see the module doc); the input is not changed."""
    records = list(records)
    if not records:
        return []
    p = get_protocol(protocol or records[0].protocol)
    scores = yaw_scores(np.stack([np.asarray(r.landmarks) for r in records]), p)
    if method == "yaw":
        if num_domains != 3:
            raise ValueError(f"method 'yaw' makes 3 domains (left, frontal, right), got num_domains={num_domains}")
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        ids = np.digitize(scores, [-threshold, threshold], right=True)
    elif method == "kmeans":
        ids = cluster_scores(scores, num_domains)
    else:
        raise ValueError(f"pose-domain method must be one of {POSE_METHODS}, got {method!r}")
    names = POSE_DOMAIN_NAMES if num_domains == 3 else tuple(f"pose-{j}" for j in range(num_domains))
    return [replace(r, attributes={**r.attributes, "domain": names[d], "domain_id": int(d),
                                   "mirror_domain_id": num_domains - 1 - int(d), "yaw_score": float(s)})
            for r, d, s in zip(records, ids, scores)]
