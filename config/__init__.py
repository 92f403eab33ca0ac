"""The configuration: the tree of dataclasses (:mod:`config.tree`), loading presets and overrides
(:mod:`config.loading`) and the checks every value passes before a run starts (:mod:`config.checks`)."""
from .checks import check_environment, validate, value_at
from .loading import cache_dir, from_dict, load_config, to_dict, to_yaml, valid_keys
from .tree import (BACKBONES, DATASET_KINDS, DIFF_AUGMENT, GAN_FUSIONS, GAN_IMAGE_SIZES, GAN_LOSSES, LR_SCHEDULES,
                   MEASURES, REWARDS, SCHEDULES, SCST_BASELINES, Config, ConfigError, DataConfig, ImagineConfig,
                   LookConfig, LossConfig, ModelConfig, RobustConfig, SemiConfig, ShapesConfig, TrainConfig)

__all__ = ["BACKBONES", "DATASET_KINDS", "DIFF_AUGMENT", "GAN_FUSIONS", "GAN_IMAGE_SIZES", "GAN_LOSSES", "LR_SCHEDULES", "MEASURES", "REWARDS", "SCHEDULES", "SCST_BASELINES",
           "Config", "ConfigError", "DataConfig", "ImagineConfig", "LookConfig", "LossConfig", "ModelConfig",
           "RobustConfig", "SemiConfig", "ShapesConfig", "TrainConfig", "cache_dir", "check_environment", "from_dict",
           "load_config", "to_dict", "to_yaml", "valid_keys", "validate", "value_at"]
