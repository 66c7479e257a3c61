"""Numbered schema migrations for databases created by an older schema.sql.

schema.sql always describes the newest schema (so a new database needs no migration); a database
at PRAGMA user_version N gets MIGRATIONS[N-1:] applied in order. Never drop data: add columns,
tables and indexes.
"""

from __future__ import annotations

# Version 1 is schema.sql as first released; append lists of statements here for version 2, 3…
MIGRATIONS: list[list[str]] = [
    # 2: claims walked every finished job of a lane; index only the open ones.
    [
        "CREATE INDEX IF NOT EXISTS jobs_lane_open ON jobs(lane, id)"
        " WHERE state IN ('pending','running')",
        "DROP INDEX IF EXISTS jobs_lane",
    ],
    # 3: fencing tokens and observed lease renewals; a failed job holds its lane.
    [
        "ALTER TABLE jobs ADD COLUMN claim_token INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN lease_renewals INTEGER NOT NULL DEFAULT 0",
        # Earlier claims may have acted without recording it: their count is the token so far.
        "UPDATE jobs SET claim_token = attempts",
        "CREATE INDEX IF NOT EXISTS jobs_lane_held ON jobs(lane, id)"
        " WHERE state IN ('pending','running','failed')",
        "DROP INDEX IF EXISTS jobs_lane_open",
    ],
    # 4: work items follow their risk's content (title and body last written, risk content hash).
    [
        "ALTER TABLE risks ADD COLUMN item_hash TEXT",
        "ALTER TABLE work_items ADD COLUMN title TEXT",
        "ALTER TABLE work_items ADD COLUMN body_hash TEXT",
    ],
    # 5: the admin web UI's sign-in sessions and failed sign-in counts.
    [
        "CREATE TABLE IF NOT EXISTS ui_sessions (id_hash TEXT PRIMARY KEY,"
        " created_ts REAL NOT NULL, last_seen_ts REAL NOT NULL, expires_ts REAL NOT NULL)",
        "CREATE INDEX IF NOT EXISTS ui_sessions_expires ON ui_sessions(expires_ts)",
        "CREATE TABLE IF NOT EXISTS ui_sign_in_failures (client TEXT PRIMARY KEY,"
        " failures INTEGER NOT NULL, last_failure_ts REAL NOT NULL,"
        " locked_until_ts REAL NOT NULL)",
    ],
    # 6: why a work item is in its state (System.Reason), kept with the risk's resolution.
    ["ALTER TABLE risks ADD COLUMN resolution_reason TEXT"],
]
