"""Pose sub-domains from landmarks: sign and mirror symmetry of the yaw score, recovery of SynthFaces'
true pose domains, k-means numbering, and the flip of a sample's domain in LandmarkDataset."""

import numpy as np
import pytest

from sepbn.data import LandmarkDataset, get_protocol
from sepbn.data.pose_domains import assign_pose_domains, cluster_scores, yaw_scores
from sepbn.data.records import FaceRecord
from sepbn.data.synth.sample import DEFAULT_DOMAINS, sample_face

PROTOCOLS = ("wflw98", "300w68", "cofw29", "aflw19", "5pt")


@pytest.fixture(scope="module")
def faces():
    return [sample_face(0, i) for i in range(120)]  # 15/70/15 left / frontal / right, geometry only


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_score_follows_yaw_and_is_antisymmetric_under_mirror(faces, protocol):
    p = get_protocol(protocol)
    pts = np.stack([f.geom[p.name] for f in faces])
    yaw = np.array([f.pose.yaw for f in faces])
    s = yaw_scores(pts, p)
    assert np.corrcoef(s, yaw)[0, 1] > 0.9  # nose towards image right = positive yaw = positive score
    mirrored = np.stack([p.flip(x, 256) for x in pts])
    np.testing.assert_allclose(yaw_scores(mirrored, p), -s, atol=1e-9)
    # invariant to position, scale and roll
    c, r = np.cos(0.4), np.sin(0.4)
    moved = pts @ (2.5 * np.array([[c, -r], [r, c]])).T + np.array([30.0, -12.0])
    np.testing.assert_allclose(yaw_scores(moved, p), s, atol=1e-9)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_yaw_rule_recovers_most_synthfaces_domains(faces, protocol):
    truth = np.array([f.domain_id for f in faces])
    assert [d.name for d in DEFAULT_DOMAINS] == ["left-profile", "frontal", "right-profile"]
    recs = [FaceRecord(landmarks=f.geom[protocol], box=(0, 0, 1, 1), protocol=protocol) for f in faces]
    out = assign_pose_domains(recs)
    ids = np.array([r.attributes["domain_id"] for r in out])
    assert (ids == truth).mean() > 0.8  # 84 % on 300 faces; chance with these proportions is ~50 %
    assert all(r.attributes["domain"] == ["left-profile", "frontal", "right-profile"][r.attributes["domain_id"]]
               and r.attributes["mirror_domain_id"] == 2 - r.attributes["domain_id"] for r in out)
    assert all("domain_id" not in r.attributes for r in recs)  # inputs untouched


def test_kmeans_numbers_groups_by_score():
    s = np.array([5.0, -3.0, 0.1, -2.9, 5.2, 0.0, -0.1, 4.9])
    np.testing.assert_array_equal(cluster_scores(s, 3), [2, 0, 1, 0, 2, 1, 1, 2])
    with pytest.raises(ValueError, match="cannot form 3"):
        cluster_scores(s[:2], 3)


def test_bad_method_and_arguments_are_named(faces):
    recs = [FaceRecord(landmarks=f.geom["5pt"], box=(0, 0, 1, 1), protocol="5pt") for f in faces[:6]]
    with pytest.raises(ValueError, match="'tsne'"):
        assign_pose_domains(recs, method="tsne")
    with pytest.raises(ValueError, match="num_domains=4"):
        assign_pose_domains(recs, num_domains=4)
    assert {r.attributes["domain"] for r in assign_pose_domains(recs, method="kmeans", num_domains=2)} <= {
        "pose-0", "pose-1"}


def test_flipped_sample_takes_the_mirror_domain(tiny_faces):
    from sepbn.data.formats import read_records
    from sepbn.data.transforms import AugmentConfig

    recs = read_records("csv", tiny_faces["5pt"])
    for r in recs:
        r.attributes.update(domain_id=0, mirror_domain_id=2)
    always = AugmentConfig(flip_prob=1.0)
    never = AugmentConfig(flip_prob=0.0)
    flipped = LandmarkDataset(recs, "5pt", train=True, augment=always, image_size=32)
    kept = LandmarkDataset(recs, "5pt", train=True, augment=never, image_size=32)
    assert flipped[0]["flipped"] and flipped[0]["domain"] == 2
    assert not kept[0]["flipped"] and kept[0]["domain"] == 0
