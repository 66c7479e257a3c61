"""Creating and migrating a PostgreSQL database, safely when several nodes start at once.

On one dedicated connection: take the advisory lock MIGRATION_LOCK (other nodes starting now
wait for it, then find nothing to do), read the schema version from the `schema_version` table,
and either apply the baseline `schema.sql` of this package (a new, empty database) or the
`postgres` statements of each pending entry of `webhook.migrations`, each entry in its own
transaction that also records the version it reaches. PostgreSQL's DDL is transactional: a
failed step leaves the database at the previous version. It ends with a real write (`opened_at`
in `meta`), so a database that cannot be written fails here, at start.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import psycopg

from webhook.migrations import MIGRATIONS, SCHEMA_VERSION
from webhook.storage.postgres import (
    APPLICATION_NAME,
    INVALID_URL,
    KEEPALIVES,
    PgUnusable,
    connect_problem,
    conninfo_defaults,
    one_line,
    redact_url,
)

__all__ = ["MIGRATION_LOCK", "SCHEMA_VERSION", "migrate", "schema_sql", "table_names"]

# pg_advisory_lock key taken while migrating: the bytes "adowebhk" as a signed 64-bit integer.
MIGRATION_LOCK = int.from_bytes(b"adowebhk", "big", signed=True)
# How long a node waits for another node's migration (and a migration for table locks).
LOCK_WAIT_SECONDS = 600.0


def schema_sql() -> str:
    """The PostgreSQL baseline schema (this package's schema.sql), as text."""
    return resources.files(__package__ or __name__).joinpath("schema.sql").read_text("utf-8")


def table_names() -> list[str]:
    """The tables the baseline creates, in its order (schema_version first)."""
    return re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", schema_sql())


def migrate(url: str, *, connect_timeout: float = 5.0) -> int:
    """Create or migrate the database at `url` (a libpq URL); return its schema version.

    Raises PgUnusable, one line naming the database (password redacted) and the problem, when
    the server cannot be reached or the database does not exist, when it holds tables that
    ado-webhook did not create, when it cannot be written (a standby, permissions, disk full),
    when another node holds the migration lock for more than LOCK_WAIT_SECONDS, or when its
    schema version is newer than this code knows (SCHEMA_VERSION).
    """
    location = redact_url(url)
    try:
        params = conninfo_defaults(
            url,
            connect_timeout=max(1, round(connect_timeout)),
            application_name=APPLICATION_NAME,
            **KEEPALIVES,
        )
    except psycopg.Error:
        raise PgUnusable(location, INVALID_URL) from None
    try:
        conn = psycopg.connect(url, autocommit=True, **params)
    except psycopg.Error as exc:
        raise PgUnusable(location, f"cannot connect: {connect_problem(exc, url)}") from exc
    with conn:
        try:
            wait_ms = f"{int(LOCK_WAIT_SECONDS * 1000)}ms"
            conn.execute(
                "SELECT set_config('lock_timeout', %s, false),"
                " set_config('statement_timeout', '0', false),"
                " set_config('TimeZone', 'UTC', false)",
                (wait_ms,),
            )
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                return _migrate(conn, location)
            finally:
                if not conn.closed:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        except psycopg.Error as exc:
            raise PgUnusable(location, _problem(exc)) from exc


def _migrate(conn: psycopg.Connection[Any], location: str) -> int:
    version = _version(conn, location)
    if version is None:
        found = _our_tables(conn)
        if found:
            raise PgUnusable(
                location,
                f"holds tables ado-webhook did not create ({', '.join(found)}) and no "
                "schema_version: use an empty database",
            )
        with conn.transaction():
            conn.execute(schema_sql())
            conn.execute("INSERT INTO schema_version(version) VALUES (%s)", (SCHEMA_VERSION,))
        version = SCHEMA_VERSION
    if version > SCHEMA_VERSION:
        raise PgUnusable(
            location,
            f"schema version {version} is newer than this ado-webhook knows "
            f"({SCHEMA_VERSION}); run the ado-webhook release that wrote it, or a newer one",
        )
    for migration in MIGRATIONS:
        if version < migration.version:
            with conn.transaction():
                for statement in migration.postgres:
                    conn.execute(statement)
                conn.execute("UPDATE schema_version SET version=%s", (migration.version,))
            version = migration.version
    # A real write: a database that refuses writes (a standby, default_transaction_read_only,
    # missing privileges) otherwise passes everything above when it needs no change.
    with conn.transaction():
        conn.execute(
            "INSERT INTO meta(key, value) VALUES"
            " ('opened_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'))"
            " ON CONFLICT(key) DO UPDATE SET value=excluded.value"
        )
    return version


def _version(conn: psycopg.Connection[Any], location: str) -> int | None:
    """The recorded schema version, None when the database has no schema_version table."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    found = conn.execute("SELECT max(version), count(*) FROM schema_version").fetchone()
    if found is None or found[0] is None:
        raise PgUnusable(location, "its schema_version table is empty: it was not made by init-db")
    return int(found[0])


def _our_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """Tables of the baseline that already exist in the current schema."""
    rows = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        " AND tablename = ANY(%s) ORDER BY tablename",
        (table_names(),),
    ).fetchall()
    return [str(row[0]) for row in rows]


def _problem(exc: psycopg.Error) -> str:
    """One line saying why the database cannot be used at start."""
    state = exc.sqlstate or ""
    text = one_line(str(exc))
    if state == "25006":
        return (
            "refuses writes (a standby, or default_transaction_read_only): the service needs "
            "a writable primary"
        )
    if state == "42501":
        return f"permission denied ({text}): the user needs to create tables in its schema"
    if state == "55P03":
        return (
            f"another node held the migration lock (or a table lock) for more than "
            f"{LOCK_WAIT_SECONDS:g} s; try again"
        )
    if state == "53100":
        return "the server's disk is full"
    if not state and isinstance(exc, psycopg.OperationalError):
        return f"the connection was lost: {text}"
    return text
