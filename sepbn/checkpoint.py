"""Checkpoints: atomic training checkpoints, safetensors weights, and ``load_model``.

Below both training (which writes them) and inference (which reads them), so a deployment never imports the loop.

A training checkpoint (``last.pt``, ``best.pt``) is one ``torch.save`` file that loads with
``torch.load(weights_only=True)`` -- tensors and plain containers only, never pickled objects::

    {"format": "sepbn-checkpoint", "version": 1,
     "model": state_dict, "model_args": dict, "protocols": {name: Protocol.to_dict()},
     "config": dict, "optimizer": state_dict, "scheduler": {"step": int, ...},
     "epoch": int (epochs completed), "step": int (optimiser steps done),
     "rng": {"python": ..., "numpy": ..., "torch": ByteTensor, "cuda": [ByteTensor]},
     "temperature": float | None, "metrics": dict}

Weights for deployment: a folder holding ``model.safetensors`` (the state dict) and
``config.json`` (everything above except model/optimizer/rng).

Writes are atomic (:mod:`sepbn.io`): the bytes go to a temporary file in the same folder, are
flushed and fsync'ed, then ``os.replace`` swaps the file in (atomic on POSIX and Windows). A crash
or kill during the write leaves the previous checkpoint intact and at worst a stray temporary file;
a failed write (a full disk: ``torch.save`` raises ``RuntimeError`` for it) raises one
:class:`~sepbn.io.WriteError` naming the file and the space needed and free. A weights folder is
filled as a temporary folder that then replaces the old one whole.

Temperature: SepBN layers keep their softmax temperature in the state dict (buffer ``tau``), so
a loaded model evaluates with the tau it was saved with (after the paper's annealing, 1); the
value is also recorded as ``temperature`` in the metadata for readers of config.json.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from .io import atomic_folder, atomic_write, atomic_write_bytes, atomic_write_text
from .models import create_model
from .protocols import Protocol, get_protocol

__all__ = [
    "CheckpointError",
    "atomic_write",
    "save_checkpoint",
    "load_checkpoint",
    "save_weights",
    "load_model",
    "checkpoint_protocols",
    "rng_state",
    "set_rng_state",
    "state_bytes",
]

FORMAT = "sepbn-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint cannot be used: missing, unreadable, truncated, or without the requested protocol."""

    exit_code = 2  # like a usage error, from every command (train --resume, eval, predict, export)


def rng_state() -> dict:
    """Python, NumPy, torch and CUDA generator states as weights_only-loadable values."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict) -> None:
    """Restore the states saved by :func:`rng_state` (also when the checkpoint was mapped to a GPU)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state({
        "bit_generator": n["bit_generator"],
        "state": {"key": n["key"].cpu().numpy().astype(np.uint32), "pos": n["pos"]},
        "has_gauss": n["has_gauss"],
        "gauss": n["gauss"],
    })
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def state_bytes(obj) -> int:
    """Bytes of the tensors in a (nested) checkpoint dict: about the size of its file."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(state_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(state_bytes(v) for v in obj)
    return 0


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Atomically write a training checkpoint dict (see the module docstring for its keys)."""
    state = {"format": FORMAT, "version": VERSION, **state}
    # torch.save reports a failed write (ENOSPC) as RuntimeError("... unexpected pos ...")
    return atomic_write(path, lambda f: torch.save(state, f), needed=state_bytes(state), raises=(RuntimeError,))


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    """Read a training checkpoint with ``weights_only=True``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated or foreign files raise many different errors, some of many lines
        detail = (str(e).strip().splitlines() or [""])[0]
        detail = detail if len(detail) <= 120 else detail[:117] + "..."
        raise CheckpointError(f"{path}: not a readable sepbn checkpoint ({type(e).__name__}: {detail})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
        raise CheckpointError(f"{path}: not a sepbn checkpoint (missing 'model' / 'model_args')")
    return ckpt


def _meta(ckpt: dict) -> dict:
    return {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "rng")}


def save_weights(folder: str | Path, state_dict: dict, meta: dict) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (``meta`` must be JSON-able) into ``folder``."""
    folder = Path(folder)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    data, text = st_save(tensors), json.dumps(meta, indent=2, default=_json_default)
    with atomic_folder(folder, needed=len(data) + len(text)) as tmp:  # weights and config of one model
        atomic_write_bytes(tmp / "model.safetensors", data)
        atomic_write_text(tmp / "config.json", text)
    return folder


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, (np.generic, np.ndarray)):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def load_model(path: str | Path, map_location: Any = "cpu"):
    """Rebuild the trained ``LandmarkNet`` in eval mode: ``(model, meta)``.

    ``path`` is a training checkpoint (``.pt``) or a folder with ``model.safetensors`` and
    ``config.json``. ``meta`` holds ``model_args``, ``protocols``, ``config``, ``epoch``,
    ``step``, ``metrics`` and ``temperature``.
    """
    path = Path(path)
    if path.is_dir():
        cfg_file, weights = path / "config.json", path / "model.safetensors"
        for f in (cfg_file, weights):
            if not f.is_file():
                raise CheckpointError(f"{path}: weights folder lacks {f.name}")
        meta = json.loads(cfg_file.read_text(encoding="utf-8"))
        device = map_location if isinstance(map_location, str) else "cpu"
        try:
            state = load_file(str(weights), device=device)
        except Exception as e:
            raise CheckpointError(f"{weights}: unreadable safetensors file ({e})") from None
    else:
        ckpt = load_checkpoint(path, map_location)
        state, meta = ckpt["model"], _meta(ckpt)
    model = create_model(**meta["model_args"])
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match model_args {meta['model_args']}: {e}") from None
    return model.eval(), meta


def checkpoint_protocols(meta: dict) -> dict[str, Protocol]:
    """The protocol of every head, in head order, from the definitions the checkpoint stores (so a
    user's protocol needs no file); checkpoints without them name built-in protocols."""
    stored = meta.get("protocols") or {}
    out = {}
    for name in meta["model_args"]["protocols"]:
        try:
            out[name] = get_protocol(stored.get(name, name))
        except ValueError as e:
            raise CheckpointError(f"checkpoint lacks the definition of protocol {name!r} ({e})") from None
    return out
