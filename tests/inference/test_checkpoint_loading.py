"""LandmarkDetector.from_checkpoint: protocols, crop settings, clear errors for bad files."""

import numpy as np
import pytest
import torch

from sepbn.inference.predictor import CheckpointError, CropSpec, LandmarkDetector


def test_checkpoint_gives_the_crop_and_protocol_of_its_training_data(checkpoint):
    det = LandmarkDetector.from_checkpoint(checkpoint, protocol="300w")
    assert det.protocol.name == "300w68" and len(det.point_names) == 68
    assert det.crop == CropSpec(64, 1.25, "landmarks")
    faces = det.predict(np.zeros((100, 120, 3), np.uint8), [[10, 20, 60, 80]])
    assert faces[0].landmarks.shape == (68, 2)
    # the prediction is the network's, mapped back through the inverse crop
    net = det.model
    x = torch.from_numpy(det.crops(np.zeros((100, 120, 3), np.uint8), np.array([[10, 20, 60, 80.0]]))[0])
    with torch.no_grad():
        u = net(x, "300w68")["300w68"][0].numpy()
    side = 60 * 1.25  # max(w, h) * box_scale, centred on (35, 50)
    np.testing.assert_allclose(faces[0].landmarks, np.array([35.0, 50.0]) + u * side / 2, atol=1e-4)


def test_safetensors_folder_loads_too(weights_folder):
    det = LandmarkDetector.from_checkpoint(weights_folder, protocol="5pt")
    assert det.protocol.name == "5pt"
    assert det.crop == CropSpec(64, 1.0, "mtfl")  # MTFL: a square made from the five points


def test_several_protocols_need_a_choice(checkpoint):
    with pytest.raises(CheckpointError, match=r"several protocols \['300w68', '5pt'\]"):
        LandmarkDetector.from_checkpoint(checkpoint)


def test_protocol_mismatch_lists_the_checkpoint_protocols(checkpoint):
    with pytest.raises(CheckpointError) as e:
        LandmarkDetector.from_checkpoint(checkpoint, protocol="wflw98")
    msg = str(e.value)
    assert str(checkpoint) in msg and "'wflw98'" in msg and "['300w68', '5pt']" in msg


def test_truncated_checkpoint_names_the_file(checkpoint, tmp_path):
    cut = tmp_path / "cut.pt"
    data = checkpoint.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"checkpoint {cut} is truncated or corrupt"):
        LandmarkDetector.from_checkpoint(cut, protocol="5pt")


def test_corrupt_safetensors_folder_names_the_file(weights_folder, tmp_path):
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "config.json").write_text((weights_folder / "config.json").read_text())
    (folder / "model.safetensors").write_bytes((weights_folder / "model.safetensors").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        LandmarkDetector.from_checkpoint(folder)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        LandmarkDetector.from_checkpoint(tmp_path / "nope.pt")
