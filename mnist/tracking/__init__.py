"""The one door to MLflow: the store, runs, logged models and loading them, stale runs.

Every MLflow call of the project goes through `call` (`mnist.tracking.store`), which turns any
failure (an unreachable server included) into one `MnistError` naming the store. Runs and what
they log are in `mnist.tracking.runs`, model files, their audit and loading in
`mnist.tracking.model_files`, runs left behind by dead processes in `mnist.tracking.stale`.
"""

from mnist.tracking.model_files import (
    KERAS_MODULES,
    MODEL_ARTIFACT,
    PICKLES,
    PYFUNC_LOADER,
    PYFUNC_LOADER_DIGESTS,
    check_logged_model,
    load_model,
)
from mnist.tracking.runs import Input, Run, code_version, experiment_id, pip_requirements
from mnist.tracking.stale import StaleRun, fail_stale_runs, stale_runs
from mnist.tracking.store import (
    NOT_FOUND,
    RESTART_SECONDS,
    NotFound,
    call,
    client,
    state_dir,
    store_uri,
)

__all__ = [
    "KERAS_MODULES",
    "MODEL_ARTIFACT",
    "NOT_FOUND",
    "PICKLES",
    "PYFUNC_LOADER",
    "PYFUNC_LOADER_DIGESTS",
    "RESTART_SECONDS",
    "Input",
    "NotFound",
    "Run",
    "StaleRun",
    "call",
    "check_logged_model",
    "client",
    "code_version",
    "experiment_id",
    "fail_stale_runs",
    "load_model",
    "pip_requirements",
    "stale_runs",
    "state_dir",
    "store_uri",
]
