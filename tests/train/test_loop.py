"""The training loop on tiny data: single-dataset and CNT steps, resume == uninterrupted, stage 2, NaN report."""

import csv

import pytest
import torch

from sepbn.config import load_config
from sepbn.nn import sepbn_modules
from sepbn.checkpoint import load_checkpoint, save_checkpoint
from sepbn.train.loop import train
from sepbn.train.nonfinite import NonFiniteLossError
from sepbn.train.schedules import tau_at

BASE = ["model.width=0.0625", "model.input_size=64", "train.batch_size=4", "train.progress=false",
        "train.log_every=1", "schedule.epochs=3", "schedule.warmup_epochs=1", "schedule.tau_epochs=2"]


def _data(faces, *protos, val=None):
    items = ",".join(f'{{"fmt": "csv", "source": "{faces[p]}", "protocol": "{p}"}}' for p in protos)
    out = [f"data.train=[{items}]"]
    if val:
        out.append(f'data.val=[{{"fmt": "csv", "source": "{faces[val]}", "protocol": "{val}", "name": "val"}}]')
    return out


def _cfg(faces, *protos, extra=(), val=None):
    return load_config(None, BASE + _data(faces, *protos, val=val) + list(extra))


def test_two_steps_single_dataset(tiny_faces, tmp_path):
    cfg = _cfg(tiny_faces, "300w68", extra=["train.max_steps=2", "model.norm=bn"])
    train(cfg, tmp_path)
    res = train(cfg, tmp_path)  # a new run in the same folder starts its logs afresh
    assert len(res.losses) == 2 and all(torch.isfinite(torch.tensor(res.losses)))
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["step"] == 2 and list(ckpt["protocols"]) == ["300w68"]
    assert ckpt["config"]["model"]["norm"] == "bn"
    with open(tmp_path / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2] and float(rows[0]["loss"]) == pytest.approx(res.losses[0])
    assert (tmp_path / "final" / "model.safetensors").is_file()


def test_two_steps_cnt_routes_each_branch(tiny_faces, tmp_path):
    cfg = _cfg(tiny_faces, "300w68", "5pt", extra=["train.max_steps=2", "model.norm=sepbn"])
    torch.manual_seed(cfg.train.seed)
    res = train(cfg, tmp_path)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert list(ckpt["protocols"]) == ["300w68", "5pt"] and len(res.losses) == 2
    with open(tmp_path / "train.csv") as f:
        rows = list(csv.DictReader(f))
    for r in rows:  # the step loss is the sum of the branch losses present in the batch
        parts = [float(r[k]) for k in ("loss/300w68", "loss/5pt") if r[k] != ""]
        assert float(r["loss"]) == pytest.approx(sum(parts), rel=1e-5)
    taus = {float(v) for k, v in ckpt["model"].items() if k.endswith(".tau")}
    assert taus == {tau_at(0, start=30.0, end=1.0, epochs=2)}  # set on every SepBN layer


def test_resume_reproduces_uninterrupted_losses(tiny_faces, tmp_path):
    extra = ["model.norm=sepbn", "data.augment=true"]
    full = train(_cfg(tiny_faces, "300w68", "5pt", extra=extra), tmp_path / "full")
    steps_per_epoch = len(full.losses) // 3
    part = train(_cfg(tiny_faces, "300w68", "5pt", extra=extra + [f"train.max_steps={steps_per_epoch + 2}"]),
                 tmp_path / "cut")  # stops in the middle of epoch 2
    with open(tmp_path / "cut" / "train.csv", "a") as f:  # what a run killed after its checkpoint leaves
        f.write(f"{steps_per_epoch + 3},2,9.9\r\n{steps_per_epoch + 4},2,")
    rest = train(_cfg(tiny_faces, "300w68", "5pt", extra=extra), tmp_path / "cut", resume=True)
    assert len(part.losses) + len(rest.losses) == len(full.losses)
    assert part.losses + rest.losses == pytest.approx(full.losses, abs=1e-6)
    with open(tmp_path / "cut" / "train.csv") as f:  # the resumed run continues the log
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(1, len(full.losses) + 1))
    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    for k, v in a["model"].items():
        assert torch.allclose(v.float(), b["model"][k].float(), atol=1e-6), k


def test_best_checkpoint_follows_validation(tiny_faces, tmp_path):
    res = train(_cfg(tiny_faces, "5pt", val="5pt", extra=["model.norm=bn", "schedule.epochs=2"]), tmp_path)
    assert len(res.val) == 2
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["best_nme"] == pytest.approx(min(v["nme"] for v in res.val)) == pytest.approx(res.best_nme)
    assert (tmp_path / "best" / "config.json").is_file()


def test_stage2_keeps_one_branch_and_freezes_backbone_lr(tiny_faces, tmp_path):
    train(_cfg(tiny_faces, "300w68", "5pt", extra=["model.norm=sepbn", "train.max_steps=2"]), tmp_path / "s1")
    s1 = load_checkpoint(tmp_path / "s1" / "last.pt")
    cfg2 = _cfg(tiny_faces, "5pt", extra=[f"train.init_from={tmp_path / 's1' / 'last.pt'}", "optim.backbone_lr=1e-7",
                                          "train.max_steps=2", "optim.lr=0.01", "schedule.warmup_epochs=0"])
    train(cfg2, tmp_path / "s2")
    s2 = load_checkpoint(tmp_path / "s2" / "last.pt")
    assert list(s2["protocols"]) == ["5pt"] and s2["model_args"]["adapter"] is True
    assert not any(k.startswith("heads.300w68") for k in s2["model"])
    lrs = {g["name"]: g["lr"] for g in s2["optimizer"]["param_groups"]}
    assert lrs["backbone"] == lrs["sepbn_mapping"] == lrs["sepbn_attention"] == 1e-7 and lrs["heads"] > 1e-3
    moved = {k: (s2["model"][k] - s1["model"][k]).abs().max().item()
             for k in s2["model"] if s2["model"][k].is_floating_point() and "running" not in k and ".tau" not in k}
    assert max(v for k, v in moved.items() if k.startswith("backbone.")) < 1e-5
    assert max(v for k, v in moved.items() if k.startswith("heads.5pt")) > 1e-5


def test_nan_loss_names_step_and_layer(tiny_faces, tmp_path):
    train(_cfg(tiny_faces, "5pt", extra=["model.norm=bn", "train.max_steps=1"]), tmp_path / "ok")
    ckpt = load_checkpoint(tmp_path / "ok" / "last.pt")
    ckpt["model"]["backbone.blocks.2.0.weight"][0, 0, 0, 0] = float("inf")
    save_checkpoint(tmp_path / "bad.pt", ckpt)
    cfg = _cfg(tiny_faces, "5pt", extra=[f"train.init_from={tmp_path / 'bad.pt'}"])
    with pytest.raises(NonFiniteLossError) as e:
        train(cfg, tmp_path / "nan")
    msg = str(e.value)
    assert "step 0" in msg and "backbone.blocks.2.1.running_mean" in msg and "backbone.blocks.2.0 [Conv2d]" in msg


def test_brute_force_sepbn_routes_by_domain_label(tiny_faces, tmp_path):
    res = train(_cfg(tiny_faces, "5pt", extra=["model.norm=bruteforce", "train.max_steps=2"]), tmp_path)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    counts = [v.item() for k, v in ckpt["model"].items() if k.startswith("backbone.blocks.0.") and
              k.endswith("num_batches_tracked")]
    assert len(res.losses) == 2 and sorted(counts) == [0, 2, 2]  # faces of domains 0 and 1; branch 2 unused


def test_tensorboard_log_when_enabled(tiny_faces, tmp_path):
    train(_cfg(tiny_faces, "5pt", extra=["model.norm=bn", "train.max_steps=1", "train.tensorboard=true"]), tmp_path)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
