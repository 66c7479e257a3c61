"""Creating and migrating the database: schema.sql for a new file, then the `sqlite` statements
of the pending entries of `webhook.migrations`, each in its own transaction with the schema
version it reaches."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from webhook.migrations import MIGRATIONS, SCHEMA_VERSION
from webhook.storage.sqlite.faults import DatabaseUnavailable, DatabaseUnusable, _problem
from webhook.storage.sqlite.files import schema_sql

if TYPE_CHECKING:
    from webhook.storage.sqlite.database import Database

__all__ = ["SCHEMA_VERSION", "migrate"]


def migrate(db: Database) -> int:
    """Apply schema.sql and any pending migrations to `db`; return the schema version.

    Raises DatabaseUnusable, with one line naming the file and the problem, when the database
    cannot be opened or written (a folder, not an SQLite file, corrupt, read-only, disk full,
    locked for longer than the wait budget) or has a newer schema version than this code
    knows (SCHEMA_VERSION).
    """
    try:
        return _migrate(db)
    except (sqlite3.Error, OSError, DatabaseUnavailable) as exc:
        raise DatabaseUnusable(db.path, _problem(exc, db.path)) from exc


def _migrate(db: Database) -> int:
    conn = db.conn
    with db.write():
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise DatabaseUnusable(
            db.path,
            f"schema version {version} is newer than this ado-webhook knows "
            f"({SCHEMA_VERSION}); run the ado-webhook release that wrote it, or a newer one",
        )
    if version == 0:
        conn.executescript(schema_sql())
        with db.write():
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    for migration in MIGRATIONS:
        if 0 < version < migration.version:
            with db.write():
                for statement in migration.sqlite:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={migration.version}")
    # A real write: a database opened read-only (its file's permissions, an immutable file, a
    # read-only mount) otherwise passes everything above when it needs no change.
    with db.write():
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('opened_at', datetime('now'))"
            " ON CONFLICT(key) DO UPDATE SET value=excluded.value"
        )
    return max(version, SCHEMA_VERSION)
