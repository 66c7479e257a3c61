"""Numbered schema migrations for databases created by an older schema.sql.

schema.sql always describes the newest schema (so a new database needs no migration); a database
at PRAGMA user_version N gets MIGRATIONS[N-1:] applied in order. Never drop data: add columns,
tables and indexes.
"""

from __future__ import annotations

# Version 1 is schema.sql as first released; append lists of statements here for version 2, 3…
MIGRATIONS: list[list[str]] = []
