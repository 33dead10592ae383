"""Recipes as data: how to fit a model, in TOML files named by `--profile`.

The built-in ones are in `mnist/recipes/`; `MNIST_RECIPES_DIR` adds more (looked up first).
Each built-in file sets every knob of `Recipe`, so no recipe silently inherits another's value;
knobs added since the first recipes (`elastic`, `validation_split`) have defaults that keep an
older file, and an older run's params, meaning what they meant.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

RECIPES_DIR = Path(__file__).with_name("recipes")


class Recipe(BaseModel):
    """Recipe: how to fit (`--profile NAME` presets every option of this group)"""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="architecture name (see `mnist models`)")
    epochs: int = Field(ge=1, le=1000, description="passes over the training split")
    batch_size: int = Field(ge=1, le=65536, description="samples per gradient step")
    learning_rate: float = Field(gt=0, le=1, description="Adam's (peak) learning rate")
    adam_beta_1: float = Field(gt=0, lt=1, description="Adam's first-moment decay")
    adam_beta_2: float = Field(gt=0, lt=1, description="Adam's second-moment decay")
    schedule: Literal["one-cycle", "constant"] = Field(
        description="learning rate: one-cycle (warm-up, cosine decay) or constant"
    )
    augment: bool = Field(description="random shifts, rotations and zoom in training")
    elastic: float = Field(
        default=0.0,
        ge=0,
        le=100,
        description="with augment: strength (pixels) of random elastic distortions in training "
        "(Simard et al.'s alpha, smoothed over 4 pixels); 0: none",
    )
    label_smoothing: float = Field(ge=0, lt=1, description="label smoothing of the loss")
    validation_split: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="fraction of the training data held out to validate each epoch, "
        "stratified by label; 0: train on all of it (a final model)",
    )


def recipe_dirs() -> list[Path]:
    """Where recipes are looked up: `MNIST_RECIPES_DIR` first, then the built-in ones."""
    extra = os.environ.get("MNIST_RECIPES_DIR")
    return [*([Path(extra)] if extra else []), RECIPES_DIR]


def recipe_names() -> list[str]:
    return sorted({p.stem for d in recipe_dirs() if d.is_dir() for p in d.glob("*.toml")})


def recipe_path(name: str) -> Path:
    """The file of recipe `name`, or `name` itself when it is a path to a .toml file."""
    if name.endswith(".toml"):
        return Path(name).expanduser()
    for directory in recipe_dirs():
        if (path := directory / f"{name}.toml").is_file():
            return path
    raise ValueError(
        f"unknown recipe {name!r}; choose one of: {', '.join(recipe_names())} (or a .toml file)"
    )


def load_recipe(name: str) -> Recipe:
    """Read and check a recipe; a missing, unreadable or incomplete one is a ValueError."""
    path = recipe_path(name)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"recipe {path}: cannot read it ({exc})") from exc
    try:
        return Recipe(**data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"recipe {path}: {problems}") from None
