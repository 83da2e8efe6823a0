"""Experiment configuration: plain frozen dataclasses (:mod:`.schema`) read from TOML/JSON files, with an
optional ``base`` file and ``--set`` overrides (:mod:`.load`)."""

from . import load, schema
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

__all__ = [*schema.__all__, *load.__all__]
