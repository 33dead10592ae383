"""The `mnist` command line: parses arguments, calls flows and library functions, prints.

Each command's options are built from the settings classes of `mnist.settings`, so a setting
has one name, one default and one help text everywhere. Heavy libraries (TensorFlow, Prefect)
are imported only by the commands that need them.
"""

from __future__ import annotations

# isort: off
import mnist.env  # noqa: F401  (first: env defaults before Prefect, MLflow, TensorFlow)

# isort: on
import argparse
import atexit
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NoReturn, get_args, get_origin

import pydantic
from pydantic_settings import BaseSettings

from mnist.errors import MnistError
from mnist.settings import (
    CHAMPION,
    DataSettings,
    DatastoreSettings,
    GateSettings,
    NanPolicy,
    PredictSettings,
    Recipe,
    RegistrySettings,
    ServeSettings,
    TrackingSettings,
    TrainConfig,
    WarmStartSettings,
)


def _flag(field: str, cls: type[BaseSettings]) -> str:
    info = cls.model_fields.get(field)
    extra = (info.json_schema_extra if info else None) or {}
    return extra.get("flag") or "--" + field.replace("_", "-")


def _add_options(parser: argparse.ArgumentParser, cls: type[BaseSettings]) -> None:
    """One option per field of `cls`, grouped by the concern that declares it. An option left
    out is None here, so that the settings class applies its variable, recipe or default."""
    prefix = cls.model_config.get("env_prefix", "")
    kinds = (Recipe, DataSettings, WarmStartSettings, TrackingSettings)
    concerns = [c for c in kinds if issubclass(cls, c)]
    concerns = concerns or [cls]
    own = [n for n in cls.model_fields if not any(n in c.model_fields for c in concerns)]
    for i, concern in enumerate(concerns):
        group = parser.add_argument_group((concern.__doc__ or "").strip().splitlines()[0])
        for name in [*(own if i == 0 else []), *concern.model_fields]:
            _add_option(
                group,
                cls,
                name,
                prefix,
                from_recipe=concern is Recipe and name in Recipe.model_fields,
            )


def _add_option(group, cls, name: str, prefix: str, from_recipe: bool) -> None:
    info = cls.model_fields[name]
    extra = info.json_schema_extra or {}
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
    group.add_argument(_flag(name, cls), **kwargs)


def _settings(args: argparse.Namespace, cls: type[BaseSettings]) -> Any:
    """The settings `cls` from the options given; the rest from variables and defaults."""
    given = {k: v for k in cls.model_fields if (v := getattr(args, k, None)) is not None}
    try:
        return cls(**given)
    except pydantic.ValidationError as exc:
        raise _OptionError(exc, cls) from None


class _UsageError(Exception):
    """A bad option, found after parsing: one line and exit status 2."""


class _OptionError(_UsageError):
    def __init__(self, exc: pydantic.ValidationError, cls: type[BaseSettings]):
        errors = [
            f"{_flag(str(e['loc'][0]), cls) if e['loc'] else 'options'}: {e['msg']}"
            for e in exc.errors()
        ]
        super().__init__("invalid option(s): " + "; ".join(errors))


def _print_training(result) -> None:
    version = f"v{result.model_version}" if result.model_version else "not registered"
    holdout = (
        f"holdout:        {result.holdout_accuracy:.4f} on {result.holdout_samples} added images\n"
        if result.holdout_accuracy is not None
        else ""
    )
    print(
        f"\nMLflow run:     {result.run_id}\n"
        f"test accuracy:  {result.test_accuracy:.4f} on {result.test_samples} images\n"
        f"{holdout}"
        f"test loss:      {result.test_loss:.4f}\n"
        f"model:          {result.model_uri} ({version})\n"
        f"plots:          {result.plots}"
    )


def _start_prefect() -> Callable[[], None]:
    """Prefect's console logging (without tracebacks for user errors), and its temporary API
    starting in the background while the caller imports the flow (TensorFlow: about 8 s)."""
    _prefect_logging()
    from flows.temporary_api import start_early

    return start_early()


def _train(args: argparse.Namespace) -> None:
    config = _settings(args, TrainConfig)
    api_started = _start_prefect()
    from prefect import tags

    from flows.training import training_flow

    api_started()
    with tags("mnist", "train", f"model:{config.model}"):
        _print_training(training_flow(config))


def _retrain(args: argparse.Namespace) -> None:
    config, gate = _settings(args, TrainConfig), _settings(args, GateSettings)
    api_started = _start_prefect()
    from prefect import tags

    from flows.retrain import retrain_flow

    api_started()
    with tags("mnist", "retrain", f"model:{config.model}"):
        result = retrain_flow(config, gate)
    if result.unchanged is not None:
        print(
            f"nothing new since v{result.unchanged.version}: the data, recipe and code are "
            "those it was made from; nothing trained or registered (--retrain-unchanged "
            "to train anyway)"
        )
        print(f"champion:       v{result.champion_version or '-'}")
        return
    _print_training(result.training)
    print(f"decision:       {result.decision.verdict}: {result.decision.reason}")
    print(f"champion:       v{result.champion_version or '-'}")


def _registry(args: argparse.Namespace) -> None:
    from mnist import registry

    name = _settings(args, RegistrySettings).registered_model
    if args.action == "list":
        import pandas as pd

        rows = [
            {
                "version": v.version,
                "aliases": ",".join(v.aliases) or "-",
                "test_accuracy": v.tags.get("test_accuracy", "-"),
                "decision": v.tags.get("decision", "-"),
                "run_id": v.run_id,
                "created": v.created.strftime("%Y-%m-%d %H:%M:%S"),
            }
            for v in registry.versions(name)
        ]
        print(pd.DataFrame(rows).to_string(index=False) if rows else f"{name}: no versions")
    elif args.action == "show":
        if args.version and args.alias:
            raise MnistError("give a VERSION or --alias, not both")
        alias = args.alias if args.alias or args.version else CHAMPION
        v = registry.get(name, args.version, alias)
        print(f"{v.name} v{v.version}  aliases: {', '.join(v.aliases) or '-'}")
        print(f"uri:      {v.uri}\nrun:      {v.run_id}\nsource:   {v.source}")
        print(f"created:  {v.created:%Y-%m-%d %H:%M:%S %Z}")
        for key in sorted(v.tags):
            print(f"{key + ':':22}{v.tags[key]}")
    elif args.action == "promote":
        v = registry.promote(args.version, name, args.reason or "promoted by hand")
        print(f"champion is now {name} v{v.version}")
    elif args.action == "rollback":
        v = registry.rollback(name)
        print(f"rolled back: champion is now {name} v{v.version}")
    elif args.action == "history":
        events = registry.history(name)
        if events.empty:
            print(f"{name}: no champion history yet")
        else:
            events["time"] = events["time"].dt.strftime("%Y-%m-%d %H:%M:%S")
            print(events.to_string(index=False))


def _predict(args: argparse.Namespace) -> None:
    settings = _settings(args, PredictSettings)
    from mnist import inference, tracking

    images, names = inference.read_inputs([Path(p) for p in args.inputs])
    model = tracking.load_model(settings.model)
    out = inference.predict(model, images, names, settings.nan_policy)
    if out.report.problems:
        print(f"validation: {out.report.summary()} (policy {settings.nan_policy})", file=sys.stderr)
    if args.output:
        out.table.to_csv(args.output, index=False)
        print(f"wrote {len(out.table)} predictions to {args.output}")
    else:
        print(out.table.to_string(index=False))


def _data(args: argparse.Namespace) -> None:
    from mnist import datastore

    store = datastore.Store(_settings(args, DatastoreSettings).datastore)
    if args.action == "add":
        from mnist import intake

        paths = [Path(p) for p in args.paths]
        source = datastore.check_source(args.source or _source_name(paths[0]))
        label = _label(args.label)
        found = intake.read(paths, label, args.nan_policy or "fail")
        for what, why in found.rejected:
            print(f"rejected {what}: {why}")
        if not len(found.labels):
            raise MnistError("nothing to add: every sample was rejected")
        batch = store.add(found.images, found.labels, source, " ".join(args.paths))
        per_digit = ", ".join(f"{d}: {n}" for d, n in batch.counts.items() if n)
        print(
            f"added batch {batch.id} ({source}): {batch.samples} samples ({per_digit}); "
            f"{batch.holdout} held out for evaluation\ndigest {batch.digest}"
        )
    elif args.action == "list":
        import pandas as pd

        rows = [
            {
                "batch": b.id,
                "source": b.source,
                "samples": b.samples,
                **{str(d): n for d, n in b.counts.items()},
                "holdout": b.holdout,
                "digest": b.digest[:12],
                "added": f"{b.created:%Y-%m-%d %H:%M}",
                "status": f"removed {b.removed:%Y-%m-%d %H:%M}" if b.removed else "active",
            }
            for b in store.batches()
        ]
        print(pd.DataFrame(rows).to_string(index=False) if rows else f"{store}: no batches")
    elif args.action == "remove":
        batch = store.remove(args.batch)
        print(
            f"removed batch {batch.id} ({batch.source}, {batch.samples} samples) from future "
            "training; it stays in the store's history"
        )


def _source_name(path: Path) -> str:
    """A source name from a path: its stem, reduced to the characters a source name allows."""
    import re

    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.resolve().stem if path.is_dir() else path.stem)
    return name.strip("-.")[:64] or "added"


def _label(value: str | None) -> int | None:
    if value is None:
        return None
    from mnist.digits import LABELS

    if value not in LABELS:
        raise _UsageError(f"--label: expected a digit 0-9, got {value!r}")
    return int(value)


def _serve(args: argparse.Namespace) -> None:
    settings = _settings(args, ServeSettings)
    import uvicorn

    from app.serve import create_app

    store = _settings(args, DatastoreSettings).datastore
    app = create_app(settings, store)
    app.state.holder.refresh()  # no model, no server: one line, before uvicorn starts
    print(f"serving {settings.model} on http://{settings.host}:{settings.port}/", flush=True)
    if settings.feedback:
        from mnist import datastore

        where = datastore.safe_url(store or datastore.default_url())
        print(f"feedback (POST /feedback) is stored in {where}", flush=True)
    # On Ctrl-C or SIGTERM uvicorn stops gracefully, then raises the signal again: `main`
    # reports it in one line (`uvicorn.run` would swallow a Ctrl-C and exit 0).
    config = uvicorn.Config(app, settings.host, settings.port, log_level=settings.log_level)
    uvicorn.Server(config).run()


def _models(args: argparse.Namespace) -> None:
    from mnist import models

    for name in sorted(models.ARCHITECTURES):
        net = models.build(name)
        doc = (models.ARCHITECTURES[name].__doc__ or "").strip().splitlines()[0]
        print(f"{name:10} {net.count_params():>8,} parameters  {doc}")


def _doctor(args: argparse.Namespace) -> None:
    from flows.stale_runs import close_stale_runs
    from mnist import locks, registry, tracking

    print(f"store: {tracking.store_uri()}")
    stale, crashed = close_stale_runs(api_needed=lambda: _start_prefect()())
    for flow_run in crashed:
        print(f"marked CRASHED: Prefect flow run {flow_run}")
    for run in stale:
        why = (
            f"its Prefect flow run ended {run.flow_state}"
            if run.flow_state
            else (f"its process {run.pid} is gone")
        )
        print(f"closed: MLflow run {run.run_id} ({run.name}): {why}")
    for model in tracking.call(tracking.client().search_registered_models):
        if registry.repair_history(model.name):
            print(f"recorded the last champion move of {model.name}, lost in a crash")
    for path in sorted(tracking.state_dir().glob("*-champion-gate.lock")):
        holder = locks.holder(path)
        print(f"{path.stem}: {f'held by {holder}' if holder else 'free'}")
    if not stale:
        print("no runs left open by killed processes")


def _recipes(args: argparse.Namespace) -> None:
    from mnist.settings import load_recipe, recipe_names, recipe_path

    for name in recipe_names():
        recipe = load_recipe(name)
        print(f"{name:10} {recipe.model:10} {recipe.epochs:>3} epochs  {recipe_path(name)}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mnist", description="Train, track and use MNIST digit classifiers."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func, help: str, *settings: type[BaseSettings]):
        cmd = sub.add_parser(name, help=help, description=help)
        for cls in settings:
            _add_options(cmd, cls)
        cmd.set_defaults(func=func)
        return cmd

    command("train", _train, "run the training flow (Prefect) tracked in MLflow", TrainConfig)
    command(
        "retrain",
        _retrain,
        "train a challenger and promote it to champion if it passes the gate",
        TrainConfig,
        GateSettings,
    )

    reg = command(
        "registry",
        _registry,
        "the MLflow model registry: versions, champion, history",
        RegistrySettings,
    )
    actions = reg.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="every version, newest first")
    show = actions.add_parser("show", help="one version (default: the champion)")
    show.add_argument("version", nargs="?", help="version number")
    show.add_argument("--alias", help="look the version up by alias")
    promote = actions.add_parser("promote", help="make VERSION the champion")
    promote.add_argument("version")
    promote.add_argument("--reason", help="why (kept in the history)")
    actions.add_parser("rollback", help="give champion back to the previous holder")
    actions.add_parser("history", help="every gate decision and champion move")

    predict = command("predict", _predict, "predict digits with a saved model", PredictSettings)
    predict.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help=".npy/.npz arrays of raw pixels, CSV rows, PNG/JPEG images of digits",
    )
    predict.add_argument("--output", metavar="CSV", help="write predictions here instead")

    data = command(
        "data", _data, "labelled data added to MNIST for training: add, list, remove batches"
    )
    data_actions = data.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = data_actions.add_parser(
        "add",
        help="add a batch: PNG/JPEG files (with --label), a folder of 0/..9/ folders, "
        "a CSV label,pixel0..pixel783, or .npz with x and y",
    )
    add.add_argument("paths", nargs="+", metavar="PATH")
    add.add_argument("--label", help="the digit (0-9) of the image files given")
    add.add_argument(
        "--source",
        help="where the samples come from (default: the first "
        "PATH's name); the holdout is reported per source",
    )
    add.add_argument(
        "--nan-policy",
        choices=get_args(NanPolicy),
        help="invalid samples: fail (add nothing), drop them, or impute pixels (default fail)",
    )
    data_actions.add_parser("list", help="every batch: source, counts per digit, digest, status")
    remove = data_actions.add_parser("remove", help="retract BATCH from future training")
    remove.add_argument("batch", type=int, metavar="BATCH")
    for action in data_actions.choices.values():
        _add_options(action, DatastoreSettings)

    command(
        "serve",
        _serve,
        "serve a model: REST API and a draw-a-digit page",
        ServeSettings,
        DatastoreSettings,
    )
    command("models", _models, "list the model architectures")
    command("recipes", _recipes, "list the training recipes (--profile NAME)")
    command("doctor", _doctor, "close runs left open by killed processes; show the gate locks")
    return p


class _OneLineUserErrors(logging.Filter):
    """Keep tracebacks of expected user errors (MnistError) out of Prefect's console log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], MnistError):
            record.exc_info = None
            record.exc_text = None
        return True


def _prefect_logging() -> None:
    """Prefect's console logging, without tracebacks for user errors, which Prefect logs for a
    failed task and flow on several loggers."""
    from prefect.logging.configuration import setup_logging

    setup_logging()
    quiet = _OneLineUserErrors()
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "prefect"]
    for logger in map(logging.getLogger, ["prefect", *names]):
        for handler in logger.handlers:
            handler.addFilter(quiet)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager's stop), handled as Ctrl-C is: runs are closed, then exit."""


_INTERRUPTS = {signal.SIGINT: KeyboardInterrupt, signal.SIGTERM: _Terminated}


def _interrupt(signum, frame) -> None:
    from mnist import stopping

    stopping.request(_INTERRUPTS[signum])


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, _interrupt) for s in _INTERRUPTS} if in_main_thread else {}
    try:
        args.func(args)
    except _UsageError as exc:
        print(f"mnist: error: {exc}", file=sys.stderr)
        return 2
    except MnistError as exc:
        print(f"mnist: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader of the output went away (`mnist ... | head`)
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt as exc:
        print("mnist: interrupted", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def run() -> NoReturn:
    """The `mnist` command: `main`, then an exit without the interpreter's teardown of
    TensorFlow (about 2 s), once everything is written, in CPython's own order: threads'
    exit hooks (Prefect's event worker drains there), then the exit handlers (logging,
    Prefect's log worker), then the standard streams."""
    code = main()
    threading._shutdown()
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader went away (`| head`)
        code = code or 128 + signal.SIGPIPE
    except OSError:
        code = code or 1
    os._exit(code)


if __name__ == "__main__":
    run()
