"""What ``--resume`` continues from, and whether the new config may continue it.

:func:`resume_checkpoint` finds the checkpoint (``OUT/last.pt`` by default); when it is missing but the
folder holds ``best.pt`` or weights folders, the error says which file to resume from instead.

:func:`check_resume_config` compares the config stored in the checkpoint with the new one, key by key
(dotted keys as ``--set`` takes them). A change of the network's shapes (any ``model.*`` key, or the
set of training protocols, one head each) is refused: the weights cannot load. Any other change
(``train.batch_size`` changes the step count, ``optim.lr`` the schedule) alters the result, so it must
be named with ``--allow-changed KEY,...``; the accepted changes are returned for the run's log.
``train.max_steps``, ``train.progress`` and ``train.tensorboard`` only say how long and how visibly to run.
Both checks run before anything is written into the run folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..checkpoint import load_checkpoint
from ..config import Config, ConfigError, config_from_dict, config_to_dict
from ..protocols import spec_name

__all__ = ["resume_checkpoint", "config_changes", "check_resume_config", "FREE_KEYS"]

FREE_KEYS = ("train.max_steps", "train.progress", "train.tensorboard")  # how long / how visibly, not what


def resume_checkpoint(out: Path, resume: bool | str | Path) -> tuple[Path, dict]:
    """``(path, checkpoint)`` to resume from: ``resume`` itself, or ``out/last.pt`` when it is ``True``."""
    if not isinstance(resume, bool):
        return Path(resume), load_checkpoint(resume, map_location="cpu")
    path = out / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}; {_alternatives(out)}")
    return path, load_checkpoint(path, map_location="cpu")


def _alternatives(out: Path) -> str:
    if (out / "best.pt").is_file():
        return f"the run's best epoch is in {out / 'best.pt'}: resume from it with --resume {out / 'best.pt'}"
    folders = [f.name for f in (out / "final", out / "best") if (f / "model.safetensors").is_file()]
    if folders:
        return (f"{out} holds only the weights folder(s) {', '.join(folders)}/ (no optimiser state): "
                "the run cannot be resumed; start a new one")
    return "nothing to resume in that folder (drop --resume to start the run)"


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        items = d.items()
    elif isinstance(d, list):
        items = ((str(i), v) for i, v in enumerate(d))
    else:
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in items:
        key = f"{prefix}.{k}" if prefix else str(k)
        sub = _flatten(v, key)
        out.update(sub if sub else {key: v})  # an empty table is a value of its own
    return out


def config_changes(stored: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (stored value, new value)}`` of every key whose value differs (``None``: absent)."""
    a, b = _flatten(stored), _flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _heads(cfg: dict) -> list[str]:
    # a user's protocol is stored as its definition (a table): compare by name
    return sorted({spec_name(d.get("protocol", "")) for d in cfg.get("data", {}).get("train", [])})


def check_resume_config(stored: dict, cfg: Config, allow: Sequence[str], source: Path) -> list[tuple[str, Any, Any]]:
    """The accepted ``(key, stored, new)`` changes of ``cfg`` against the ``stored`` config of ``source``.

    Raises ConfigError (exit status 2) listing shape-changing keys, or changes not in ``allow``
    (a key, or a table such as ``optim`` for all its keys)."""
    new = config_to_dict(cfg)
    try:  # the stored config with today's defaults for keys added since it was written
        stored = config_to_dict(config_from_dict(stored))
    except ConfigError:
        pass  # a key since removed: compare as written
    changes = config_changes(stored, new)
    shape = [k for k in changes if k.startswith("model.")]
    if _heads(stored) != _heads(new):
        shape.append(f"data.train.*.protocol ({_heads(stored)} -> {_heads(new)})")
    if shape:
        raise ConfigError(f"{source}: cannot resume: the config changes the network's shapes ({', '.join(shape)}); "
                          "start a new run with another --out")
    rest = [k for k in changes if k not in FREE_KEYS]
    refused = [k for k in rest if not any(k == a or k.startswith(a + ".") for a in allow)]
    if refused:
        raise ConfigError(f"{source}: the config differs from the run's in {', '.join(refused)}; resume with "
                          f"--allow-changed {','.join(refused)} to accept (recorded in resume.csv), or use another --out")
    return [(k, *changes[k]) for k in rest]
