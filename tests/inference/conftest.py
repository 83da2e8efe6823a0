"""A tiny trained-looking checkpoint for the inference tests (written with the training helper's saver)."""

import pytest
import torch

from sepbn.config import config_from_dict, config_to_dict
from sepbn.data.protocols import get_protocol
from sepbn.models import create_model
from sepbn.train.checkpoint import save_checkpoint, save_weights

SIZE = 64


def tiny_model(protocols=("300w68", "5pt"), norm="sepbn"):
    torch.manual_seed(0)
    return create_model("vanilla", list(protocols), norm=norm, width=1 / 16, input_size=SIZE).eval()


def checkpoint_state(model):
    config = config_from_dict({
        "model": {"arch": "vanilla", "norm": "sepbn", "width": 1 / 16, "input_size": SIZE},
        "data": {"train": [{"fmt": "300w", "source": "train", "protocol": "300w68", "box_scale": 1.25},
                           {"fmt": "mtfl", "source": "train.txt", "protocol": "5pt"}]},
    })
    return {
        "model": model.state_dict(),
        "model_args": model.model_args,
        "protocols": {p: get_protocol(p).to_dict() for p in model.output_protocols},
        "config": config_to_dict(config),
        "epoch": 1,
        "step": 1,
        "temperature": 1.0,
    }


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """Path of a two-protocol (300w68, 5pt) SepBN Vanilla CNN checkpoint, 64 px input."""
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    save_checkpoint(path, checkpoint_state(tiny_model()))
    return path


@pytest.fixture(scope="session")
def weights_folder(tmp_path_factory):
    """The same kind of model as a safetensors + config.json folder."""
    state = checkpoint_state(tiny_model())
    folder = tmp_path_factory.mktemp("weights")
    save_weights(folder, state.pop("model"), state)
    return folder


@pytest.fixture
def bruteforce_model():
    """A tiny single-head (5pt) Vanilla CNN with brute-force SepBN whose K=3 branches really differ."""
    model = tiny_model(("5pt",), norm="bruteforce")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".branches." in name:
                p.normal_(1.0, 0.5)
    return model
