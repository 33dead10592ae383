"""The one door to MLflow: the store, runs, logged models and loading them, stale runs.

Every MLflow call of the project goes through `call` (`mnist.tracking.store`), which turns any
failure (an unreachable server included) into one `MnistError` naming the store. Runs and what
they log are in `mnist.tracking.runs`, model files, their audit and loading in
`mnist.tracking.model_files`, runners (a model answering through ONNX Runtime or Keras) in
`mnist.tracking.runners`, runs left behind by dead processes in `mnist.tracking.stale`.

Names load with their module on first use (PEP 562): `load_runner` on a local model directory
imports neither MLflow nor TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mnist.tracking.model_files import (
        KERAS_MODULES,
        MODEL_ARTIFACT,
        ONNX_FILE,
        PICKLES,
        PYFUNC_LOADER,
        PYFUNC_LOADER_DIGESTS,
        check_logged_model,
        load_model,
    )
    from mnist.tracking.runners import Runner, load_runner
    from mnist.tracking.runs import (
        Input,
        LoggedModel,
        Run,
        code_version,
        experiment_id,
        pip_requirements,
    )
    from mnist.tracking.stale import StaleRun, fail_stale_runs, stale_runs
    from mnist.tracking.store import (
        NOT_FOUND,
        NotFound,
        call,
        client,
        state_dir,
        store_uri,
        use_store,
    )

_WHERE = {
    "model_files": (
        "KERAS_MODULES",
        "MODEL_ARTIFACT",
        "ONNX_FILE",
        "PICKLES",
        "PYFUNC_LOADER",
        "PYFUNC_LOADER_DIGESTS",
        "check_logged_model",
        "load_model",
    ),
    "runners": ("Runner", "load_runner"),
    "runs": ("Input", "LoggedModel", "Run", "code_version", "experiment_id", "pip_requirements"),
    "stale": ("StaleRun", "fail_stale_runs", "stale_runs"),
    "store": (
        "NOT_FOUND",
        "NotFound",
        "call",
        "client",
        "state_dir",
        "store_uri",
        "use_store",
    ),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "KERAS_MODULES",
    "MODEL_ARTIFACT",
    "NOT_FOUND",
    "ONNX_FILE",
    "PICKLES",
    "PYFUNC_LOADER",
    "PYFUNC_LOADER_DIGESTS",
    "Input",
    "LoggedModel",
    "NotFound",
    "Run",
    "Runner",
    "StaleRun",
    "call",
    "check_logged_model",
    "client",
    "code_version",
    "experiment_id",
    "fail_stale_runs",
    "load_model",
    "load_runner",
    "pip_requirements",
    "stale_runs",
    "state_dir",
    "store_uri",
    "use_store",
]


def __getattr__(name: str) -> Any:
    if (module := _MODULE_OF.get(name)) is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})
