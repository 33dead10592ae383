"""The `mnist` command line: parses arguments, calls flows and library functions, prints."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mnist.env import apply_defaults

apply_defaults()

import pydantic  # noqa: E402

from mnist.config import TrainConfig  # noqa: E402
from mnist.errors import MnistError  # noqa: E402


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per config field; unset options fall back to MNIST_* variables, then defaults."""
    for name, info in TrainConfig.model_fields.items():
        default = "none" if info.default is None else info.default
        parser.add_argument(
            _flag(name),
            dest=name,
            default=None,
            metavar=name.upper(),
            help=f"{info.description} [env MNIST_{name.upper()}; default {default}]",
        )


def _config(args: argparse.Namespace) -> TrainConfig:
    given = {k: v for k in TrainConfig.model_fields if (v := getattr(args, k, None)) is not None}
    return TrainConfig(**given)


def _train(args: argparse.Namespace) -> None:
    config = _config(args)
    from prefect import tags

    from flows.training import training_flow

    with tags("mnist", f"model:{config.model}"):
        result = training_flow(config)
    print(
        f"\nMLflow run:     {result.run_id}\n"
        f"test accuracy:  {result.test_accuracy:.4f} on {result.test_samples} images\n"
        f"test loss:      {result.test_loss:.4f}\n"
        f"model:          {result.model_uri}\n"
        f"plots:          {result.plots}"
    )


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
        help=".npy/.npz arrays, CSV rows, PNG/JPEG images (28x28, dark background)",
    )
    predict.add_argument("--output", metavar="CSV", help="write predictions here instead")
    predict.add_argument(
        "--nan-policy",
        choices=("fail", "drop", "impute"),
        default="fail",
        help="what to do with NaN/Inf/out-of-range inputs [default fail]",
    )
    predict.set_defaults(func=_predict)

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


def _quiet_user_errors() -> None:
    """Prefect logs a failed task's and flow's exception with its traceback, on several loggers."""
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
        import prefect.logging.configuration  # noqa: F401  (sets up Prefect's handlers)

        if args.command == "train":
            from prefect.logging.configuration import setup_logging

            setup_logging()
            _quiet_user_errors()
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
