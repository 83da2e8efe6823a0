"""Experiment configuration: plain frozen dataclasses (:mod:`.schema`) read from TOML/JSON files, with an
optional ``base`` file and ``--set`` overrides (:mod:`.load`)."""

from .load import apply_overrides, config_from_dict, config_to_dict, format_config, load_config, read_config_file
from .schema import (
    Config,
    ConfigError,
    DataConfig,
    DatasetConfig,
    DistConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
)

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
    "read_config_file",
    "config_from_dict",
    "config_to_dict",
    "apply_overrides",
    "format_config",
]
