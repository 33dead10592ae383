"""Command-line options generated from the settings classes of `mnist.settings`.

One option per field, named `--field-name` (or the field's `flag`), its help text the field's
description followed by `[env VARIABLE; default X]`. An option left out stays None, so that the
settings class applies its variable, recipe or default. ADR 0030 says why this is argparse code
of ours rather than pydantic-settings' CLI source or Typer.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal, TypeVar, get_args, get_origin

import pydantic
from pydantic_settings import BaseSettings

from mnist import durations
from mnist.errors import MnistError
from mnist.settings import DataSettings, Recipe, TrackingSettings, WarmStartSettings

S = TypeVar("S", bound=BaseSettings)
Command = Callable[[argparse.Namespace], None]


class UsageError(Exception):
    """A bad option, found after parsing: one line and exit status 2."""


class OptionError(UsageError):
    """Settings that do not validate, one `--option: problem` per error, on one line."""

    def __init__(self, exc: pydantic.ValidationError, cls: type[BaseSettings]):
        errors = [
            f"{flag(str(e['loc'][0]), cls) if e['loc'] else 'options'}: {e['msg']}"
            for e in exc.errors()
        ]
        super().__init__("invalid option(s): " + "; ".join(errors))


class BadDuration(argparse.ArgumentTypeError, UsageError):
    """A duration option that is not `<number><unit>`: argparse's error as a `type=`, else a
    UsageError (one line, exit status 2)."""


def parse_duration(text: str) -> timedelta:
    """A duration such as `30m`, `24h`, `7d` (`mnist.durations`), for `--since`-like options."""
    try:
        return durations.parse(text)
    except MnistError as exc:
        raise BadDuration(str(exc)) from None


def flag(field: str, cls: type[BaseSettings]) -> str:
    """The option of `field`: its `flag` if it declares one, else `--field-name`."""
    info = cls.model_fields.get(field)
    extra = info.json_schema_extra if info else None
    given = extra.get("flag") if isinstance(extra, dict) else None
    return str(given) if given else "--" + field.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, cls: type[BaseSettings]) -> None:
    """One option per field of `cls`, grouped by the concern that declares it."""
    prefix = cls.model_config.get("env_prefix", "")
    kinds = (Recipe, DataSettings, WarmStartSettings, TrackingSettings)
    concerns: list[type[pydantic.BaseModel]] = [c for c in kinds if issubclass(cls, c)]
    concerns = concerns or [cls]
    own = [n for n in cls.model_fields if not any(n in c.model_fields for c in concerns)]
    for i, concern in enumerate(concerns):
        group = parser.add_argument_group((concern.__doc__ or "").strip().splitlines()[0])
        for name in [*(own if i == 0 else []), *concern.model_fields]:
            recipe = concern is Recipe and name in Recipe.model_fields
            _add_option(group, cls, name, prefix, from_recipe=recipe)


def _add_option(
    group: argparse._ArgumentGroup,
    cls: type[BaseSettings],
    name: str,
    prefix: str,
    from_recipe: bool,
) -> None:
    info = cls.model_fields[name]
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if from_recipe:
        default = "from the recipe"
    elif info.is_required():
        default = "required"
    else:
        default = f"default {'none' if info.default is None else info.default}"
    choices = get_args(info.annotation) if get_origin(info.annotation) is Literal else ()
    one_of = f"; one of {', '.join(choices)}" if choices else ""
    help = f"{info.description} [env {prefix}{name.upper()}; {default}{one_of}]"
    kwargs: dict[str, Any] = {"dest": name, "default": None, "help": help}
    if info.annotation is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        kwargs["metavar"] = extra.get("metavar") or name.upper()
    group.add_argument(flag(name, cls), **kwargs)


def settings(args: argparse.Namespace, cls: type[S]) -> S:
    """The settings `cls` from the options given; the rest from variables and defaults."""
    given = {k: v for k in cls.model_fields if (v := getattr(args, k, None)) is not None}
    try:
        return cls(**given)
    except pydantic.ValidationError as exc:
        raise OptionError(exc, cls) from None


def add_command(
    commands: argparse._SubParsersAction,
    name: str,
    func: Command,
    help: str,
    *classes: type[BaseSettings],
) -> argparse.ArgumentParser:
    """The subcommand `name`, running `func`, with the options of each settings class."""
    command = commands.add_parser(name, help=help, description=help)
    for cls in classes:
        add_options(command, cls)
    command.set_defaults(func=func)
    return command
