"""The store addresses each command takes, checked before the command runs (`main` calls
`check`): a wrong one is one line, before TensorFlow, Prefect or MLflow load.

MLflow's (`MLFLOW_TRACKING_URI`, `MLFLOW_REGISTRY_URI`) for the commands that read or write
runs and models; the added-data store (`--datastore`, `MNIST_DATASTORE`) for those that read or
write it; the Prefect API (`PREFECT_API_URL`) for those that run flows, and only its form for
`mnist data` and `mnist serve`, whose events are hints that never fail a command (ADR 0068).
What is left unset is the embedded default (a SQLite file, a temporary Prefect API): nothing to
check. Rules in `mnist.addresses`.
"""

from __future__ import annotations

import argparse

from app.cli.options import settings
from mnist import addresses, outages
from mnist.addresses import Address
from mnist.settings import (
    DaskSettings,
    DataSettings,
    DatastoreSettings,
    PredictSettings,
    ServeSettings,
    SweepSettings,
)

FLOWS = ("train", "retrain", "sweep", "ensemble", "monitor", "doctor")
"""Commands that run Prefect flows."""
EVENTS = ("data", "serve")
"""Commands that send Prefect events, when `PREFECT_API_URL` is set."""


def _model_in_a_store(ref: str) -> bool:
    """Whether a model reference is looked up in MLflow (not a local file or directory)."""
    from mnist.references import ModelRef

    return ModelRef.parse(ref).tracked


def _uses_mlflow(args: argparse.Namespace) -> bool:
    command = args.command
    if command == "predict":
        return _model_in_a_store(settings(args, PredictSettings).model)
    if command == "export":
        return args.version.isdigit() or _model_in_a_store(args.version)
    return command in (*FLOWS, "registry")


def _uses_datastore(args: argparse.Namespace) -> bool:
    if args.command in ("train", "retrain"):
        return settings(args, DataSettings).added_data
    return args.command in ("data", "monitor")


def of(args: argparse.Namespace) -> list[Address]:
    """The addresses the command `args` takes, set by its options or the environment."""
    store = settings(args, DatastoreSettings).datastore if hasattr(args, "datastore") else None
    if args.command == "serve":  # what `app.serve.create_app` checks too
        chosen = settings(args, ServeSettings)
        found = addresses.serving(chosen.model, store, chosen.feedback or chosen.prediction_log)
    else:
        found = addresses.tracking() if _uses_mlflow(args) else []
        found += addresses.datastore(store) if _uses_datastore(args) else []
    if args.command == "sweep":
        storage = settings(args, SweepSettings).storage
        found += addresses.named(storage, "--storage", "MNIST_SWEEP_STORAGE", "datastore")
    if args.command in ("sweep", "ensemble"):
        dask = settings(args, DaskSettings).dask_address
        found += addresses.named(dask, "--dask-address", "MNIST_DASK_ADDRESS", "dask")
    if args.command in (*FLOWS, *EVENTS):
        found += addresses.prefect(reach=args.command in FLOWS)
    return found


def check(args: argparse.Namespace) -> None:
    """Raise `mnist.addresses.WrongAddress` (one line) for a wrong address of `args`'s command,
    `MnistError` for a wrong `MNIST_OUTAGE_SECONDS`."""
    outages.limit()
    addresses.check(of(args))
