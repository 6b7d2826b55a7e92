"""Typed, validated configs for every olmorl component, and their YAML + override loading."""

from olmorl.config.components import (
    DataConfig,
    DeepSpeedStrategy,
    FSDP2Strategy,
    LearnerConfig,
    ModelConfig,
    OfflineDataConfig,
    RunConfig,
    TrainerRunConfig,
    WandbConfig,
)
from olmorl.config.dpo import DPOConfig, PreferenceLossConfig
from olmorl.config.loading import ConfigError, load_config, parse_overrides, write_resolved_config
from olmorl.config.pretrain import PretrainConfig
from olmorl.config.rl import AlgorithmConfig, RLConfig, RolloutConfig, VerifiersConfig
from olmorl.config.sft import SFTConfig

__all__ = [
    "AlgorithmConfig",
    "ConfigError",
    "DPOConfig",
    "DataConfig",
    "DeepSpeedStrategy",
    "FSDP2Strategy",
    "LearnerConfig",
    "ModelConfig",
    "OfflineDataConfig",
    "PreferenceLossConfig",
    "PretrainConfig",
    "RLConfig",
    "RolloutConfig",
    "RunConfig",
    "SFTConfig",
    "TrainerRunConfig",
    "VerifiersConfig",
    "WandbConfig",
    "load_config",
    "parse_overrides",
    "write_resolved_config",
]
