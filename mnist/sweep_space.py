"""Search spaces as data (TOML files beside the recipes, naming the knobs a sweep varies), and
the objective a sweep scores its trials by.

A space names its `base` recipe and, under `[params.NAME]`, a range of a recipe knob (`low`,
`high`, optionally `log = true` or an integer `step`) or a list of `choices`. Every knob it does
not name comes from the base recipe, but the split: trials are scored on held-out data, so a
space holds out its own `validation_split` (default 0.1) whatever its base recipe does (`best`
trains its final models on all the data). Built-in spaces are in `mnist/sweeps/`; a path to a
.toml file names any other.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mnist.recipe import Recipe, load_recipe

if TYPE_CHECKING:
    import optuna

SPACES_DIR = Path(__file__).with_name("sweeps")

Value = bool | int | float | str


class Param(BaseModel):
    """One knob's range (`low`, `high`, `log`, `step`) or its `choices`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Value] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Param:
        ranged = self.low is not None or self.high is not None
        if self.choices is not None:
            if ranged or self.log or self.step is not None:
                raise ValueError("give either choices or a range (low, high), not both")
            if not self.choices:
                raise ValueError("empty list of choices")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give a range (low and high) or a list of choices")
        if not self.low < self.high:
            raise ValueError(f"empty range: low {self.low} is not below high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low above 0")
        if self.step is not None and (self.step <= 0 or self.log):
            raise ValueError("step must be above 0, and not with log")
        return self

    def ends(self) -> list[Value]:
        """The values a trial may take at the edges: every choice, or both ends of the range."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]  # type: ignore[list-item]


class Space(BaseModel):
    """A search space: the base recipe and the knobs varied around it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: str
    params: dict[str, Param]
    validation_split: float = Field(default=0.1, gt=0, lt=1)

    def suggest(self, trial: optuna.Trial) -> dict[str, Value]:
        """The trial's value of every knob of the space (Optuna's suggest_* calls)."""
        values: dict[str, Value] = {}
        for name, p in self.params.items():
            if p.choices is not None:
                values[name] = trial.suggest_categorical(name, p.choices)  # type: ignore[arg-type]
            elif p.low is None or p.high is None:  # a range, as `Param` checked
                raise AssertionError(name)
            elif _integer(name):
                step = int(p.step or 1)
                values[name] = trial.suggest_int(
                    name, int(p.low), int(p.high), step=step, log=p.log
                )  # type: ignore[arg-type]
            else:
                values[name] = trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)  # type: ignore[arg-type]
        return values


@dataclass(frozen=True)
class Objective:
    """What a trial is scored by: the last epoch's validation accuracy (maximised), or, with a
    `target`, the seconds of training until validation accuracy reached it (minimised; a trial
    that never does scores infinity)."""

    target: float | None = None

    @classmethod
    def parse(cls, text: str) -> Objective:
        if text == "accuracy":
            return cls()
        if text.startswith("time-to:"):
            try:
                target = float(text.removeprefix("time-to:"))
            except ValueError:
                target = -1.0
            if 0 < target < 1:
                return cls(target)
        raise ValueError(f"objective {text!r}: give accuracy or time-to:ACCURACY (e.g. 0.99)")

    def __str__(self) -> str:
        return "accuracy" if self.target is None else f"time-to:{self.target}"

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        return "maximize" if self.target is None else "minimize"

    def intermediate(self, val_accuracy: float) -> float:
        """The value reported to the pruner after an epoch, better in the study's direction."""
        return val_accuracy if self.target is None else 1.0 - val_accuracy

    def reached(self, val_accuracy: float) -> bool:
        return self.target is not None and val_accuracy >= self.target


def _integer(name: str) -> bool:
    return Recipe.model_fields[name].annotation is int


def space_names() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.toml"))


def space_path(name: str) -> Path:
    """The file of space `name`, or `name` itself when it is a path to a .toml file."""
    if name.endswith(".toml"):
        return Path(name).expanduser()
    path = SPACES_DIR / f"{name}.toml"
    if not path.is_file():
        raise ValueError(
            f"unknown search space {name!r}; choose one of: {', '.join(space_names())} "
            "(or a .toml file)"
        )
    return path


def load_space(name: str) -> Space:
    """Read and check a search space: every knob a recipe knob, every range non-empty, and
    every edge of it a value the recipe accepts. A ValueError names the file and the knob."""
    path = space_path(name)
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"search space {path}: cannot read it ({exc})") from exc
    try:
        space = Space(**data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"search space {path}: {problems}") from None
    if "validation_split" in space.params:
        raise ValueError(
            f"search space {path}: params.validation_split: trials are scored on the split, so "
            "a space fixes it (validation_split = F at the top), not varies it"
        )
    knobs = [k for k in Recipe.model_fields if k != "validation_split"]
    unknown = sorted(set(space.params) - set(knobs))
    if unknown:
        raise ValueError(
            f"search space {path}: unknown option(s) {', '.join(unknown)}; a space varies "
            f"recipe knobs: {', '.join(knobs)}"
        )
    if not space.params:
        raise ValueError(f"search space {path}: no [params.NAME] to vary")
    try:
        base = load_recipe(space.base).model_dump()
    except ValueError as exc:
        raise ValueError(f"search space {path}: base: {exc}") from None
    for name, param in space.params.items():
        kind = Recipe.model_fields[name].annotation
        if param.choices is None and kind not in (int, float):
            raise ValueError(f"search space {path}: params.{name}: give choices, not a range")
        steps = [param.low, param.high, param.step or 1]
        if param.choices is None and kind is int and any(v != int(v) for v in steps):  # type: ignore[arg-type]
            raise ValueError(f"search space {path}: params.{name}: a whole-number knob")
        for value in param.ends():
            try:
                Recipe(**{**base, name: value})
            except ValidationError as exc:
                why = exc.errors()[0]["msg"]
                raise ValueError(f"search space {path}: params.{name}: {value!r}: {why}") from None
    return space
