"""Assembly: a config (or a command line) -> datasets and a device, below everything that uses them.

Training, evaluation, studies, analysis and the benchmarks all turn ``[[data.train]]`` /
``[[data.val]]`` tables into :class:`~sepbn.data.dataset.LandmarkDataset` objects and a device
string into a ``torch.device``; they do it here, so none of them imports the training loop.
A dataset's protocol arrives as a :class:`~sepbn.protocols.Protocol` (resolved by the config
loader) and is passed on as that object.

:func:`checkpoint_entries` turns ``--data FMT:SOURCE`` arguments of ``sepbn eval`` / ``sepbn
analyze`` into dataset tables with one rule: the protocol is the one ``--protocol`` names (once
for all, or once per ``--data``) or the checkpoint's only head, taken from the checkpoint's stored
definitions (so a user's protocol needs no file); the box scale defaults to training's.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping, Sequence

import torch

from .config import Config, ConfigError, DataConfig, DatasetConfig, load_config
from .data.dataset import LandmarkDataset
from .data.formats import SPLITS, RecordList, read_records, split_problem
from .data.pose_domains import assign_pose_domains
from .data.transforms import AugmentConfig
from .protocols import Protocol, spec_name

__all__ = ["dataset_name", "dataset_names", "resolve", "read_dataset_records", "build_datasets", "resolve_device",
           "checkpoint_entries", "check_data_keys", "load_run_config", "GENERIC_FORMATS"]

# formats whose files may hold any protocol (the official formats each hold one)
GENERIC_FORMATS = ("csv", "jsonl", "coco")


def check_data_keys(data: DataConfig) -> None:
    """A ConfigError naming the key (``data.train.0.fmt``) of the first unknown format or split.

    The config loader cannot check these (it does not load the readers); the commands call this
    right after loading, so a typo is a one-line error before any data is read.
    """
    for role, entries in (("train", data.train), ("val", data.val)):
        for i, d in enumerate(entries):
            key = f"data.{role}.{i}"
            if d.fmt not in SPLITS:  # every reader's format, and SynthFaces folders
                raise ConfigError(f"{key}.fmt: unknown format {d.fmt!r}; known: {sorted(SPLITS)}")
            problem = split_problem(d.fmt, d.split)
            if problem:
                raise ConfigError(f"{key}.split: {problem}")


def load_run_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """``load_config`` plus :func:`check_data_keys`; every error names the config file and the key."""
    cfg = load_config(path, overrides)
    try:
        check_data_keys(cfg.data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path is not None else str(e)) from None
    return cfg


def load_training_config(
    path: str | Path | None, overrides: Sequence[str] = (), data_root: str | None = None
) -> Config:
    """:func:`load_run_config` for a command that trains (``train``, ``check``): ``data_root`` overrides
    ``data.root``, and a config with no ``[[data.train]]`` is a ConfigError naming the file."""
    cfg = load_run_config(path, list(overrides) + ([f"data.root={data_root}"] if data_root else []))
    if not cfg.data.train:
        raise ConfigError(f"{path}: the config lists no training dataset ([[data.train]])")
    return cfg


def resolve_device(name: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; any other name as torch reads it."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def dataset_name(d: DatasetConfig) -> str:
    """The name a dataset has in logs and results."""
    if d.name:
        return d.name
    if d.split:
        return f"{d.fmt}-{d.split}"
    return f"{d.fmt}-{d.protocol.name}"


def dataset_names(entries: Sequence[DatasetConfig]) -> list[str]:
    """Names of ``entries``; repeated default names get ``-2``, ``-3`` ... (explicit names must be unique)."""
    names: list[str] = []
    for d in entries:
        name = dataset_name(d)
        if name in names:
            if d.name:
                raise ValueError(f"two datasets are named {name!r}; give them distinct 'name' keys")
            k = 2
            while f"{name}-{k}" in names:
                k += 1
            name = f"{name}-{k}"
        names.append(name)
    return names


def resolve(root: str | Path, path: str | None) -> str | None:
    """``path`` relative to the data root (absolute paths and None pass through)."""
    if path is None:
        return None
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else Path(root).expanduser() / p)


def read_dataset_records(data: DataConfig, d: DatasetConfig) -> RecordList:
    """The records of one configured dataset (``limit`` applied).

    ``fmt = "synth"`` reads a SynthFaces folder (``sepbn.data.synth.load_synth``: the official
    reader of the protocol's format plus the sub-domain labels); other formats go to ``read_records``.
    ``pose_domains`` labels every face's pose sub-domain from its landmarks (`sepbn.data.pose_domains`).
    The result's ``.skipped`` lists the faces the format reader left out with ``skip_invalid``.
    """
    protocol = d.protocol
    if d.fmt == "synth":
        from .data.synth import load_synth  # the renderer's stack, only for SynthFaces folders

        options = {k: v for k, v in d.options.items() if k != "skip_invalid"}  # SynthFaces files are valid
        records = load_synth(resolve(data.root, d.source), protocol.name, split=d.split or "train", **options)
    else:
        options = dict(d.options)
        if d.fmt in GENERIC_FORMATS:  # these carry any protocol: the config's object (a user's too)
            options.setdefault("protocol", protocol)
        with warnings.catch_warnings():  # the faces it leaves out are reported by the pre-flight check
            warnings.filterwarnings("ignore", message=r".*see \.skipped")
            records = read_records(
                d.fmt, resolve(data.root, d.source), images=resolve(data.root, d.images), split=d.split, **options
            )
    skipped = list(getattr(records, "skipped", []))
    records = list(records)
    if d.limit is not None:
        records = records[: d.limit]
    if not records:
        raise ValueError(f"dataset {dataset_name(d)!r} ({d.fmt} at {d.source}) has no faces")
    if d.pose_domains is not None:  # brute-force SepBN needs a domain per face (paper III-A)
        records = assign_pose_domains(records, protocol, method=d.pose_domains, threshold=d.pose_threshold)
    return RecordList(records, skipped)


def build_datasets(
    data: DataConfig, entries: Sequence[DatasetConfig], *, train: bool, image_size: int, seed: int = 0,
    records: Mapping[str, Sequence] | None = None,
) -> dict[str, LandmarkDataset]:
    """``{name: LandmarkDataset}`` for the configured entries (names must be unique); ``records`` gives
    the faces of each name (the pre-flight check's), else they are read here."""
    augment = AugmentConfig.from_dict(data.augment_options) if train and data.augment else None
    out = {}
    for name, d in zip(dataset_names(entries), entries):
        kwargs = {} if d.box_scale is None else {"box_scale": d.box_scale}
        cache = resolve(data.root, data.cache) if data.cache else None
        if cache is not None:
            # one folder per role: a train and a val entry of the same name must not share (and rebuild) it
            cache = str(Path(cache) / f"{name}-{'train' if train else 'val'}")
        faces = records[name] if records is not None else read_dataset_records(data, d)
        out[name] = LandmarkDataset(
            faces, d.protocol, train=train and data.augment, image_size=image_size,
            augment=augment, cache=cache, seed=seed, **kwargs,
        )
    return out


def _head(heads: Mapping[str, Protocol], spelling: str) -> Protocol:
    """The checkpoint head ``spelling`` names (its name, an alias, or a protocol file of the same name)."""
    for p in heads.values():
        if p.answers_to(spelling) or p.answers_to(spec_name(spelling)):
            return p
    raise ValueError(f"the checkpoint has heads {list(heads)}, not protocol {spelling!r}")


def checkpoint_entries(data: Sequence[str], protocols: Sequence[str], heads: Mapping[str, Protocol],
                       train_config: Mapping | None, *, split: str | None = None, images: str | None = None,
                       box_scale: float | None = None) -> list[DatasetConfig]:
    """Dataset tables for ``--data FMT:SOURCE`` arguments evaluated with a checkpoint (see the module doc).

    ``heads``: the checkpoint's protocols by name (``sepbn.checkpoint.checkpoint_protocols``);
    ``train_config``: its config dict, whose training tables give each protocol's box scale.
    """
    if not data:
        raise ValueError("give at least one --data FMT:SOURCE")
    if len(protocols) not in (0, 1, len(data)):
        raise ValueError(f"--protocol given {len(protocols)} times for {len(data)} --data; give it once or once each")
    if not protocols and len(heads) != 1:
        raise ValueError(f"the checkpoint has heads {list(heads)}; choose the data's protocol with --protocol")
    chosen = [_head(heads, p) for p in protocols] or list(heads.values())
    chosen = chosen * len(data) if len(chosen) == 1 else chosen
    trained = {spec_name(d.get("protocol", "")): d for d in (train_config or {}).get("data", {}).get("train", [])}
    out = []
    for spec, protocol in zip(data, chosen):
        fmt, sep, source = spec.partition(":")
        if not sep or not source:
            raise ValueError(f"--data expects FMT:SOURCE, got {spec!r}")
        scale = box_scale
        if scale is None:
            scale = next((d.get("box_scale") for n, d in trained.items() if protocol.answers_to(n)), None)
        out.append(DatasetConfig(fmt=fmt, source=source, protocol=protocol, split=split, images=images,
                                 box_scale=scale))
    return out

