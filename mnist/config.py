"""One typed config for a training run, from CLI options and `MNIST_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

NanPolicy = Literal["fail", "drop", "impute"]
Profile = Literal["fast", "default", "best"]

# Presets measured with bench/training.py (README, "Performance"). Any option or MNIST_*
# variable given explicitly wins over its profile's value.
_SHORT_RUN = {"batch_size": 256, "learning_rate": 1e-2, "adam_beta_1": 0.7, "adam_beta_2": 0.9}
"""Large steps and short Adam memories: what a run of a few epochs learns fastest with."""

PROFILES: dict[str, dict[str, Any]] = {
    "fast": {"model": "small", "epochs": 2, **_SHORT_RUN},
    "default": {"model": "cnn", "epochs": 5, **_SHORT_RUN},
    "best": {
        "model": "wide",
        "epochs": 30,
        "batch_size": 128,
        "learning_rate": 3e-3,
        "adam_beta_1": 0.9,
        "adam_beta_2": 0.999,
        "augment": True,
        "label_smoothing": 0.1,
    },
}


class TrainConfig(BaseSettings):
    """Every knob of a training run. Each field `x_y` is `--x-y` on the CLI and `MNIST_X_Y`."""

    model_config = SettingsConfigDict(env_prefix="MNIST_", extra="forbid", frozen=True)

    profile: Profile = Field(
        "default", description="preset of the settings below: fast, default or best"
    )
    model: str = Field("cnn", description="architecture name (see `mnist models`)")
    epochs: int = Field(5, ge=1, le=1000, description="passes over the training split")
    batch_size: int = Field(256, ge=1, le=65536, description="samples per gradient step")
    learning_rate: float = Field(1e-2, gt=0, le=1, description="Adam's (peak) learning rate")
    adam_beta_1: float = Field(0.7, gt=0, lt=1, description="Adam's first-moment decay")
    adam_beta_2: float = Field(0.9, gt=0, lt=1, description="Adam's second-moment decay")
    schedule: Literal["one-cycle", "constant"] = Field(
        "one-cycle", description="learning rate: one-cycle (warm-up, cosine decay) or constant"
    )
    augment: bool = Field(False, description="random shifts, rotations and zoom in training")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing of the loss")
    seed: int = Field(42, ge=0, description="fixes the validation split and initialisation")
    validation_split: float = Field(
        0.1, ge=0, lt=1, description="fraction of training data held out, stratified by label"
    )
    data_dir: Path | None = Field(
        None, description="MNIST directory or .npz (default: MNIST_DATA_DIR, else the cache)"
    )
    nan_policy: NanPolicy = Field("fail", description="what to do with NaN/Inf/invalid samples")
    train_limit: int | None = Field(
        None, ge=1, description="use only the first N training images (quick runs)"
    )
    test_limit: int | None = Field(None, ge=1, description="use only the first N test images")
    experiment: str = Field("mnist", min_length=1, description="MLflow experiment name")
    register_model: bool = Field(
        True,
        description="register the model as a new version",
        json_schema_extra={"flag": "--register"},
    )
    registered_model: str = Field(
        "mnist-cnn", min_length=1, description="registered model name in the MLflow registry"
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, data: Any) -> Any:
        """Fill what was not given from the profile's preset."""
        if isinstance(data, dict):
            return {**PROFILES.get(data.get("profile", "default"), {}), **data}
        return data

    def params(self) -> dict[str, str]:
        """The whole config, flattened to strings for MLflow params."""
        return {k: str(v) for k, v in self.model_dump().items()}
