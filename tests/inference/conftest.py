"""A tiny trained-looking checkpoint for the inference tests (written with the training helper's saver)."""

import pytest
import torch

from sepbn.config import config_from_dict, config_to_dict
from sepbn.data.protocols import get_protocol
from sepbn.models import create_model
from sepbn.checkpoint import save_checkpoint, save_weights

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


YUNET_BOX_WH = (40.0, 48.0)


def write_fake_yunet(path, box_wh=YUNET_BOX_WH):
    """An ONNX file with YuNet's interface (input ``input``; outputs cls/obj/bbox/kps at strides 8, 16,
    32, flattened (1, cells, k) as OpenCV's FaceDetectorYN decodes them) but a transparent rule: a
    stride-32 cell's score is its mean brightness / 255, every cell predicts a box of ``box_wh`` centred
    on itself and fixed eye/nose/mouth offsets; strides 8 and 16 never fire. No real weights needed."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, outputs = [], [], []

    def const(name, value, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def channels(zeros, name, values):  # (1, k, h, w) filled with one constant per channel
        parts = []
        for k, v in enumerate(values):
            nodes.append(helper.make_node("Add", [zeros, const(f"{name}_c{k}", v)], [f"{name}_{k}"]))
            parts.append(f"{name}_{k}")
        nodes.append(helper.make_node("Concat", parts, [name], axis=1))
        return name

    nodes.append(helper.make_node("ReduceMean", ["input"], ["gray"], axes=[1], keepdims=1))
    const("inv255", 1 / 255.0), const("zero", 0.0), const("one", 1.0)
    maps = {}
    for s in (8, 16, 32):
        nodes += [helper.make_node("AveragePool", ["gray"], [f"pool{s}"], kernel_shape=[s, s], strides=[s, s]),
                  helper.make_node("Mul", [f"pool{s}", const(f"gain{s}", 1 / 255.0 if s == 32 else 0.0)], [f"m{s}"]),
                  helper.make_node("Clip", [f"m{s}", "zero", "one"], [f"score{s}"]),
                  helper.make_node("Mul", [f"pool{s}", "zero"], [f"zeros{s}"])]
        box = [0.5, 0.5, float(np.log(box_wh[0] / s)), float(np.log(box_wh[1] / s))]
        kps = [0.3, 0.4, 0.7, 0.4, 0.5, 0.55, 0.35, 0.75, 0.65, 0.75]
        maps[s] = {"cls": f"score{s}", "obj": f"score{s}", "bbox": channels(f"zeros{s}", f"bb{s}", box),
                   "kps": channels(f"zeros{s}", f"kp{s}", kps)}
    for kind, width in (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10)):
        for s in (8, 16, 32):
            name = f"{kind}_{s}"
            nodes += [helper.make_node("Transpose", [maps[s][kind]], [f"{name}_t"], perm=[0, 2, 3, 1]),
                      helper.make_node("Reshape", [f"{name}_t", const(f"{name}_shape", [1, -1, width], np.int64)],
                                       [name])]
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, f"n{s}", width]))
    graph = helper.make_graph(nodes, "fake_yunet",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "h", "w"])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def fake_yunet(tmp_path_factory):
    return write_fake_yunet(tmp_path_factory.mktemp("yunet") / "fake_yunet.onnx")
