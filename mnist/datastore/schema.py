"""The store's schema, created on first use and upgraded in place: tables that are missing are
created (SQLAlchemy's `create_all`), columns that a newer release added to an existing table
are added with their indexes (Alembic's operations), so a store made by an older release keeps
its data. ADR 0060 says why not a versioned Alembic environment (yet).
"""

from __future__ import annotations

from sqlalchemy import Column, DefaultClause, Engine, func, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from mnist.datastore.tables import Base

UPGRADES = 0x6D6E697374 + 1  # PostgreSQL advisory lock key: beside the writers' ("mnist")


def upgrade(engine: Engine) -> list[str]:
    """Create what is missing; the `table.column`s added to existing tables."""
    try:
        Base.metadata.create_all(engine)
    except SQLAlchemyError:  # another process created the tables at the same moment
        Base.metadata.create_all(engine)
    missing = _missing(engine)
    if not missing:
        return []
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    added = []
    with engine.begin() as connection:  # SQLite: BEGIN IMMEDIATE, one writer at a time
        if connection.dialect.name == "postgresql":  # upgraders take turns (the writers' lock)
            connection.execute(select(func.pg_advisory_xact_lock(UPGRADES)))
        operations = Operations(MigrationContext.configure(connection))
        for table, column in missing:
            if column.name in {c["name"] for c in inspect(connection).get_columns(table)}:
                continue  # another process added it meanwhile
            default = column.server_default
            arg = default.arg if isinstance(default, DefaultClause) else None
            arg = arg if isinstance(arg, str) else None
            # existing rows get the server default, or NULL
            operations.add_column(table, Column(column.name, column.type, server_default=arg))
            if column.index:
                operations.create_index(f"ix_{table}_{column.name}", table, [column.name])
            added.append(f"{table}.{column.name}")
    return added


def _missing(engine: Engine) -> list:
    inspector = inspect(engine)
    missing = []
    for table in Base.metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        missing += [(table.name, c) for c in table.columns if c.name not in present]
    return missing
