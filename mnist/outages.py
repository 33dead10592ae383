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
from collections.abc import Mapping

from mnist.errors import MnistError, chain

VARIABLE = "MNIST_OUTAGE_SECONDS"
DEFAULT_SECONDS = 60.0
MAX_SECONDS = 480.0
"""The longest limit MLflow's client can wait: it takes at most 10 retries, and urllib3 waits
at most 120 s between two (0 + 2 + ... + 64 + 3 x 120 = 486 s)."""
RETRIED_CODES = "500,504"
"""Retried by Prefect's client beyond its own 408, 429, 502 and 503: a Prefect server whose
database refuses connections or times out answers 500 (an `OSError` or a timeout is not one of
the database errors it answers 503 for); a proxy in front of it, 504."""
_GAVE_UP_CODES = {408, 429, 500, 502, 503, 504}
_TRANSPORT = {
    "ConnectError",
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "PoolTimeout",
    "ReadError",
    "WriteError",
    "RemoteProtocolError",
}
"""httpx's errors that Prefect's client retries: a server away, not a wrong request."""

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
    r"(?:exception|timeout exception|error code (?P<code>50[0234]))"
)


class StoreAway(MnistError):
    """A store did not answer for as long as its client waits (`gave_up` says it)."""

    def __init__(self, message: str, setting: str = ""):
        super().__init__(message)
        self.setting = setting


def limit(env: Mapping[str, str] = os.environ) -> float:
    """The seconds a run rides out an outage: `MNIST_OUTAGE_SECONDS`, 0 for none."""
    value = env.get(VARIABLE, "")
    try:
        seconds = float(value) if value.strip() else DEFAULT_SECONDS
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_SECONDS or math.isnan(seconds):
        raise MnistError(f"{VARIABLE}={value!r}: give the seconds, 0 to {MAX_SECONDS:.0f}")
    return seconds


def _prefect_wait(retries: int) -> int:
    """Prefect's client waits 2, 4, 8 ... s between tries (its jitter off): 2^(n+1) - 2 s (after
    a 5xx answer it also waits once after the last try)."""
    return 2 ** (retries + 1) - 2


def _mlflow_wait(retries: int, factor: float = 1.0) -> int:
    """urllib3 waits 0, 2f, 4f ... s between tries, each at most 120 s."""
    return int(sum(min(120.0, factor * 2 ** (k - 1)) for k in range(2, retries + 1)))


def prefect_retries(seconds: float) -> int:
    """The fewest retries of Prefect's client that wait at least `seconds`."""
    return next(n for n in range(64) if _prefect_wait(n) >= seconds)


def mlflow_retries(seconds: float) -> int:
    """The fewest retries of MLflow's client that wait at least `seconds` (at most 10)."""
    return next((n for n in range(11) if _mlflow_wait(n) >= seconds), 10)


def _number(env: Mapping[str, str], key: str, default: float) -> float:
    try:
        return float(env.get(key, default))
    except ValueError:
        return default


def prefect_waits(env: Mapping[str, str] = os.environ) -> int:
    """The seconds Prefect's client waits between tries before it gives up, as set (its
    jitter, when on, makes each wait up to 20% shorter or longer)."""
    return _prefect_wait(int(_number(env, "PREFECT_CLIENT_MAX_RETRIES", 5)))


def mlflow_waits(env: Mapping[str, str] = os.environ) -> int:
    """The seconds MLflow's client waits between tries before it gives up, as set."""
    retries = int(_number(env, "MLFLOW_HTTP_REQUEST_MAX_RETRIES", 7))
    return _mlflow_wait(retries, _number(env, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 2))


def client_settings(seconds: float) -> dict[str, str]:
    """The variables that make Prefect's and MLflow's clients ride out `seconds` of outage.
    Prefect's jitter is off: with it, five retries may wait 51 s instead of 62."""
    return {
        "PREFECT_CLIENT_MAX_RETRIES": str(prefect_retries(seconds)),
        "PREFECT_CLIENT_RETRY_EXTRA_CODES": RETRIED_CODES,
        "PREFECT_CLIENT_RETRY_JITTER_FACTOR": "0",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(mlflow_retries(seconds)),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }


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
        return (str(request.url), f"it answered {code}") if code in _GAVE_UP_CODES else None
    names = {cls.__name__ for cls in type(exc).__mro__}
    if not names & _TRANSPORT or "CERTIFICATE" in str(exc).upper():  # TLS: retries won't mend
        return None
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


def _is_mlflow_error(exc: BaseException) -> bool:
    return any(cls.__name__ == "MlflowException" for cls in type(exc).__mro__)


def _mlflow_gave_up(exc: BaseException) -> tuple[str, str] | None:
    """(URL, what happened) for MLflow's client giving up on a server away: a 5xx after its
    retries, or a connection refused, reset or timed out (not a TLS error, say)."""
    match = _MLFLOW_GAVE_UP.search(str(exc)) if _is_mlflow_error(exc) else None
    if match is None:
        return None
    code = match.group("code")
    reason = f"it answered {code}" if code else _reason(str(exc))
    return None if reason == "no answer" else (match.group("url"), reason)


def away(exc: BaseException) -> bool:
    """Whether `exc` says a store stopped answering: another call to the stores now (ending
    the run, say) would only wait as long again."""
    return describe(exc) is not None


def describe(exc: BaseException) -> str | None:
    """One line for an error that means a store stopped answering for longer than its client
    waits; None for any other error."""
    for link in chain(exc):
        if isinstance(link, StoreAway):
            return str(link)
        found = _http_failure(link) or _mlflow_gave_up(link)
        if found is not None:
            return gave_up(*_store_of(found[0]), reason=found[1])
    return None


def _reason(text: str) -> str:
    """What a client's error message says went wrong, in a few words."""
    for needle, words in _REASONS:
        if needle.lower() in text.lower():
            return words
    return "no answer"
