"""Multi-process training on CPU (gloo, 2 processes): DDP == single-process training on the global
batch (synchronised BN) or on per-rank "ghost" batches (unsynchronised BN), distributed resume,
rank-0-only files, a dead or hanging rank ends the run with a message; plus the pure pieces.

The CNT data is chosen so that the 5-point head has no row on either rank in step 0 and a row on
rank 0 only in step 2 (asserted below): the unused-head and per-protocol weighting paths run.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from sepbn.config import DistConfig, OptimConfig, config_from_dict, config_to_dict
from sepbn.data.multi import ProportionalSampler
from sepbn.models import create_model
from sepbn.nn import SepBatchNorm2d, set_temperature
from sepbn.checkpoint import load_checkpoint, save_checkpoint
from sepbn.train.data import build_datasets, train_loader
from sepbn.train.distributed import (DistInfo, DistributedError, collective_failure, init_from_env, lr_scale,
                                     scaled_optim)
from sepbn.train.losses import l1_loss
from sepbn.train.loop import train
from sepbn.train.optim import build_optimizer
from sepbn.train.schedules import tau_at
from sepbn.nn.sync_bn import CPUSyncBatchNorm, convert_sync_batchnorm

WORKER = Path(__file__).with_name("ddp_worker.py")
ROOT = Path(__file__).parents[2]
STEPS, PER_RANK, SEED = 3, 4, 0
MODEL = {"arch": "vanilla", "norm": "sepbn", "width": 0.0625, "input_size": 64}


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **extra)
    return env


def _config(faces, init: Path, out_batch: int) -> dict:
    """300w68 (12 faces) + 5pt (3 faces): 16 draws per epoch, 2 steps per epoch at 8 faces a step."""
    return {
        "model": MODEL,
        "data": {"train": [{"fmt": "csv", "source": str(faces["300w68"]), "protocol": "300w68"},
                           {"fmt": "csv", "source": str(faces["5pt"]), "protocol": "5pt", "limit": 3}],
                 "epoch_size": 16},
        "optim": {"lr": 0.05},
        "schedule": {"epochs": 10, "warmup_epochs": 0, "min_lr": 0.05, "tau_start": 30.0, "tau_epochs": 2},
        "train": {"batch_size": out_batch, "seed": SEED, "max_steps": STEPS, "progress": False, "log_every": 1,
                  "init_from": str(init)},
        "dist": {"backend": "gloo", "timeout_s": 60.0},
    }


@pytest.fixture(scope="module")
def ddp_runs(tiny_faces, tmp_path_factory):
    """One torchrun launch (2 processes): OUT/sync, OUT/nosync and OUT/resume; and the config."""
    tmp = tmp_path_factory.mktemp("ddp")
    torch.manual_seed(1)
    net = create_model(protocols=["300w68", "5pt"], **MODEL)
    save_checkpoint(tmp / "init.pt", {"model": net.state_dict(), "model_args": net.model_args})
    cfg = _config(tiny_faces, tmp / "init.pt", PER_RANK)
    (tmp / "cfg.json").write_text(json.dumps(cfg))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(WORKER), "session", str(tmp / "cfg.json"), str(tmp / "out")]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "out", cfg


def _state(path: Path) -> dict:
    return load_checkpoint(path)["model"]


def _param_names() -> list[str]:
    return [n for n, _ in create_model(protocols=["300w68", "5pt"], **MODEL).named_parameters()]


def _max_diff(a: dict, b: dict, keys) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in keys)


def test_batches_hold_a_protocol_on_one_rank_only(tiny_faces):
    """The premise of the DDP tests: step 0 has no 5pt row, step 2 has 5pt rows on rank 0 only."""
    present = []
    for step in range(STEPS):
        epoch, k = divmod(step, 2)
        ranks = []
        for r in (0, 1):
            s = ProportionalSampler([12, 3], 16, seed=SEED, rank=r, world_size=2)
            s.set_epoch(epoch)
            ranks.append(any(i >= 12 for i in list(s)[k * PER_RANK:(k + 1) * PER_RANK]))
        present.append(tuple(ranks))
    assert present[0] == (False, False) and present[2] == (True, False)


def test_ddp_with_sync_bn_equals_single_process_on_the_global_batch(ddp_runs, tmp_path):
    out, cfg = ddp_runs
    single = copy.deepcopy(cfg)
    single["train"]["batch_size"] = 2 * PER_RANK
    train(config_from_dict(single), tmp_path)
    ref, got = _state(tmp_path / "last.pt"), _state(out / "sync" / "last.pt")
    init = _state(Path(cfg["train"]["init_from"]))
    floats = [k for k, v in ref.items() if v.is_floating_point()]
    assert _max_diff(ref, init, floats) > 1e-2  # the runs did move
    assert _max_diff(ref, got, floats) < 2e-5  # parameters and running statistics
    rows, ref_rows = (list(csv.DictReader(open(folder / "train.csv"))) for folder in (out / "sync", tmp_path))
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))  # rank 0 alone logs
    for got_row, ref_row in zip(rows, ref_rows):  # the logged losses are those of the global batch
        for key in ("loss", "loss/300w68", "loss/5pt"):
            assert (got_row[key] == "") == (ref_row[key] == "") and float(got_row[key] or 0) == pytest.approx(
                float(ref_row[key] or 0), abs=1e-5), key
    assert rows[0]["loss/5pt"] == ""  # no rank had a 5-point face in step 0


def _ghost_reference(cfg: dict) -> dict:
    """Single-process training where each rank's half is normalised with its own BN statistics and the
    branch losses are means over the protocol's rows of the global batch (what DDP without sync computes)."""
    c = config_from_dict(cfg)
    sets = build_datasets(c.data, c.data.train, train=True, image_size=c.model.input_size, seed=SEED)
    shards = [train_loader(sets, batch_size=PER_RANK, epoch_size=16, workers=0, seed=SEED, rank=r, world_size=2)
              for r in (0, 1)]
    ckpt = load_checkpoint(c.train.init_from)
    model = create_model(**ckpt["model_args"])
    model.load_state_dict(ckpt["model"])
    model.train()
    optimizer = build_optimizer(model, c.optim)
    step = 0
    for epoch in range(2):
        set_temperature(model, tau_at(epoch, start=30.0, end=1.0, epochs=2))
        for loader, sampler, mixed in shards:
            sampler.set_epoch(epoch)
            mixed.set_epoch(epoch)
        for halves in zip(*(loader for loader, _, _ in shards)):
            if step == STEPS:
                return model.state_dict()
            rows: dict[str, int] = {}
            for h in halves:
                for p, t in h["target"].items():
                    rows[p] = rows.get(p, 0) + len(t)
            optimizer.zero_grad(set_to_none=True)
            for h in halves:
                outputs = model(h["image"], protocols=h["protocol"])
                loss = sum(l1_loss(outputs[p], t) * len(t) / rows[p] for p, t in h["target"].items())
                loss.backward()
            optimizer.step()
            step += 1
    return model.state_dict()


def test_ddp_without_sync_bn_equals_single_process_on_ghost_batches(ddp_runs):
    out, cfg = ddp_runs
    names = _param_names()
    ref, got = _ghost_reference(cfg), _state(out / "nosync" / "last.pt")
    assert _max_diff(ref, got, names) < 2e-5
    # not the synchronised result: the two references are far apart, so either test can fail
    assert _max_diff(_state(out / "sync" / "last.pt"), got, names) > 1e-3


def test_distributed_resume_reproduces_the_uninterrupted_run(ddp_runs):
    out, _ = ddp_runs
    full, resumed = _state(out / "sync" / "last.pt"), _state(out / "resume" / "last.pt")
    assert _max_diff(full, resumed, [k for k, v in full.items() if v.is_floating_point()]) < 1e-6
    for r in (0, 1):
        losses = json.loads((out / f"rank{r}.json").read_text())
        assert losses["resume"] == pytest.approx(losses["sync"], abs=1e-6) and len(losses["sync"]) == STEPS
    assert load_checkpoint(out / "resume" / "last.pt")["world_size"] == 2


def test_sigterm_on_one_rank_stops_both_at_the_same_step_and_resume_equals_uninterrupted(tiny_faces, tmp_path):
    """Rank 1 alone gets SIGTERM in step 1 (the middle of epoch 1): the all-reduced flag stops both ranks
    after that step, rank 0 writes the mid-epoch checkpoint, and the resumed run logs the losses of the
    uninterrupted one. No warning from sepbn's code at any log step (the requires_grad conversion)."""
    torch.manual_seed(1)
    net = create_model(protocols=["300w68", "5pt"], **MODEL)
    save_checkpoint(tmp_path / "init.pt", {"model": net.state_dict(), "model_args": net.model_args})
    (tmp_path / "cfg.json").write_text(json.dumps(_config(tiny_faces, tmp_path / "init.pt", PER_RANK)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(WORKER), "preempt", str(tmp_path / "cfg.json"), str(tmp_path / "out")]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # torch's own DDP notes may appear; no Python warning may (sepbn's code raises none)
    assert "UserWarning" not in proc.stderr and "requires_grad" not in proc.stderr, proc.stderr[-3000:]
    out = tmp_path / "out"
    ranks = [json.loads((out / f"preempt{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["stopped"] == [1, "a stop signal on another rank"] and ranks[1]["stopped"] == [1, "SIGTERM"]
    for r in ranks:
        assert len(r["full"]) == STEPS and r["rest"] == pytest.approx(r["full"][1:], abs=1e-6)
    ckpt = load_checkpoint(out / "cut" / "last.pt")
    assert (ckpt["step"], ckpt["epoch"], ckpt["world_size"]) == (STEPS, 1, 2)
    logged = [[float(row["loss"]) for row in csv.DictReader(open(out / run / "train.csv"))] for run in ("full", "cut")]
    assert len(logged[0]) == STEPS and logged[1] == pytest.approx(logged[0], abs=1e-6)  # global losses, every step


def test_resume_with_another_number_of_processes_is_refused(ddp_runs, tmp_path):
    out, cfg = ddp_runs
    with pytest.raises(ValueError, match="written by a run of 2 processes; resume it with as many .got 1."):
        train(config_from_dict(cfg), tmp_path, resume=out / "resume" / "last.pt")


def _tiny_toml(faces, path: Path, timeout_s: float = 60) -> Path:
    path.write_text(
        f'[model]\nwidth = 0.0625\ninput_size = 64\n[[data.train]]\nfmt = "csv"\nsource = "{faces["5pt"]}"\n'
        f'protocol = "5pt"\n[schedule]\nepochs = 2\nwarmup_epochs = 0\n[train]\nbatch_size = 2\nprogress = false\n'
        f'[dist]\ntimeout_s = {timeout_s}\n')
    return path


def test_torchrun_sepbn_train_command(tiny_faces, tmp_path):
    """One epoch (3 steps of 2 faces per rank) with validation on rank 0 while rank 1 waits."""
    val = f'[{{"fmt": "csv", "source": "{tiny_faces["5pt"]}", "protocol": "5pt", "name": "val"}}]'
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "sepbn",
           "train", str(_tiny_toml(tiny_faces, tmp_path / "cfg.toml")), "--out", str(tmp_path / "out"),
           "--set", "train.max_steps=3", "--set", "train.log_every=1", "--set", "optim.lr_scaling=linear",
           "--set", f"data.val={val}"]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 processes (gloo) x batch 2 = effective batch 4; learning rates x2 " in proc.stdout
    assert proc.stdout.count("done: 3 steps, 1 epochs, best validation NME") == 1  # rank 0 alone reports
    ckpt = load_checkpoint(tmp_path / "out" / "last.pt")
    assert ckpt["world_size"] == 2 and ckpt["step"] == 3 and (tmp_path / "out" / "best.pt").is_file()
    with open(tmp_path / "out" / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["1", "2", "3"] and float(rows[0]["lr"]) == pytest.approx(2e-3)  # 1e-3 x 2
    with open(tmp_path / "out" / "val.csv") as f:
        assert len(list(csv.DictReader(f))) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_pair(mode: str, faces, tmp_path: Path, timeout_s: float, watch: int,
                 extra: tuple[str, ...] = ()) -> tuple[int, float, list[str]]:
    """Start ranks 0 and 1 of ``ddp_worker.py MODE`` by hand (no torchrun agent to stop the survivor);
    wait for rank ``watch`` to exit and return its exit code, the seconds it took and both stderr texts."""
    _tiny_toml(faces, tmp_path / "cfg.toml", timeout_s)
    port = str(_free_port())
    procs = []
    for r in (0, 1):
        env = _env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        with open(tmp_path / f"rank{r}.err", "w") as err:
            procs.append(subprocess.Popen([sys.executable, str(WORKER), mode, str(tmp_path / "cfg.toml"),
                                           str(tmp_path / "out"), *extra], env=env, stdout=subprocess.DEVNULL,
                                          stderr=err))
    start = time.monotonic()
    try:
        code = procs[watch].wait(timeout=timeout_s + 60)
        elapsed = time.monotonic() - start
    finally:
        for p in procs:
            p.kill() if p.poll() is None else None
            p.wait()
    return code, elapsed, [(tmp_path / f"rank{r}.err").read_text() for r in (0, 1)]


@pytest.mark.parametrize("mode,timeout_s", [("die", 20), ("hang", 10)])
def test_a_failing_rank_ends_the_run_with_a_message(tiny_faces, tmp_path, mode, timeout_s):
    """Rank 1 raises (die) or sleeps (hang) at step 1: rank 0 stops within the timeout and says why."""
    code, elapsed, err = _launch_pair(mode, tiny_faces, tmp_path, timeout_s, watch=0)
    assert code == 1, err[0][-2000:]
    assert "sepbn train [rank 0/2]: rank 0/2 lost the other ranks during a collective" in err[0], err[0][-2000:]
    assert elapsed < timeout_s + 45
    if mode == "die":
        assert "sepbn train [rank 1/2]: RuntimeError: injected failure on rank 1 at step 1" in err[1]
    else:
        assert f"dist.timeout_s={timeout_s}" in err[0]


def test_a_nan_loss_on_one_rank_with_sync_bn_is_reported_not_hung(tiny_faces, tmp_path):
    """The diagnosis must not run a synchronised-BN forward on one rank alone."""
    code, elapsed, err = _launch_pair("nan", tiny_faces, tmp_path, 20, watch=1, extra=("--set", "dist.sync_bn=true"))
    assert code == 1 and "sepbn train [rank 1/2]: loss is nan at step 1; stopping." in err[1], err[1][-2000:]
    assert elapsed < 20, err[1][-2000:]  # reported at once, not after the timeout


_LEAVE = """
import atexit, sys
from sepbn.commands.train import leave_at_once
atexit.register(lambda: print("FINALISED", file=sys.stderr))
print("buffered", end="")  # stdout must be flushed before the process ends
try:
    raise {exc}
except Exception as e:
    leave_at_once("sepbn train [rank 1/2]", e, debug=False)
"""


@pytest.mark.parametrize("exc,code,line", [
    ("ValueError('loss is nan at step 1; stopping.')", 1, "sepbn train [rank 1/2]: loss is nan at step 1; stopping."),
    ("KeyError('boom')", 1, "sepbn train [rank 1/2]: KeyError: 'boom'"),
])
def test_a_failing_rank_leaves_with_its_message_and_without_teardown(exc, code, line):
    """No interpreter finalisation (where gloo's teardown can abort the process), but the message and
    the exit status of a normal failure; a bug keeps its traceback."""
    proc = subprocess.run([sys.executable, "-c", _LEAVE.format(exc=exc)], env=_env(), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == code and proc.stdout == "buffered", proc.stderr[-2000:]
    assert line in proc.stderr and "FINALISED" not in proc.stderr
    assert ("Traceback" in proc.stderr) == exc.startswith("KeyError")


def test_ranks_waiting_for_rank_0_give_up_after_the_timeout(tiny_faces, tmp_path):
    """Rank 0 stalls while saving at the end of epoch 1 (as in a long validation): rank 1 fails at the barrier."""
    code, elapsed, err = _launch_pair("slow0", tiny_faces, tmp_path, 8, watch=1)
    assert code == 1, err[1][-2000:]
    assert ("sepbn train [rank 1/2]: rank 1/2 waited in vain for the other ranks at the end of epoch 1 "
            "(rank 0 validates and saves) (dist.timeout_s=8)") in err[1], err[1][-2000:]
    assert elapsed < 8 + 45


# --- the pure pieces -------------------------------------------------------------------------

def test_sampler_shares_are_disjoint_cover_the_epoch_and_follow_the_seed():
    def shares(seed, epoch=1):
        out = []
        for r in range(3):
            s = ProportionalSampler([7, 5], 12, seed=seed, rank=r, world_size=3)
            s.set_epoch(epoch)
            out.append(list(s))
        return out

    a = shares(3)
    whole = ProportionalSampler([7, 5], 12, seed=3)
    whole.set_epoch(1)
    assert sorted(sum(a, [])) == sorted(whole.epoch_indices().tolist()) == list(range(12))
    assert all(len(s) == 4 for s in a) and len(set(sum(a, []))) == 12  # disjoint
    assert shares(3) == a and shares(4) != a and shares(3, epoch=2) != a


def test_lr_scaling_rules():
    assert lr_scale("none", 64, 8) == 1.0 and lr_scale("linear", 64, 8) == 8.0 and lr_scale("sqrt", 32, 8) == 2.0
    with pytest.raises(ValueError, match="'cubic'"):
        lr_scale("cubic", 8, 8)
    optim, k = scaled_optim(OptimConfig(lr=1e-3, backbone_lr=1e-7, lr_scaling="linear"), batch_size=8, world_size=4)
    assert k == 4.0 and optim.lr == pytest.approx(4e-3) and optim.backbone_lr == pytest.approx(4e-7)
    # the reference is one process' batch unless set: a single process is never rescaled by default
    assert scaled_optim(OptimConfig(lr_scaling="linear"), batch_size=8, world_size=1)[1] == 1.0
    assert scaled_optim(OptimConfig(lr_scaling="linear", lr_reference_batch=8), batch_size=4, world_size=1)[1] == 0.5


def test_lr_scaling_is_validated_in_the_config():
    with pytest.raises(ValueError, match="optim.lr_scaling"):
        config_from_dict({"optim": {"lr_scaling": "cubic"}})
    assert config_to_dict(config_from_dict({"dist": {"sync_bn": True}}))["dist"]["sync_bn"] is True


def test_init_from_env_single_process_and_errors():
    info = init_from_env(DistConfig(sync_bn=True), env={})
    assert info == DistInfo(sync_bn=True) and info.is_main and info.tag == ""
    model = nn.Linear(2, 2)
    assert info.wrap(model) is model and info.branch_weights({"a": 3, "b": 1}, ["a", "b"]) == {"a": 1.0, "b": 1.0}
    info.barrier("nothing")  # no process group: returns at once
    with pytest.raises(DistributedError, match="MASTER_ADDR"):
        init_from_env(DistConfig(), env={"WORLD_SIZE": "2", "RANK": "0"})
    with pytest.raises(ValueError, match="cuda:LOCAL_RANK"):
        init_from_env(DistConfig(), "cuda:1", env={"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "x",
                                                   "MASTER_PORT": "1"})


def test_collective_failure_names_the_rank():
    info = DistInfo(rank=1, world_size=2, timeout_s=7, backend="gloo")
    msg = collective_failure(RuntimeError("[gloo/transport/tcp/pair.cc:545] Connection reset by peer"), info)
    assert msg.startswith("rank 1/2 lost the other ranks") and "dist.timeout_s=7" in msg and "reset by peer" in msg
    assert collective_failure(RuntimeError("shape mismatch"), info) is None
    assert collective_failure(RuntimeError("gloo"), DistInfo()) is None


def test_convert_sync_batchnorm_keeps_sepbn_mapping_sets():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), SepBatchNorm2d(4, num_branches=3))
    reference, before, keys = copy.deepcopy(net), dict(net.named_parameters()), list(net.state_dict())
    converted = convert_sync_batchnorm(net)
    assert converted is net and isinstance(net[1], CPUSyncBatchNorm) and type(net[2]) is SepBatchNorm2d
    assert isinstance(net[2].norm, CPUSyncBatchNorm) and not net[2].norm.affine and net[2].weight.shape == (3, 4)
    assert all(p is before[n] for n, p in net.named_parameters()) and list(net.state_dict()) == keys
    # no process group: exactly BatchNorm, in training (statistics updated alike) and in eval
    x = torch.randn(4, 3, 6, 6)
    torch.testing.assert_close(net(x), reference(x))
    torch.testing.assert_close(net.state_dict(), reference.state_dict())
    torch.testing.assert_close(net.eval()(x), reference.eval()(x))
