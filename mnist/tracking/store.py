"""The tracking store: where it is, a client for it, and `call`, through which every MLflow call
of the project goes, so that any failure is one `MnistError` naming the store.

The store is MLflow's default (`sqlite:///mlflow.db`, artifacts in `./mlruns`) unless
`MLFLOW_TRACKING_URI` says otherwise. A new SQLite store is created once, under a file lock.
MLflow's own HTTP retries (`MLFLOW_HTTP_REQUEST_*`, set in `mnist.env`) handle a slow or failing
server; `call` adds only the wait for a server that refuses connections while it restarts
(decision record 0010).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mnist import outages
from mnist.addresses import safe_url
from mnist.errors import MnistError, chain, first_line

log = logging.getLogger("mnist.tracking")
# MLflow logs a store error with its traceback before raising it; `call` turns it into one line.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
T = TypeVar("T")


class NotFound(MnistError):
    """The experiment, run, model, version or alias asked for does not exist."""


def store_uri() -> str:
    return mlflow.get_tracking_uri()


def use_store(uri: str) -> None:
    """Track to `uri` from now on in this process (a Dask worker logging to its driver's
    store)."""
    mlflow.set_tracking_uri(uri)


def _remote() -> bool:
    return store_uri().startswith(("http://", "https://"))


def _unreachable(exc: BaseException) -> bool:
    """Whether no connection could be made, or none that answered, after MLflow's retries."""
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    return any(isinstance(e, (MaxRetryError, NewConnectionError)) for e in chain(exc))


def call(fn: Callable[..., T], *args: Any, missing: str | None = None, **kwargs: Any) -> T:
    """Run an MLflow call, turning its errors into one line naming the store; `missing` is
    the message for something that does not exist. A tracking server that is away (refuses
    connections, times out, answers 5xx) is retried by MLflow's client for at least
    `MNIST_OUTAGE_SECONDS` (`mnist.outages`), then named in one line (`StoreAway`)."""
    _initialise(store_uri())
    try:
        return fn(*args, **kwargs)
    except (MlflowException, OSError) as exc:
        raise _one_line(exc, missing) from exc


def _one_line(exc: BaseException, missing: str | None) -> MnistError:
    if isinstance(exc, MlflowException):
        if missing and exc.error_code in NOT_FOUND:
            return NotFound(missing)
        if _unreachable(exc) or (_remote() and exc.error_code == "TEMPORARILY_UNAVAILABLE"):
            return _gave_up()  # or its database away: the server answers 503 past the retries
        return MnistError(f"MLflow at {store_uri()}: {first_line(exc)}")
    if _remote() and _unreachable(exc):  # requests' ConnectionError: an OSError
        return _gave_up()
    return MnistError(f"MLflow at {store_uri()}: {getattr(exc, 'strerror', None) or exc}")


def _gave_up() -> outages.StoreAway:
    where = f"the MLflow tracking server at {safe_url(store_uri())}"
    line = outages.gave_up(where, "MLFLOW_TRACKING_URI", outages.mlflow_waits())
    return outages.StoreAway(line, "MLFLOW_TRACKING_URI")


def state_dir() -> Path:
    """Where this machine keeps state that goes with the store (its locks): beside a SQLite
    store, else the per-user state directory."""
    if (path := _sqlite_path(store_uri())) is not None:
        return path.resolve().parent
    import platformdirs

    return Path(platformdirs.user_state_dir("mnist-pipeline"))


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a SQLite store, else None."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def client() -> MlflowClient:
    _initialise(store_uri())
    return MlflowClient()


@functools.cache
def _initialise(uri: str) -> None:
    """Create a new SQLite store once, under a file lock beside it: two first runs at once
    would both run MLflow's schema migrations, and one of them would fail. A store that
    cannot be opened (corrupt, read-only, a missing directory) is one line. First, a URI that
    cannot work (`mnist.addresses`: a typo, a plain path, a missing driver) is one line."""
    from mnist.addresses import Address, check_form, tracking

    setting = "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") == uri else None
    for address in [Address(setting or "MLflow's tracking URI", uri, "mlflow"), *tracking()]:
        check_form(address)
    if (path := _sqlite_path(uri)) is None:
        return
    with contextlib.ExitStack() as stack:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            import fcntl

            lock = stack.enter_context(open(f"{path}.lock", "a"))
            fcntl.flock(lock, fcntl.LOCK_EX)  # released by the kernel, also when we are killed
        except OSError:  # a read-only place: nothing can be created there, nothing to lock
            pass
        try:
            MlflowClient(uri).search_registered_models(max_results=1)
        except Exception as exc:  # a corrupt or unwritable database fails deep in SQLAlchemy
            raise MnistError(f"MLflow store {uri} cannot be opened: {first_line(exc)}") from exc
