"""Numbered schema migrations, one list for both engines.

Each engine has a baseline schema file that always describes the newest schema, so a new
database needs no migration: `schema.sql` at the repository root for SQLite, and
`webhook/storage/postgres/schema.sql` for PostgreSQL. A database created by an older release is
at schema version N (SQLite: PRAGMA user_version; PostgreSQL: the `schema_version` table) and
gets every entry with a higher `version` applied in order, each in its own transaction that
also records the version it reaches; the newest version is `SCHEMA_VERSION`.

Entries 2 to 6 predate PostgreSQL support: a PostgreSQL database always starts at a baseline
that already contains them, so their `postgres` statements are empty. A migration added from
now on gives statements for both engines (and changes both schema files to match). Never drop
data: add columns, tables and indexes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    """One schema change: the version it reaches, why, and its statements per engine.

    `sqlite` and `postgres` are SQL statements run in order inside one transaction (no
    parameters); an engine whose baseline already holds the change has none.
    """

    version: int
    purpose: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        2,
        "claims walked every finished job of a lane; index only the open ones",
        sqlite=(
            "CREATE INDEX IF NOT EXISTS jobs_lane_open ON jobs(lane, id)"
            " WHERE state IN ('pending','running')",
            "DROP INDEX IF EXISTS jobs_lane",
        ),
        postgres=(),
    ),
    Migration(
        3,
        "fencing tokens and observed lease renewals; a failed job holds its lane",
        sqlite=(
            "ALTER TABLE jobs ADD COLUMN claim_token INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE jobs ADD COLUMN lease_renewals INTEGER NOT NULL DEFAULT 0",
            # Earlier claims may have acted without recording it: their count is the token so far.
            "UPDATE jobs SET claim_token = attempts",
            "CREATE INDEX IF NOT EXISTS jobs_lane_held ON jobs(lane, id)"
            " WHERE state IN ('pending','running','failed')",
            "DROP INDEX IF EXISTS jobs_lane_open",
        ),
        postgres=(),
    ),
    Migration(
        4,
        "work items follow their risk's content (title and body last written, content hash)",
        sqlite=(
            "ALTER TABLE risks ADD COLUMN item_hash TEXT",
            "ALTER TABLE work_items ADD COLUMN title TEXT",
            "ALTER TABLE work_items ADD COLUMN body_hash TEXT",
        ),
        postgres=(),
    ),
    Migration(
        5,
        "the admin web UI's sign-in sessions and failed sign-in counts",
        sqlite=(
            "CREATE TABLE IF NOT EXISTS ui_sessions (id_hash TEXT PRIMARY KEY,"
            " created_ts REAL NOT NULL, last_seen_ts REAL NOT NULL, expires_ts REAL NOT NULL)",
            "CREATE INDEX IF NOT EXISTS ui_sessions_expires ON ui_sessions(expires_ts)",
            "CREATE TABLE IF NOT EXISTS ui_sign_in_failures (client TEXT PRIMARY KEY,"
            " failures INTEGER NOT NULL, last_failure_ts REAL NOT NULL,"
            " locked_until_ts REAL NOT NULL)",
        ),
        postgres=(),
    ),
    Migration(
        6,
        "why a work item is in its state (System.Reason), kept with the risk's resolution",
        sqlite=("ALTER TABLE risks ADD COLUMN resolution_reason TEXT",),
        postgres=(),
    ),
)

# The schema version the baseline files describe and every migrated database reaches.
SCHEMA_VERSION = len(MIGRATIONS) + 1


def _check_numbering() -> None:
    """The versions run 2, 3, 4… without gaps (a mistake here would skip or repeat a change)."""
    for expected, migration in enumerate(MIGRATIONS, start=2):
        if migration.version != expected:
            raise RuntimeError(
                f"webhook.migrations: entry {expected - 1} has version {migration.version}, "
                f"expected {expected}"
            )


_check_numbering()
