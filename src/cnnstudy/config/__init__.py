"""What a study file may say: its keys, types and ranges (pydantic), by concern: what the parts share
(base), a run's training recipe and augmentation (recipe), and the study's shape: data, model, runs,
phases, sweeps and dataset roles (study). Reading one, and naming every problem it has at once, is
runner/planning/studyfile.py."""
from .base import SafeName, StudyError, Strict
from .recipe import RECIPE_KEY_USERS, AugmentConfig, EarlyStopping, TrainConfig, VerdictConfig, augment_settings
from .study import (DataConfig, DatasetRole, ModelConfig, ParamRange, PhaseConfig, RunConfig, SplitConfig,
                    StudyConfig, SweepConfig, TrackingConfig, deep_merge)

__all__ = ["AugmentConfig", "DataConfig", "DatasetRole", "EarlyStopping", "ModelConfig", "ParamRange", "PhaseConfig",
           "RECIPE_KEY_USERS", "RunConfig", "SafeName", "SplitConfig", "Strict", "StudyConfig", "StudyError",
           "SweepConfig", "TrackingConfig", "TrainConfig", "VerdictConfig", "augment_settings", "deep_merge"]
