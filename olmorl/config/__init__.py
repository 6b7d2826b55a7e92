"""Typed, validated configs for every olmorl component, and their YAML + override loading."""

from olmorl.config.components import (
    DataConfig,
    DeepSpeedStrategy,
    FSDP2Strategy,
    LearnerConfig,
    ModelConfig,
    RunConfig,
    WandbConfig,
)
from olmorl.config.loading import ConfigError, load_config, parse_overrides, write_resolved_config
from olmorl.config.rl import AlgorithmConfig, RLConfig, RolloutConfig, VerifiersConfig

__all__ = [
    "AlgorithmConfig",
    "ConfigError",
    "DataConfig",
    "DeepSpeedStrategy",
    "FSDP2Strategy",
    "LearnerConfig",
    "ModelConfig",
    "RLConfig",
    "RolloutConfig",
    "RunConfig",
    "VerifiersConfig",
    "WandbConfig",
    "load_config",
    "parse_overrides",
    "write_resolved_config",
]
