"""Store addresses, checked before a command's first contact with a store: a wrong one ends at
once in one line naming the setting, its value (password hidden) and what to do.

An `Address` is a setting (`MLFLOW_TRACKING_URI`, `MLFLOW_REGISTRY_URI`, `--datastore` or
`MNIST_DATASTORE`, `PREFECT_API_URL`), its value and what it names: an MLflow store, the
added-data store (SQLAlchemy) or a Prefect API. `check_form` finds what no retry mends: an
unknown scheme, a plain path, a database driver that is not installed. `check` adds one TCP
connection to each host, all at once, within `CONNECT_SECONDS`: a host that refuses, does not
answer or has no address. A SQLite file is only parsed. Only the standard library and
SQLAlchemy's URL parser: no MLflow, Prefect or TensorFlow import.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mnist.errors import MnistError

Kind = Literal["mlflow", "datastore", "prefect", "dask"]
CONNECT_SECONDS = 5.0
"""How long a host may take to accept a connection: `MNIST_CONNECT_SECONDS`."""
MLFLOW_DATABASES = ("postgresql", "mysql", "sqlite", "mssql")
"""MLflow's SQL stores (`mlflow.store.db.db_types.DATABASE_ENGINES`; a unit test compares)."""
MLFLOW_OTHERS = ("http", "https", "databricks", "databricks-uc", "uc")
DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mariadb": 3306}
DEFAULT_PORTS |= {"mssql": 1433, "oracle": 1521}
_ELSEWHERE = {"host", "hostaddr", "port", "service", "unix_socket", "odbc_connect"}
"""Query keys by which a driver connects elsewhere than the URL's host and port."""
_SQLITE_FILE = re.compile(r"^sqlite(\+pysqlite)?://(/.*)?$")  # `sqlite:///PATH`, `sqlite://`
_HOST_PORT = re.compile(r"^[\w.-]+:\d+(/.*)?$")  # `localhost:5000`: a URL without its scheme
_EXAMPLES: dict[Kind, str] = {
    "mlflow": "an MLflow server (http://HOST:5000) or a database (sqlite:///mlflow.db, "
    "postgresql://USER@HOST/DB)",
    "datastore": "a SQLAlchemy URL (sqlite:///PATH or postgresql://USER@HOST/DB)",
    "prefect": "a Prefect API URL (http://HOST:4200/api)",
    "dask": "a Dask scheduler's address (tcp://HOST:8786, or tls://)",
}


class WrongAddress(MnistError):
    """A store address that cannot work: the message names the setting, the value, the
    problem and what to do."""

    def __init__(self, address: Address, problem: str, todo: str):
        self.address, self.problem = address, problem
        super().__init__(f"{address.setting}={safe_url(address.value)}: {problem}; {todo}")


class Malformed(WrongAddress):
    """Not a URL of its kind: no scheme, no host, a bad port, no API path."""


class UnknownScheme(WrongAddress):
    """No store of that kind is reached by this scheme (a typo)."""


class PlainPath(WrongAddress):
    """A path where a URL is needed (MLflow 3 refuses its old file store unless told)."""


class MissingDriver(WrongAddress):
    """A database whose driver is not installed (or not known to SQLAlchemy)."""


class Unreachable(WrongAddress):
    """A host that refuses connections, does not answer or has no address."""


@dataclass(frozen=True)
class Address:
    """A store address: the setting that gave it, its value, and what it names. `reach`:
    whether `check` connects to its host (off where the store is only a hint: events)."""

    setting: str
    value: str
    kind: Kind
    reach: bool = True


def absolute_sqlite(url: str) -> str:
    """A SQLite URL with an absolute path (what a process in another directory opens too); any
    other URL as it is."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return f"sqlite:///{Path(url.removeprefix('sqlite:///')).absolute()}"
    return url


def safe_url(url: str) -> str:
    """The URL without its password, for messages: `***` from the user's `:` to the last `@`
    (a password may hold an unencoded `@`, `/` or `#`), and for a `password=` in the query; a
    URL without one is shown as given."""
    masked = re.sub(r"^([^:/?#]+://[^:/@?#]*:).*@", r"\1***@", url.strip())
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", masked)


def tracking(env: Mapping[str, str] = os.environ) -> list[Address]:
    """The MLflow addresses the environment sets: tracking and registry (none: MLflow's
    default, a SQLite file here)."""
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    return [Address(name, env[name], "mlflow") for name in names if env.get(name)]


def prefect(reach: bool = True, env: Mapping[str, str] = os.environ) -> list[Address]:
    """The Prefect API the environment sets (none: a temporary one, or no events)."""
    value = env.get("PREFECT_API_URL", "").strip()
    return [Address("PREFECT_API_URL", value, "prefect", reach)] if value else []


def datastore(value: str | None, env: Mapping[str, str] = os.environ) -> list[Address]:
    """The added-data store's address, named by the variable when it is the variable's value,
    else by the option (none: the default SQLite file)."""
    if not value:
        return []
    setting = "MNIST_DATASTORE" if env.get("MNIST_DATASTORE") == value else "--datastore"
    return [Address(setting, value, "datastore")]


def named(value: str | None, option: str, variable: str, kind: Kind) -> list[Address]:
    """An address given by `option` or, when it is that variable's value, by `variable`."""
    if not value:
        return []
    return [Address(variable if os.environ.get(variable) == value else option, value, kind)]


def serving(model: str, store: str | None, stored: bool) -> list[Address]:
    """What a model server takes: MLflow's addresses when it looks `model` up there (not a
    local file), and the added-data store `store` when it keeps feedback or predictions
    (`stored`)."""
    from mnist.references import ModelRef

    found = tracking() if ModelRef.parse(model).tracked else []
    return found + (datastore(store) if stored else [])


def _scheme(value: str) -> str:
    return urllib.parse.urlsplit(value).scheme.lower()


def _suggest(scheme: str, known: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(scheme, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _plugins() -> set[str]:
    """Schemes that installed MLflow plugins add (entry points), looked up only when needed."""
    from importlib.metadata import entry_points

    groups = ("mlflow.tracking_store", "mlflow.model_registry_store")
    return {e.name for group in groups for e in entry_points(group=group)}


def _file_store_allowed() -> bool:
    return os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("true", "1")


def check_form(address: Address) -> None:
    """Raise `WrongAddress` for an address that cannot work, whatever the network does."""
    value, kind = address.value.strip(), address.kind
    scheme = _scheme(value)
    if kind == "mlflow" and value in MLFLOW_OTHERS:  # `databricks`, `uc`: a scheme alone
        return
    if _HOST_PORT.match(value) and scheme not in (*MLFLOW_OTHERS, *DEFAULT_PORTS):
        raise Malformed(address, "no scheme", f"give one: http://{value}")
    if kind == "mlflow" and (scheme in ("", "file") or len(scheme) == 1):
        if not _file_store_allowed():
            raise PlainPath(
                address,
                "a path is MLflow's file store, which MLflow 3 refuses",
                "use a database such as sqlite:///mlflow.db (`mlflow migrate-filestore` moves "
                "old runs there), or set MLFLOW_ALLOW_FILE_STORE=true",
            )
        return
    if kind == "dask":
        if scheme not in ("tcp", "tls"):
            raise _unknown(address, scheme, ("tcp", "tls"))
        return _check_http(address)  # a host and a port, as an HTTP URL has
    if scheme in ("http", "https") and kind != "datastore":
        return _check_http(address)
    if kind == "prefect":
        raise _unknown(address, scheme, ("http", "https"))
    if kind == "datastore" and scheme == "":
        raise PlainPath(address, "a path, not a URL", f"use sqlite:///{value}")
    backend = scheme.split("+")[0]
    if kind == "mlflow" and backend not in MLFLOW_DATABASES:
        if scheme in MLFLOW_OTHERS or scheme in _plugins():
            return
        raise _unknown(address, scheme, (*MLFLOW_OTHERS, *MLFLOW_DATABASES))
    _check_database(address)


def _unknown(address: Address, scheme: str, known: Iterable[str]) -> WrongAddress:
    todo = f"give {_EXAMPLES[address.kind]}"
    if not scheme:
        return Malformed(address, "not a URL", todo)
    return UnknownScheme(address, f"unknown scheme {scheme!r}{_suggest(scheme, known)}", todo)


def _check_http(address: Address) -> None:
    parts = urllib.parse.urlsplit(address.value.strip())
    try:
        parts.port  # noqa: B018  (raises for a port out of range)
    except ValueError:  # its text may quote part of a password: not shown
        raise Malformed(
            address, "the port is not a number from 0 to 65535", f"give {_EXAMPLES[address.kind]}"
        ) from None
    if not parts.hostname:
        raise Malformed(address, "no host", f"give {_EXAMPLES[address.kind]}")
    if address.kind == "prefect" and "api" not in parts.path:
        raise Malformed(
            address, "no API path", f"the API is at /api: {address.value.rstrip('/')}/api"
        )


def _check_database(address: Address) -> None:
    """A URL SQLAlchemy parses, for a database it knows, with its driver installed (the
    added-data store takes PostgreSQL through psycopg 3, as `mnist.datastore` does)."""
    if _SQLITE_FILE.match(address.value.strip()):
        return  # the common case, without loading SQLAlchemy (start-up time)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    known = ("sqlite", "postgresql", "mysql", "mariadb", "mssql", "oracle")
    try:
        url = make_url(address.value.strip())
    except (ArgumentError, ValueError):
        raise _unknown(address, "", known) from None
    if address.kind == "datastore" and url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    backend = url.get_backend_name()
    if backend not in known:
        raise _unknown(address, url.drivername, known)
    if backend == "sqlite" and url.get_driver_name() in ("", "pysqlite"):
        return  # the standard library's: nothing to load
    try:
        url.get_dialect().import_dbapi()
    except (NoSuchModuleError, ImportError) as exc:
        raise MissingDriver(
            address,
            f"no driver for {url.drivername} ({exc})",
            f"install it, or name an installed one ({backend}+DRIVER://)",
        ) from None


def _target(address: Address) -> tuple[str, int] | None:
    """The host and port to connect to; None where there is none (SQLite, a Unix socket, a
    plugin's scheme) or where a proxy stands between."""
    value, scheme = address.value.strip(), _scheme(address.value.strip())
    if scheme.startswith("sqlite"):
        return None
    if scheme in ("tcp", "tls"):
        parts = urllib.parse.urlsplit(value)
        return (parts.hostname, parts.port) if parts.hostname and parts.port else None
    if scheme in ("http", "https"):
        from urllib.request import getproxies, proxy_bypass

        parts = urllib.parse.urlsplit(value)
        host, port = parts.hostname, parts.port or DEFAULT_PORTS[scheme]
        proxies = getproxies()
        if (scheme in proxies or "all" in proxies) and not proxy_bypass(host or ""):
            return None  # the proxy answers for the host: its requests will tell
    else:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError:
            return None
        if _ELSEWHERE & set(url.query) or (
            url.get_backend_name() == "postgresql"
            and (os.environ.keys() & {"PGHOST", "PGHOSTADDR", "PGPORT", "PGSERVICE"})
        ):
            return None  # the driver connects where the query or libpq's variables say
        backend = url.get_backend_name()
        host, port = url.host, url.port or DEFAULT_PORTS.get(backend)
    return (host, port) if host and port else None


def _connect(host: str, port: int, timeout: float, http: bool) -> tuple[str, str] | None:
    """Why a TCP connection to `host:port` cannot be made within `timeout` (for an HTTP server,
    one that answers a request), and what to do; None when it can."""
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            if http:  # accepting is the kernel's work: a stopped or hung server still does it
                connection.settimeout(max(1.0, deadline - time.monotonic()))
                try:
                    connection.sendall(f"HEAD / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                    connection.recv(1)  # any answer, even a TLS alert or a close, is one
                except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
                    pass  # a reset is an answer too
            return None
    except ConnectionRefusedError:
        return f"{host}:{port} refuses connections", "start the server there, or correct"
    except TimeoutError:
        why = f"{host}:{port} did not answer within {timeout:g} s"
        return why, "check the host, the port, the server and any firewall, or correct"
    except socket.gaierror:
        return f"host {host!r} has no address", "check the host name, or correct"
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}", "check the network, or correct"


def _connect_seconds() -> float:
    raw = os.environ.get("MNIST_CONNECT_SECONDS", "").strip()
    try:
        return float(raw) if raw else CONNECT_SECONDS
    except ValueError:
        raise MnistError(
            f"MNIST_CONNECT_SECONDS={raw!r}: not a number of seconds; give one, or 0 to not "
            "connect to the stores before a command"
        ) from None


_reached: set[tuple[str, int]] = set()  # hosts this process connected to: not asked again


def check(addresses: Iterable[Address], timeout: float | None = None) -> None:
    """Raise `WrongAddress` for the first address, in order, that is malformed or whose host
    cannot be connected to; the hosts are tried at once, all within `timeout` (default
    `MNIST_CONNECT_SECONDS`, 5 s), name lookups included."""
    addresses = list(addresses)
    for address in addresses:
        check_form(address)
    timeout = timeout or _connect_seconds()
    if timeout <= 0:
        return  # MNIST_CONNECT_SECONDS=0: forms only, no connection
    targets = {a: t for a in addresses if a.reach and (t := _target(a)) and t not in _reached}
    problems: dict[tuple[str, int], tuple[str, str] | None] = {}
    http = {t for a, t in targets.items() if _scheme(a.value.strip()) in ("http", "https")}

    def attempt(target: tuple[str, int]) -> None:
        problems[target] = _connect(*target, timeout, target in http)

    threads = [
        threading.Thread(target=attempt, args=(t,), daemon=True) for t in {*targets.values()}
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout + 1
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    for address, target in targets.items():
        if target not in problems:  # the name lookup itself hung
            why = f"host {target[0]!r} did not resolve within {timeout:g} s"
            problems[target] = why, "check the host name and the DNS, or correct"
        if (problem := problems[target]) is not None:
            raise Unreachable(address, problem[0], f"{problem[1]} {address.setting}")
        _reached.add(target)
