"""The `mnist` command line: parses arguments, calls flows and library functions, prints."""

from __future__ import annotations

# isort: off
import mnist.env  # noqa: F401  (first: env defaults before Prefect, MLflow, TensorFlow)

# isort: on
import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import pydantic

from mnist.config import NanPolicy, TrainConfig
from mnist.errors import MnistError


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per config field; unset options fall back to MNIST_* variables, then defaults."""
    for name, info in TrainConfig.model_fields.items():
        default = "none" if info.default is None else info.default
        help = f"{info.description} [env MNIST_{name.upper()}; default {default}]"
        flag = (info.json_schema_extra or {}).get("flag") or _flag(name)
        if info.annotation is bool:
            parser.add_argument(
                flag, dest=name, default=None, action=argparse.BooleanOptionalAction,
                help=help,
            )  # fmt: skip
        else:
            parser.add_argument(flag, dest=name, default=None, metavar=name.upper(), help=help)


def _config(args: argparse.Namespace) -> TrainConfig:
    given = {k: v for k in TrainConfig.model_fields if (v := getattr(args, k, None)) is not None}
    return TrainConfig(**given)


def _print_training(result) -> None:
    version = f"v{result.model_version}" if result.model_version else "not registered"
    print(
        f"\nMLflow run:     {result.run_id}\n"
        f"test accuracy:  {result.test_accuracy:.4f} on {result.test_samples} images\n"
        f"test loss:      {result.test_loss:.4f}\n"
        f"model:          {result.model_uri} ({version})\n"
        f"plots:          {result.plots}"
    )


def _before_flow(args: argparse.Namespace) -> tuple[TrainConfig, Callable[[], None]]:
    """The run's config (checked first), Prefect's logging, and its temporary API starting
    in the background while the caller imports the flow (TensorFlow: about 8 s)."""
    config = _config(args)
    _prefect_logging()
    from flows.api import start_early

    return config, start_early()


def _train(args: argparse.Namespace) -> None:
    config, api_started = _before_flow(args)
    from prefect import tags

    from flows.training import training_flow

    api_started()
    with tags("mnist", "train", f"model:{config.model}"):
        _print_training(training_flow(config))


def _retrain(args: argparse.Namespace) -> None:
    config, api_started = _before_flow(args)
    from prefect import tags

    from flows.retrain import retrain_flow

    api_started()
    with tags("mnist", "retrain", f"model:{config.model}"):
        result = retrain_flow(config, floor=args.floor, margin=args.margin)
    _print_training(result.training)
    verdict = "promoted" if result.decision.promote else "rejected"
    print(f"decision:       {verdict}: {result.decision.reason}")
    print(f"champion:       v{result.champion_version or '-'}")


def _registry(args: argparse.Namespace) -> None:
    import pandas as pd

    from mnist import registry

    name = args.name
    if args.action == "list":
        rows = [
            {"version": v.version, "aliases": ",".join(v.aliases) or "-",
             "test_accuracy": v.tags.get("test_accuracy", "-"),
             "decision": v.tags.get("decision", "-"), "run_id": v.run_id,
             "created": v.created.strftime("%Y-%m-%d %H:%M:%S")}
            for v in registry.versions(name)
        ]  # fmt: skip
        print(pd.DataFrame(rows).to_string(index=False) if rows else f"{name}: no versions")
    elif args.action == "show":
        if args.version and args.alias:
            raise MnistError("give a VERSION or --alias, not both")
        alias = args.alias if args.alias or args.version else registry.CHAMPION
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
    from mnist import inference

    images, names = inference.read_inputs([Path(p) for p in args.inputs])
    model = inference.load_model(args.model)
    out = inference.predict(model, images, names, args.nan_policy)
    if out.report.problems:
        print(f"validation: {out.report.summary()} (policy {args.nan_policy})", file=sys.stderr)
    if args.output:
        out.table.to_csv(args.output, index=False)
        print(f"wrote {len(out.table)} predictions to {args.output}")
    else:
        print(out.table.to_string(index=False))


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from mnist.serving import Limits, create_app

    app = create_app(args.model, args.poll_seconds, Limits(args.max_images, args.max_bytes))
    print(f"serving {args.model} on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


def _models(args: argparse.Namespace) -> None:
    from mnist import models

    for name in sorted(models.ARCHITECTURES):
        net = models.build(name)
        doc = (models.ARCHITECTURES[name].__doc__ or "").strip().splitlines()[0]
        print(f"{name:10} {net.count_params():>8,} parameters  {doc}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mnist", description="Train, track and use MNIST digit classifiers."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="run the training flow (Prefect) tracked in MLflow")
    _add_config_options(train)
    train.set_defaults(func=_train)

    retrain = sub.add_parser(
        "retrain", help="train a challenger and promote it to champion if it passes the gate"
    )
    _add_config_options(retrain)
    retrain.add_argument(
        "--floor",
        type=float,
        default=0.99,
        help="minimum test accuracy for promotion [default 0.99]",
    )
    retrain.add_argument(
        "--margin",
        type=float,
        default=0.0,
        help="how much the challenger must beat the champion by [default 0]",
    )
    retrain.set_defaults(func=_retrain)

    reg = sub.add_parser("registry", help="the MLflow model registry: versions, champion, history")
    reg.add_argument("--name", default="mnist-cnn", help="registered model [default mnist-cnn]")
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
    reg.set_defaults(func=_registry)

    predict = sub.add_parser("predict", help="predict digits with a saved model")
    predict.add_argument(
        "--model",
        required=True,
        metavar="REF",
        help="PATH (.keras or MLflow model dir), runs:/ID/model or models:/NAME@ALIAS",
    )
    predict.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help=".npy/.npz arrays of raw pixels, CSV rows, PNG/JPEG images of digits",
    )
    predict.add_argument("--output", metavar="CSV", help="write predictions here instead")
    predict.add_argument(
        "--nan-policy",
        choices=get_args(NanPolicy),
        default="fail",
        help="what to do with NaN/Inf/out-of-range inputs [default fail]",
    )
    predict.set_defaults(func=_predict)

    serve = sub.add_parser("serve", help="serve a model: REST API and a draw-a-digit page")
    serve.add_argument(
        "--model",
        default="models:/mnist-cnn@champion",
        metavar="REF",
        help="model to serve [default models:/mnist-cnn@champion]",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind [default 127.0.0.1]")
    serve.add_argument("--port", type=int, default=8000, help="port [default 8000]")
    serve.add_argument(
        "--poll-seconds",
        type=float,
        default=30.0,
        help="how often to check whether the alias moved; 0: only on POST /reload [default 30]",
    )
    serve.add_argument(
        "--max-images", type=int, default=1000, help="most images in one request [default 1000]"
    )
    serve.add_argument(
        "--max-bytes",
        type=int,
        default=8 * 1024 * 1024,
        help="largest request body [default 8 MiB]",
    )
    serve.add_argument("--log-level", default="warning", help="uvicorn log level [default warning]")
    serve.set_defaults(func=_serve)

    models = sub.add_parser("models", help="list the model architectures")
    models.set_defaults(func=_models)
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


def _pydantic_message(exc: pydantic.ValidationError) -> str:
    errors = [
        f"{_flag(str(e['loc'][0])) if e['loc'] else 'config'}: {e['msg']}" for e in exc.errors()
    ]
    return "invalid option(s): " + "; ".join(errors)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except MnistError as exc:
        print(f"mnist: error: {exc}", file=sys.stderr)
        return 1
    except pydantic.ValidationError as exc:
        print(f"mnist: error: {_pydantic_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mnist: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
