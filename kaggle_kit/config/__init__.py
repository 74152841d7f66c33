"""`kit.toml` → typed dataclasses.

Precedence: the dataclass defaults, then a preset, then `kit.toml`, then `--set section.key=value`
flags. Every field carries its help text in ``metadata["help"]``; `kit init` writes it as comments.
Unknown keys are errors that name the key and the nearest valid one, and all problems of a file
are reported at once.

One job per module: ``sections`` (the typed tables), ``load`` (layers → `KitConfig`), ``checks``
(rules across fields), ``presets``, ``toml_writer`` (`kit init`), ``problems`` (`ConfigError`,
nearest-key suggestions) and ``identity`` (the Kaggle user name from the environment). Every public
name is re-exported here, so callers write ``from kaggle_kit.config import load_config, KitConfig``.

This package imports only the standard library (it is on the `kit --help` path).
"""
from __future__ import annotations

from kaggle_kit.config.identity import kaggle_config_dirs, kaggle_username_from_environment
from kaggle_kit.config.load import build_config, load_config, parse_set_flags, read_toml
from kaggle_kit.config.presets import PRESETS, preset_values
from kaggle_kit.config.problems import CONFIG_FILE, ConfigError
from kaggle_kit.config.sections import (
    DataConfig, EnsembleConfig, InferenceConfig, InstanceConfig, KaggleConfig, KernelConfig, KitConfig, ModelConfig,
    PeftConfig, PromptConfig, QuantizationConfig, SubmissionConfig, TaskConfig, TrainConfig, WheelsConfig,
)
from kaggle_kit.config.toml_writer import UNUSED_BY_KIND, _toml_value, init_config, render_toml

__all__ = [
    "CONFIG_FILE", "PRESETS", "UNUSED_BY_KIND", "ConfigError",
    "DataConfig", "EnsembleConfig", "InferenceConfig", "InstanceConfig", "KaggleConfig", "KernelConfig", "KitConfig",
    "ModelConfig", "PeftConfig", "PromptConfig", "QuantizationConfig", "SubmissionConfig", "TaskConfig",
    "TrainConfig", "WheelsConfig",
    "build_config", "init_config", "kaggle_config_dirs", "kaggle_username_from_environment", "load_config",
    "parse_set_flags", "preset_values", "read_toml", "render_toml",
]
