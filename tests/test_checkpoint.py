"""Checkpoints: weights_only round trip, RNG states, safetensors folder, atomic writes under failure."""

import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from sepbn.models import create_model
from sepbn.nn import sepbn_modules, set_temperature
from filelimit import run_with_file_limit
from sepbn import checkpoint as ck
from sepbn.io import WriteError


def _net():
    torch.manual_seed(0)
    return create_model("vanilla", ["5pt"], norm="sepbn", width=1 / 16, input_size=64)


def _state(net, **extra):
    return {"model": net.state_dict(), "model_args": net.model_args, "protocols": {}, "config": {},
            "epoch": 1, "step": 3, "rng": ck.rng_state(), "temperature": 2.5, **extra}


def test_rng_state_round_trip():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    saved = ck.rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    ck.set_rng_state(saved)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_checkpoint_loads_weights_only_and_rebuilds_model(tmp_path):
    net = _net()
    set_temperature(net, 2.5)  # travels in the state dict (buffer tau)
    path = ck.save_checkpoint(tmp_path / "last.pt", _state(net))
    raw = torch.load(path, weights_only=True)  # no pickled objects inside
    assert raw["format"] == "sepbn-checkpoint" and raw["step"] == 3
    ck.set_rng_state(raw["rng"])
    model, meta = ck.load_model(path)
    assert not model.training and meta["epoch"] == 1 and "model" not in meta
    for k, v in net.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert {m.temperature for _, m in sepbn_modules(model)} == {2.5}


def test_safetensors_folder_gives_same_predictions(tmp_path):
    net = _net().eval()
    ck.save_weights(tmp_path / "w", net.state_dict(), {"model_args": net.model_args, "temperature": 1.0})
    assert {p.name for p in (tmp_path / "w").iterdir()} == {"model.safetensors", "config.json"}
    model, meta = ck.load_model(tmp_path / "w")
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(model(x)["5pt"], net(x)["5pt"])


def test_corrupt_checkpoint_message_names_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        ck.load_model(bad)


def test_failure_during_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    net = _net()
    path = ck.save_checkpoint(tmp_path / "last.pt", _state(net))
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ck.save_checkpoint(path, _state(net, step=4))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # temporary file removed
    monkeypatch.undo()
    assert ck.load_model(path)[1]["step"] == 3


def test_killed_writer_leaves_previous_checkpoint_loadable(tmp_path):
    net = _net()
    path = ck.save_checkpoint(tmp_path / "last.pt", _state(net))
    # A child process starts overwriting the checkpoint and hangs before the rename; we kill it.
    script = textwrap.dedent(f"""
        import os, time, torch
        from sepbn import checkpoint as ck
        def stuck(fd):
            open({str(tmp_path / 'ready')!r}, 'w').close()
            time.sleep(60)
        os.fsync = stuck  # every fsync of the write hangs: the bytes are written, the rename not done
        ck.save_checkpoint({str(path)!r}, {{"model": {{"w": torch.zeros(1000)}}, "model_args": {{}}}})
    """)
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 60
        while not (tmp_path / "ready").exists():
            assert child.poll() is None and time.time() < deadline, "writer did not start"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert any(p.name.startswith(".last.pt.tmp") for p in tmp_path.iterdir())  # the interrupted write
    model, meta = ck.load_model(path)
    assert meta["step"] == 3


def test_full_disk_in_torch_writer_is_one_line_and_keeps_previous_checkpoint(tmp_path):
    """torch.save fails a write with RuntimeError('unexpected pos'), not OSError: still one WriteError line."""
    path = ck.save_checkpoint(tmp_path / "last.pt", {"model": {"w": torch.zeros(10)}, "model_args": {}})
    before = path.read_bytes()
    code = textwrap.dedent(f"""
        import torch
        from sepbn import checkpoint as ck
        from sepbn.io import WriteError
        try:
            ck.save_checkpoint({str(path)!r}, {{"model": {{"w": torch.zeros(100_000)}}, "model_args": {{}}}})
        except WriteError as e:
            print("WriteError:", e)
    """)
    res = run_with_file_limit(code, limit=64 * 1024)
    assert res.returncode == 0, res.stderr
    line = res.stdout.strip()
    assert line.startswith(f"WriteError: {path}: cannot write it (") and "needs about 390.6 KiB" in line
    assert "previous version is intact" in line and len(line.splitlines()) == 1
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_weights_folder_write_failure_keeps_the_previous_folder(tmp_path, monkeypatch):
    net = _net()
    folder = ck.save_weights(tmp_path / "best", net.state_dict(), {"model_args": net.model_args, "step": 1})
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    real = ck.atomic_write_text

    def full(path, text, *a, **k):  # the weights got through, config.json does not
        with pytest.MonkeyPatch.context() as m:
            m.setattr("builtins.open", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
            return real(path, text, *a, **k)

    monkeypatch.setattr(ck, "atomic_write_text", full)
    with pytest.raises(WriteError, match=r"best: cannot write it \(no space left on the device; needs about .*"
                                         r"previous version is intact"):
        ck.save_weights(folder, net.state_dict(), {"model_args": net.model_args, "step": 2})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["best"]


def test_a_checkpoint_without_its_protocol_definition_is_a_checkpoint_error():
    from sepbn.checkpoint import CheckpointError, checkpoint_protocols

    meta = {"model_args": {"protocols": ["5pt", "tri3"]}, "protocols": {}}
    with pytest.raises(CheckpointError, match="checkpoint lacks the definition of protocol 'tri3'") as info:
        checkpoint_protocols(meta)
    assert info.value.exit_code == 2
    assert list(checkpoint_protocols({"model_args": {"protocols": ["5pt"]}})) == ["5pt"]  # built-in names resolve
