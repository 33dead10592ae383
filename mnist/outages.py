"""How long a run rides out a store that stops answering (`MNIST_OUTAGE_SECONDS`, 60 s), and the
one line a command ends with past that.

A run that has reached its stores keeps going through a stall or a restart of PostgreSQL, the
Prefect server or the MLflow server: `client_settings` turns the limit into the retry settings
of Prefect's and MLflow's clients, whose waits between tries add up to at least the limit.
`describe` recognises what those clients raise once they give up, whichever layer it comes
through, and names the store, its address and how long it was tried. No heavy import: the
exceptions are told apart by their attributes.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping

from mnist.errors import MnistError

VARIABLE = "MNIST_OUTAGE_SECONDS"
DEFAULT_SECONDS = 60.0
RETRIED_CODES = "500"
"""Retried by Prefect's client beyond its own 408, 429, 502 and 503: a Prefect server whose
database refuses connections or times out answers 500 (an `OSError` or a timeout is not one of
the database errors it answers 503 for)."""

_REASONS = (
    ("refused", "connection refused"),
    ("timed out", "timed out"),
    ("timeout", "timed out"),
    ("reset", "connection reset"),
    ("RemoteDisconnected", "connection closed"),
    ("disconnected", "connection closed"),
    ("All connection attempts failed", "connection refused"),
)
_MLFLOW_GAVE_UP = re.compile(
    r"API request to (?:endpoint )?(?P<url>\S+) failed with "
    r"(?:exception|timeout exception|error code (?P<code>5\d\d))"
)


class StoreAway(MnistError):
    """A store did not answer for as long as its client waits (`gave_up` says it)."""

    def __init__(self, message: str, setting: str):
        super().__init__(message)
        self.setting = setting


def limit(env: Mapping[str, str] = os.environ) -> float:
    """The seconds a run rides out an outage: `MNIST_OUTAGE_SECONDS`, 0 for none."""
    value = env.get(VARIABLE, "")
    try:
        seconds = float(value) if value.strip() else DEFAULT_SECONDS
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600 or math.isnan(seconds):
        raise MnistError(f"{VARIABLE}={value!r}: give the seconds, 0 to 3600")
    return seconds


def prefect_retries(seconds: float) -> int:
    """Prefect's client waits 2, 4, 8 ... s between tries (ignoring jitter): n retries wait
    2^(n+1) - 2 s. The fewest retries that wait at least `seconds`."""
    return 0 if seconds <= 0 else math.ceil(math.log2(seconds + 2)) - 1


def mlflow_retries(seconds: float) -> int:
    """MLflow's client (urllib3, back-off factor 1) waits 0, 2, 4 ... s: n retries wait
    2^n - 2 s. The fewest retries that wait at least `seconds`."""
    return 0 if seconds <= 0 else math.ceil(math.log2(seconds + 2))


def _number(env: Mapping[str, str], key: str, default: float) -> float:
    try:
        return float(env.get(key, default))
    except ValueError:
        return default


def prefect_waits(env: Mapping[str, str] = os.environ) -> int:
    """The seconds Prefect's client waits between tries before it gives up, as set."""
    return 2 ** (int(_number(env, "PREFECT_CLIENT_MAX_RETRIES", 5)) + 1) - 2


def mlflow_waits(env: Mapping[str, str] = os.environ) -> int:
    """The seconds MLflow's client waits between tries before it gives up, as set."""
    retries = int(_number(env, "MLFLOW_HTTP_REQUEST_MAX_RETRIES", 7))
    factor = _number(env, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 2)
    return int(factor * max(0, 2**retries - 2))


def client_settings(seconds: float) -> dict[str, str]:
    """The variables that make Prefect's and MLflow's clients ride out `seconds` of outage."""
    return {
        "PREFECT_CLIENT_MAX_RETRIES": str(prefect_retries(seconds)),
        "PREFECT_CLIENT_RETRY_EXTRA_CODES": RETRIED_CODES,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(mlflow_retries(seconds)),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _http_failure(exc: BaseException) -> tuple[str, str] | None:
    """(URL, what happened) for an httpx error that retries cannot mend: a transport error or
    a 5xx answer."""
    if not type(exc).__module__.startswith(("httpx", "prefect")):
        return None
    try:
        request = exc.request  # pyright: ignore[reportAttributeAccessIssue]
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError for a missing request
        return None
    response = getattr(exc, "response", None)
    if response is not None:
        code = getattr(response, "status_code", 0)
        return (str(request.url), f"it answered {code}") if code >= 500 else None
    return str(request.url), _reason(f"{type(exc).__name__}: {exc}")


def gave_up(what: str, setting: str, waits: int, reason: str = "") -> str:
    """The one line for a store that a client gave up on after `waits` seconds of retries."""
    how = f" ({reason})" if reason else ""
    wait = f" for over {waits} s" if waits > 0 else ""
    return (
        f"{what} did not answer{wait}{how}; check that it is up and that {setting} names it "
        f"({VARIABLE} sets how long a run waits for a store)"
    )


def _store_of(url: str) -> tuple[str, str, int]:
    """(what, setting, seconds waited) of the store at `url`, as the environment names it."""
    from mnist.addresses import safe_url

    prefect = os.environ.get("PREFECT_API_URL", "")
    if prefect and url.startswith(prefect.rstrip("/")):
        return f"the Prefect API at {safe_url(prefect)}", "PREFECT_API_URL", prefect_waits()
    if "/api/2.0/mlflow" in url or "/ajax-api/" in url or "mlflow-artifacts" in url:
        where = safe_url(os.environ.get("MLFLOW_TRACKING_URI", "") or url)
        return f"the MLflow tracking server at {where}", "MLFLOW_TRACKING_URI", mlflow_waits()
    if "/api/" in url:
        where = safe_url(url.split("/api/")[0] + "/api")
        return f"the Prefect API at {where}", "PREFECT_API_URL", prefect_waits()
    return f"the server at {safe_url(url)}", "its setting", 0


def mlflow_away(exc: BaseException) -> bool:
    """Whether `exc` says the MLflow tracking server stopped answering: another call to it now
    (ending the run, say) would only wait as long again."""
    for link in _chain(exc):
        if isinstance(link, StoreAway) and link.setting == "MLFLOW_TRACKING_URI":
            return True
        if type(link).__name__ == "MlflowException" and _MLFLOW_GAVE_UP.search(str(link)):
            return True
    return False


def describe(exc: BaseException) -> str | None:
    """One line for an error that means a store stopped answering for longer than its client
    waits; None for any other error."""
    for link in _chain(exc):
        found = _http_failure(link)
        if found is None:
            mlflow = type(link).__name__ == "MlflowException"
            match = _MLFLOW_GAVE_UP.search(str(link)) if mlflow else None
            if match is None:
                continue
            code = match.group("code")
            found = (match.group("url"), f"it answered {code}" if code else _reason(str(link)))
        url, reason = found
        return gave_up(*_store_of(url), reason=reason)
    return None


def _reason(text: str) -> str:
    """What a client's error message says went wrong, in a few words."""
    for needle, words in _REASONS:
        if needle.lower() in text.lower():
            return words
    return "no answer"
