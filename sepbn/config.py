"""Experiment configuration: plain frozen dataclasses read from TOML/JSON plus ``--set`` overrides.

Paper section V-A gives the defaults: SGD (momentum 0.9, weight decay 5e-4), batch 8, L1 loss,
cosine learning rate between 1e-3 and 5e-6 with 120 warm-up epochs in 500, SepBN temperature
annealed from 30 to 1 over the first 30 epochs, 128 x 128 crops of the official face box.
Section IV (CNT): stage 1 lists several datasets (one head per protocol); stage 2 lists one,
starts from a stage-1 checkpoint (``train.init_from``) and fixes the backbone learning rate at
1e-7 (``optim.backbone_lr``).

A config file has the sections ``[model]``, ``[data]`` (with ``[[data.train]]`` and
``[[data.val]]`` dataset tables), ``[optim]``, ``[schedule]`` and ``[train]``. Every key is
type-checked; an unknown key is an error naming the key and the keys that exist.
``--set optim.lr=2e-3`` parses the value as the field's type.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .protocols import Protocol, get_protocol, protocol_spec

__all__ = [
    "ModelConfig",
    "DatasetConfig",
    "DataConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "DistConfig",
    "Config",
    "ConfigError",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "apply_overrides",
    "format_config",
]


class ConfigError(ValueError):
    """A config file or override is invalid (unknown key, wrong type, bad value)."""

    exit_code = 2  # like a command-line error (sepbn.errors)


@dataclass(frozen=True)
class ModelConfig:
    """Arguments of ``sepbn.models.create_model`` (protocols come from the datasets)."""

    arch: str = "vanilla"  # "vanilla" | "resnext50" | "mobilenetv2"
    norm: str = "bn"  # "bn" | "sepbn" | "bruteforce" | ...
    norm_kwargs: dict = field(default_factory=dict)  # e.g. {num_branches = 3, num_groups = 2, pool_size = 3}
    placement: list | None = None  # Vanilla: block indices; ResNeXt/MobileNet: ["bn3"] (Table X)
    width: float = 1.0
    input_size: int = 128
    pretrained: bool = False
    adapter: bool | None = None  # Fig. 5 conv adapter per head; None = only with several protocols
    head: str = "fc"  # "fc" (the paper's regressor) | "integral" (soft-argmax heatmaps)


@dataclass(frozen=True)
class DatasetConfig:
    """One annotated dataset: ``sepbn.data.read_records(fmt, source, images=, split=)``.

    Relative ``source`` and ``images`` paths are resolved against ``data.root``. ``protocol`` is
    resolved here, once: a built-in name, a ``.json`` / ``.toml`` file (relative to the working
    directory) or an inline definition become a :class:`~sepbn.protocols.Protocol`; a written
    config stores a user's protocol as its full definition, so the run does not need the file.
    """

    fmt: str
    source: str
    protocol: Protocol
    name: str | None = None  # shown in logs and results; default "<fmt>-<split>" or "<fmt>"
    split: str | None = None
    images: str | None = None
    box_scale: float | None = None  # crop enlargement of the face box; None = the dataset's default
    limit: int | None = None  # keep the first N faces (quick runs)
    options: dict = field(default_factory=dict)  # extra keyword arguments of read_records
    pose_domains: str | None = None  # "yaw" | "kmeans": label pose sub-domains (brute-force SepBN)
    pose_threshold: float = 0.55  # |yaw score| beyond which a face is a profile (method "yaw")

    def __post_init__(self) -> None:
        if not isinstance(self.protocol, Protocol):  # built in code rather than read by load_config
            object.__setattr__(self, "protocol", get_protocol(self.protocol))


@dataclass(frozen=True)
class DataConfig:
    root: str = "."
    train: tuple[DatasetConfig, ...] = ()
    val: tuple[DatasetConfig, ...] = ()
    augment: bool = True  # the paper's geometric augmentation on training faces
    augment_options: dict = field(default_factory=dict)  # fields of sepbn.data.transforms.AugmentConfig
    workers: int = 0  # DataLoader worker processes
    cache: str | None = None  # decoded face cache directory (sepbn cache)
    epoch_size: int | None = None  # samples drawn per epoch; None = sum of the training set sizes


@dataclass(frozen=True)
class OptimConfig:
    """SGD and its parameter groups (see ``sepbn.train.optim``)."""

    name: str = "sgd"  # "sgd" | "adamw"
    lr: float = 1e-3  # peak learning rate
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    # Weight decay on SepBN's (K, C) mapping and on plain norm affine parameters. None = weight_decay,
    # the paper's single value (see sepbn.train.optim for the decision).
    sepbn_weight_decay: float | None = None
    norm_weight_decay: float | None = None
    # CNT stage 2: a fixed learning rate for the shared backbone (paper: 1e-7); None = scheduled.
    backbone_lr: float | None = None
    grad_clip: float | None = None  # max global gradient norm; None = no clipping
    # Multi-process runs (sepbn.train.distributed): every learning rate above (lr, min_lr, backbone_lr)
    # is for a batch of lr_reference_batch faces (None = train.batch_size, i.e. one process) and is
    # multiplied by f(effective / reference) with effective = train.batch_size * world size:
    # "none" f = 1, "linear" f = ratio (Goyal et al. 2017), "sqrt" f = sqrt(ratio).
    lr_scaling: str = "none"
    lr_reference_batch: int | None = None


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate and temperature schedules (``sepbn.train.schedules``)."""

    epochs: int = 500
    warmup_epochs: int = 120
    min_lr: float = 5e-6
    tau_start: float = 30.0
    tau_end: float = 1.0
    tau_epochs: int = 30


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 8
    loss: str = "l1"  # "l1" | "wing"
    wing_w: float = 10.0  # Wing loss width, in pixels of the crop
    wing_epsilon: float = 2.0
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    amp: str = "none"  # "none" | "bf16" | "fp16" (CUDA autocast; fp16 adds a GradScaler)
    channels_last: bool = True  # on CUDA only
    init_from: str | None = None  # checkpoint whose weights start this run (CNT stage 2)
    max_steps: int | None = None  # stop early after this many optimiser steps (smoke runs)
    log_every: int = 20  # steps between CSV/TensorBoard rows
    val_every: int = 1  # epochs between validations
    save_every: int = 1  # epochs between checkpoints
    # also a (mid-epoch) checkpoint once this much wall time has passed since the last one: a kill -9
    # loses at most this much work, whatever the epoch length; 0 = epochs only
    save_every_minutes: float = 30.0
    progress: bool = True
    tensorboard: bool = False


@dataclass(frozen=True)
class DistConfig:
    """torchrun / DistributedDataParallel settings (``sepbn.train.distributed``; ignored in one process).

    ``train.batch_size`` is per process: the effective batch is ``batch_size * WORLD_SIZE``.
    """

    backend: str = "auto"  # "auto" (nccl on CUDA, gloo on CPU) | "nccl" | "gloo"
    timeout_s: float = 1800.0  # collectives (and rank 0's validation + checkpoint wait) fail after this
    sync_bn: bool = False  # SyncBatchNorm: BN layers and SepBN's inner normalisation only
    find_unused_parameters: bool | None = None  # None = True when the network has several heads (CNT)


@dataclass(frozen=True)
class Config:
    name: str = "experiment"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)

    def __post_init__(self) -> None:
        _validate(self)


def _validate(c: Config) -> None:
    checks = [
        (c.model.arch in ("vanilla", "resnext50", "mobilenetv2"), "model.arch", c.model.arch),
        (c.model.width > 0, "model.width", c.model.width),
        (c.model.input_size >= 8, "model.input_size", c.model.input_size),
        (c.optim.name in ("sgd", "adamw"), "optim.name", c.optim.name),
        (c.optim.lr > 0, "optim.lr", c.optim.lr),
        (c.schedule.epochs >= 1, "schedule.epochs", c.schedule.epochs),
        (0 <= c.schedule.warmup_epochs < c.schedule.epochs, "schedule.warmup_epochs", c.schedule.warmup_epochs),
        (0 <= c.schedule.min_lr <= c.optim.lr, "schedule.min_lr", c.schedule.min_lr),
        (c.schedule.tau_epochs >= 1, "schedule.tau_epochs", c.schedule.tau_epochs),
        (c.train.batch_size >= 1, "train.batch_size", c.train.batch_size),
        (c.train.loss in ("l1", "wing"), "train.loss", c.train.loss),
        (c.train.amp in ("none", "bf16", "fp16"), "train.amp", c.train.amp),
        (c.data.workers >= 0, "data.workers", c.data.workers),
        (c.optim.lr_scaling in ("none", "linear", "sqrt"), "optim.lr_scaling", c.optim.lr_scaling),
        (c.optim.lr_reference_batch is None or c.optim.lr_reference_batch >= 1, "optim.lr_reference_batch",
         c.optim.lr_reference_batch),
        (c.dist.backend in ("auto", "nccl", "gloo"), "dist.backend", c.dist.backend),
        (c.dist.timeout_s > 0, "dist.timeout_s", c.dist.timeout_s),
        (c.train.log_every >= 1, "train.log_every", c.train.log_every),
        (c.train.save_every >= 1, "train.save_every", c.train.save_every),
        (c.train.save_every_minutes >= 0, "train.save_every_minutes", c.train.save_every_minutes),
    ]
    for ok, key, value in checks:
        if not ok:
            raise ConfigError(f"invalid value for {key}: {value!r}")


# --- dict <-> dataclass with type checking ---------------------------------------------------

def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; convert lists to tuples and tables to dataclasses."""
    if tp is Protocol:  # the edge: a name, a file or a definition becomes the object, once
        try:
            return get_protocol(value)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{key}: {e}") from None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return _build(tp, value, key)
    if origin is tuple:
        (item,) = typing.get_args(tp)[:1]
        if isinstance(value, Mapping):  # a single table where a list of tables is expected
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if tp is list or origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return list(value)
    if tp is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return dict(value)
    raise ConfigError(f"{key}: unsupported type {tp!r}")  # pragma: no cover - a programming error


def _build(cls: type, d: Mapping, prefix: str) -> Any:
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(names))
    if unknown:
        where = f"[{prefix}]" if prefix else "top level"
        raise ConfigError(f"unknown key(s) {unknown} in {where}; known keys: {names}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in d.items()}
    missing = [
        f.name for f in dataclasses.fields(cls)
        if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"[{prefix}] lacks required key(s) {missing}")
    return cls(**kwargs)


def config_from_dict(d: Mapping) -> Config:
    """Build and validate a :class:`Config` from nested mappings (a parsed TOML/JSON file)."""
    return _build(Config, d, "")


def config_to_dict(c: Any) -> Any:
    """A JSON-able nested dict (tuples become lists); ``config_from_dict`` reads it back."""
    if isinstance(c, Protocol):
        return protocol_spec(c)
    if dataclasses.is_dataclass(c):
        return {f.name: config_to_dict(getattr(c, f.name)) for f in dataclasses.fields(c)}
    if isinstance(c, (list, tuple)):
        return [config_to_dict(v) for v in c]
    if isinstance(c, Mapping):
        return {k: config_to_dict(v) for k, v in c.items()}
    return c


# --- overrides -------------------------------------------------------------------------------

def _field_type(key: str) -> Any:
    """The annotation of a dotted key such as ``optim.lr`` or ``data.train.0.source``."""
    tp: Any = Config
    walked: list[str] = []
    for part in key.split("."):
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        if typing.get_origin(tp) is tuple:
            if not part.isdigit():
                raise ConfigError(f"--set {key}: {'.'.join(walked)} is a list; index it with a number")
            tp = typing.get_args(tp)[0]
        elif dataclasses.is_dataclass(tp):
            hints = _hints(tp)
            if part not in hints:
                raise ConfigError(
                    f"--set {key}: unknown key {part!r} in [{'.'.join(walked) or 'top level'}]; "
                    f"known keys: {list(hints)}"
                )
            tp = hints[part]
        elif tp is dict or typing.get_origin(tp) is dict:
            return Any  # free-form table (norm_kwargs, options)
        else:
            raise ConfigError(f"--set {key}: {'.'.join(walked)} is not a table")
        walked.append(part)
    return tp


def _parse_value(text: str, tp: Any, key: str) -> Any:
    """Parse an override's text as the field's type: a JSON/TOML literal when it fits, else the text."""
    if text.lower() in ("none", "null"):
        return None
    candidates: list[Any] = []
    try:
        candidates.append(json.loads(text))
    except json.JSONDecodeError:
        if text.lower() in ("true", "false"):
            candidates.append(text.lower() == "true")
    if tp is Any:
        return candidates[0] if candidates else text
    candidates.append(text)
    for value in candidates:
        try:
            _coerce(value, tp, key)
            return value
        except ConfigError:
            continue
    raise ConfigError(f"--set {key}={text}: expected {_type_name(tp)}")


def _merge(base: dict, top: Mapping) -> dict:
    """``top`` over ``base``, table by table (lists and scalars are replaced)."""
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def apply_overrides(d: Mapping, overrides: Sequence[str]) -> dict:
    """Apply ``key.sub=value`` overrides to a nested config dict (a copy is returned)."""
    out = _merge(config_to_dict(Config()), json.loads(json.dumps(config_to_dict(dict(d)))))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        tp = _field_type(key)
        value = _parse_value(text.strip(), tp, key)
        node: Any = out
        parts = key.split(".")
        for p in parts[:-1]:
            if isinstance(node, list):
                idx = int(p)
                if idx >= len(node):
                    raise ConfigError(f"--set {key}: index {idx} out of range (list has {len(node)} items)")
                node = node[idx]
            else:
                node = node.setdefault(p, {})
        last = parts[-1]
        if isinstance(node, list):
            idx = int(last)
            if idx >= len(node):
                raise ConfigError(f"--set {key}: index {idx} out of range (list has {len(node)} items)")
            node[idx] = value
        else:
            node[last] = value
    return out


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read a ``.toml`` or ``.json`` config (or the defaults when ``path`` is None) and apply overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                raise ConfigError(f"{path}: {e}") from None
    try:
        return config_from_dict(apply_overrides(data, overrides))
    except ConfigError as e:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{e}") from None


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v)


def format_config(c: Config) -> str:
    """The resolved config as TOML (None values are omitted: every optional key defaults to None).

    ``load_config`` reads the text back to the same config; runs print it and store it as config.toml.
    """
    lines: list[str] = []

    def emit(prefix: str, d: Mapping) -> None:
        tables = []
        for k, v in d.items():
            if v is None:
                continue
            if isinstance(v, Mapping) and dataclass_table(prefix, k):
                tables.append((k, v, False))
            elif isinstance(v, list) and v and all(isinstance(i, Mapping) for i in v):
                tables.append((k, v, True))
            else:
                lines.append(f"{k} = {_toml_value(v)}")
        for k, v, many in tables:
            name = f"{prefix}.{k}" if prefix else k
            for item in (v if many else [v]):
                lines.append(f"\n[[{name}]]" if many else f"\n[{name}]")
                emit(f"{name}.0" if many else name, item)

    def dataclass_table(prefix: str, k: str) -> bool:
        tp = _field_type(f"{prefix}.{k}" if prefix else k)
        return dataclasses.is_dataclass(tp) and tp is not Protocol  # a definition is written inline

    emit("", config_to_dict(c))
    return "\n".join(lines).strip() + "\n"
