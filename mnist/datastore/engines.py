"""Where the added-data store lives: its URL (SQLAlchemy's), shown without a password, and
one engine per URL and use, set up for SQLite (WAL, writers in turn) or PostgreSQL (psycopg 3,
with a connect timeout).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from mnist.addresses import safe_url  # noqa: F401  (the one redaction rule; imported from here)

FILE_NAME = "mnist-data.db"
CONNECT_SECONDS = 10
"""PostgreSQL: the longest a new connection may take (libpq's `connect_timeout`, unless the URL
sets one): a frozen server accepts the TCP connection and never answers, which would otherwise
hang the caller for good."""


def default_url() -> str:
    """A SQLite file beside the MLflow store (or in the per-user state directory)."""
    from mnist import tracking

    return f"sqlite:///{tracking.state_dir() / FILE_NAME}"


def sqlite_file(url: str | URL) -> Path | None:
    """The database file of a SQLite URL; None for any other URL (or none at all)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


LIBPQ_BOUNDS = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}
"""libpq's TCP bounds: a server cut off by the network (no answer, not even the kernel's) is
given up after about 30 s instead of the system's 15 minutes of retransmissions."""


@functools.cache
def engine(url: str, write: bool) -> Engine:
    """One engine per URL and use. SQLite, in WAL mode so that readers never wait: a writer
    takes the database lock when its transaction begins (`BEGIN IMMEDIATE`), waiting up to
    30 s for another; a reader's transaction is deferred. PostgreSQL: connections checked
    before use (one that a restart broke is replaced) and opened within `CONNECT_SECONDS`."""
    if (path := sqlite_file(url)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        made = create_engine(url, connect_args={"timeout": 30, "isolation_level": None})

        @event.listens_for(made, "connect")
        def _connect(connection, record):
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA foreign_keys=ON")

        @event.listens_for(made, "begin")
        def _begin(connection):
            connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
    else:  # psycopg 3 for PostgreSQL, which SQLAlchemy takes for psycopg2 unless told
        parsed = make_url(url)
        if parsed.drivername in ("postgres", "postgresql"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        libpq = parsed.get_driver_name() in ("psycopg", "psycopg2")
        bounds = {**LIBPQ_BOUNDS, "connect_timeout": CONNECT_SECONDS} if libpq else {}
        given = set(parsed.query) | (
            {"connect_timeout"} if "PGCONNECT_TIMEOUT" in os.environ else set()
        )
        made = create_engine(
            parsed,
            pool_pre_ping=True,
            connect_args={k: v for k, v in bounds.items() if k not in given},
        )
    return made
