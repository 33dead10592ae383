"""What a task on a Dask worker needs: the driver's MLflow store, MNIST prepared once per
worker process, the worker's address, and a place in MLflow for the network it trained."""

from __future__ import annotations

import functools
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

from mnist import data
from mnist import preprocess as pre
from mnist.settings import NanPolicy, TrainConfig
from mnist.tracking import Run

if TYPE_CHECKING:
    import keras
    import pandas as pd

NETWORK = "network"
"""Where a task keeps the network it trained (a .keras file), for the driver to publish."""
PARENT_TAG = "mlflow.parentRunId"


@functools.cache
def _cached(
    data_dir: Path | None,
    split: float,
    seed: int,
    train_limit: int | None,
    test_limit: int | None,
    policy: NanPolicy,
) -> pre.Prepared:
    """MNIST scaled, split and checked, once per worker process for the trials it runs."""
    from mnist.validation import validate

    prepared = pre.prepare(data.load(data_dir), split, seed, train_limit, test_limit)
    splits, _ = validate(prepared.splits(), policy)
    return replace(prepared, **splits)


def worker() -> str:
    """The address of the Dask worker running this task ("local" outside one)."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "local"


def prepared(config: TrainConfig) -> pre.Prepared:
    """MNIST for `config`: scaled, split and checked, once per worker process."""
    return _cached(
        config.data_dir,
        config.validation_split,
        config.seed,
        config.train_limit,
        config.test_limit,
        config.nan_policy,
    )


def keep_network(run: Run, net: keras.Model) -> None:
    """Save `net` in `run` (`network/model.keras`), without its training-only augmentation."""
    from mnist import models

    with tempfile.TemporaryDirectory(prefix="mnist-network-") as scratch:
        path = Path(scratch) / "model.keras"
        models.core(net).save(path)
        run.log_file(path, NETWORK)


def load_network(run_id: str, scratch: Path) -> tuple[keras.Model, pd.DataFrame]:
    """The network a task kept in run `run_id`, and its history."""
    import keras

    from mnist.tracking import call, client

    folder = call(client().download_artifacts, run_id, NETWORK, str(scratch))
    net = cast("keras.Model", keras.models.load_model(Path(folder) / "model.keras"))
    return net, history(run_id, scratch)


def history(run_id: str, scratch: Path) -> pd.DataFrame:
    """The per-epoch history (`history.csv`) that a training run logged."""
    import pandas as pd

    from mnist.tracking import call, client

    return pd.read_csv(call(client().download_artifacts, run_id, "history.csv", str(scratch)))
