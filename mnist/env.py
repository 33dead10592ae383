"""Process-wide defaults, applied on import, before Prefect, MLflow or TensorFlow load.

Every entry point (CLI, flows, tasks, tests) imports this first. Only defaults: any variable
the user has set wins.
"""

import os

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
    # An unreachable MLflow server, or one that accepts connections and never answers, fails
    # in about 30 s (3 tries of at most 10 s each) rather than after minutes.
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    # oneDNN kernels: 24% faster training on this project's 2-core CPUs (bench/training.py);
    # must be set before TensorFlow loads.
    "TF_ENABLE_ONEDNN_OPTS": "1",
    # TensorFlow's C++ start-up chatter hides the pipeline's own output; so does MLflow's
    # ("Creating initial MLflow database tables..." on every new store).
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    # MLflow's download progress bar, one line per file on stderr even when it is no terminal:
    # noise around the one line a command prints.
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def apply_defaults() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)


apply_defaults()
