"""sepbn analyze: files written, JSON numbers for known attentions and mapping sets, BN-only checkpoints."""

import csv
import json

import pytest
import torch

from sepbn.checkpoint import save_checkpoint
from sepbn.cli import main
from sepbn.config import config_from_dict, config_to_dict
from sepbn.data.protocols import get_protocol
from sepbn.evaluation.analysis import attentive_layers
from sepbn.models import create_model


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from sepbn.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, ["300w68"], 12, seed=0, size=64)
    return root


def write_checkpoint(path, norm="sepbn", attention=None):
    """A 300w68 Vanilla CNN checkpoint. ``attention``: None (as initialised), "uniform" (zero logits) or
    "one-hot" (logits 50, 0, 0: pi = branch 0); both with K identical, non-zero mapping sets."""
    torch.manual_seed(0)
    model = create_model("vanilla", ["300w68"], norm=norm, width=1 / 16, input_size=64).eval()
    with torch.no_grad():
        for _, m in attentive_layers(model):
            if attention is None:
                continue
            m.weight.copy_(m.weight[:1].expand_as(m.weight))
            m.bias.copy_(torch.randn_like(m.bias[:1]).expand_as(m.bias))
            fc2 = m.attention.fc2
            fc2.weight.zero_()
            fc2.bias.zero_()
            if attention == "one-hot":
                fc2.bias.view(m.num_groups, m.num_branches)[:, 0] = 50.0
            m.temperature = 1.0
    cfg = config_from_dict({"model": {"arch": "vanilla", "norm": norm, "width": 1 / 16, "input_size": 64},
                            "optim": {"sepbn_weight_decay": 0.0},
                            "data": {"train": [{"fmt": "synth", "source": "x", "protocol": "300w68", "box_scale": 1.25}]}})
    save_checkpoint(path, {"model": model.state_dict(), "model_args": model.model_args,
                           "protocols": {"300w68": get_protocol("300w68").to_dict()}, "config": config_to_dict(cfg),
                           "optimizer": {"state": {}, "param_groups": [{"name": "sepbn_mapping", "weight_decay": 0.0,
                                                                          "params": []}]},
                           "epoch": 1, "step": 1, "temperature": 1.0})
    return path


def analyze(*args):
    return main(["analyze", *map(str, args)])


def test_uniform_attention_and_identical_sets(synth, tmp_path, capsys):
    ckpt = write_checkpoint(tmp_path / "uniform.pt", attention="uniform")
    out = tmp_path / "out"
    assert analyze("--checkpoint", ckpt, "--data", f"synth:{synth}", "--out", out) == 0
    for name in ("analysis.json", "entropy.png", "pi_pose.png", "pi_wflw-pose.png", "similarity.png", "tsne.png",
                 "tsne.csv"):
        assert (out / name).stat().st_size > 0, name
    result = json.loads((out / "analysis.json").read_text())
    assert result["faces"] > 4 and len(result["layers"]) == 6
    for layer in result["layers"].values():
        assert layer["entropy_normalised"] == pytest.approx(1.0)
        assert layer["branches"] == 3 and layer["mean_pi"][0] == pytest.approx([1 / 3] * 3)
        assert sum(v["faces"] for v in layer["by"]["pose"].values()) == result["faces"]
    for sims in result["similarity"].values():
        for kind in ("weight", "bias"):
            assert sims[kind]["cosine"] == pytest.approx(1.0)
            assert sims[kind]["relative_spread"] == pytest.approx(0.0, abs=1e-9)
    setup = result["training_setup"]
    assert setup["sepbn_weight_decay"] == 0.0 and setup["sepbn_weight_decay_in_optimizer_state"] == 0.0
    assert set(setup["tau"].values()) == {1.0}
    rows = list(csv.DictReader(open(out / "tsne.csv")))
    assert len(rows) == result["faces"] and result["tsne"]["colour_by"] == "pose"
    assert "H/logK" in capsys.readouterr().out


def test_one_hot_attention_two_datasets_and_face_cap(synth, tmp_path):
    ckpt = write_checkpoint(tmp_path / "onehot.pt", attention="one-hot")
    out = tmp_path / "out"
    assert analyze("--checkpoint", ckpt, "--data", f"synth:{synth}", "--data", f"synth:{synth}", "--out", out,
                   "--max-faces", 10) == 0
    result = json.loads((out / "analysis.json").read_text())
    assert result["faces"] == 10 and list(result["datasets"].values()) == [5, 5]
    for layer in result["layers"].values():
        assert layer["entropy"] == pytest.approx(0.0, abs=1e-9)
        for row in layer["mean_pi"]:
            assert row == pytest.approx([1.0, 0.0, 0.0], abs=1e-9)
        assert set(layer["by"]["dataset"]) == set(result["datasets"])
    assert (out / "pi_dataset.png").is_file() and result["tsne"]["colour_by"] == "dataset"


def test_bn_checkpoint_gets_only_the_tsne_or_a_clear_error(synth, tmp_path, capsys):
    ckpt = write_checkpoint(tmp_path / "bn.pt", norm="bn")
    out = tmp_path / "out"
    assert analyze("--checkpoint", ckpt, "--data", f"synth:{synth}", "--out", out) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no SepBN layers" in err[0]
    assert sorted(p.name for p in out.iterdir()) == ["analysis.json", "tsne.csv", "tsne.png"]
    assert json.loads((out / "analysis.json").read_text())["layers"] == {}
    assert analyze("--checkpoint", ckpt, "--data", f"synth:{synth}", "--out", tmp_path / "o2", "--no-tsne") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing to analyse" in err[0] and str(ckpt) in err[0]


def test_argument_errors_are_one_line(synth, tmp_path, capsys):
    ckpt = write_checkpoint(tmp_path / "c.pt")
    assert analyze("--checkpoint", ckpt, "--out", tmp_path / "o") == 1
    assert analyze("--checkpoint", ckpt, "--data", "nocolon", "--out", tmp_path / "o") == 1
    assert analyze("--checkpoint", ckpt, "--data", f"synth:{synth}", "--protocol", "300w68", "--protocol", "5pt",
                   "--out", tmp_path / "o") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("sepbn analyze: ") for line in err)
    assert "--data" in err[0] and "nocolon" in err[1] and "--protocol given 2 times" in err[2]
