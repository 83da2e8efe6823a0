"""What a run's configuration is: the sections of a config file as frozen dataclasses, and their checks.

Paper section V-A gives the defaults: SGD (momentum 0.9, weight decay 5e-4), batch 8, L1 loss,
cosine learning rate between 1e-3 and 5e-6 with 120 warm-up epochs in 500, SepBN temperature
annealed from 30 to 1 over the first 30 epochs, 128 x 128 crops of the official face box.
Section IV (CNT): stage 1 lists several datasets (one head per protocol); stage 2 lists one,
starts from a stage-1 checkpoint (``train.init_from``) and fixes the backbone learning rate at
1e-7 (``optim.backbone_lr``).

The sections are ``[model]``, ``[data]`` (with ``[[data.train]]`` and ``[[data.val]]`` dataset
tables), ``[optim]``, ``[schedule]``, ``[train]`` and ``[dist]``. Reading them from files and
``--set`` overrides is :mod:`sepbn.config.load`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..protocols import Protocol, get_protocol

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
    head: str = "fc"  # "fc" (the paper's regressor) | "integral" | "integral_fine" (soft-argmax heatmaps)


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
