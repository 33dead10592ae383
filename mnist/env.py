"""Process-wide defaults, applied on import, before Prefect, MLflow or TensorFlow load.

Every entry point (CLI, flows, tasks, tests) imports this first. Only defaults: any variable
the user has set wins.
"""

import os

from mnist import outages
from mnist.errors import MnistError

TEMPORARY_PREFECT_API = "MNIST_TEMPORARY_PREFECT_API"
"""Set to the URL of the Prefect API that this process started for itself (`flows.temporary_api`): a
server of its own, not one shared with other machines."""

DEFAULTS = {
    # No telemetry to the internet unless asked for.
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    # The ephemeral Prefect API can take over 20 s to start on a loaded 2-core machine.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # A request to an MLflow server that accepts connections and never answers ends after
    # 10 s, and is tried again (retries: `mnist.outages`).
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    # oneDNN kernels: 24% faster training on this project's 2-core CPUs (bench/training.py);
    # must be set before TensorFlow loads.
    "TF_ENABLE_ONEDNN_OPTS": "1",
    # No transparent huge pages for NumPy's large arrays: where the kernel gives them only on
    # request (`madvise`), the first touch of a new one can stall for compaction, and scaling
    # and splitting MNIST took 1.2-3.8 s instead of 0.2-0.5 s (ADR 0099); read when NumPy loads.
    "NUMPY_MADVISE_HUGEPAGE": "0",
    # TensorFlow's C++ start-up chatter hides the pipeline's own output; so does MLflow's
    # ("Creating initial MLflow database tables..." on every new store).
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    # MLflow's download progress bar, one line per file on stderr even when it is no terminal:
    # noise around the one line a command prints.
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # Dask's own INFO lines (every worker and nanny starting and closing) around a sweep's.
    "DASK_LOGGING__DISTRIBUTED": "warning",
}


def _outage_seconds() -> float:
    try:
        return outages.limit()
    except MnistError:  # a wrong value: the command line says so in one line
        return outages.DEFAULT_SECONDS


def apply_defaults() -> None:
    """`DEFAULTS`, and the clients' retries that ride out `MNIST_OUTAGE_SECONDS` of outage."""
    for key, value in {**DEFAULTS, **outages.client_settings(_outage_seconds())}.items():
        os.environ.setdefault(key, value)


apply_defaults()
