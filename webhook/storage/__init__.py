"""Storage: repository interfaces (`interfaces`), value types (`types`), one error tree
(`errors`), and implementations in subpackages (`sqlite`). Outside an implementation nothing
speaks SQL or imports an engine; the functions here are where the engine is chosen: a
`postgresql://` (or `postgres://`) URL opens PostgreSQL (SPEC 6), anything else is the path of
an SQLite file (SPEC 5). Engines are imported lazily, so neither driver loads unless used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from webhook.crypto import SecretBox
    from webhook.storage.interfaces import Storage


def is_postgres(location: str | Path) -> bool:
    """Whether `location` names a PostgreSQL database (a postgresql:// or postgres:// URL)."""
    return isinstance(location, str) and location.lower().startswith(
        ("postgresql://", "postgres://")
    )


def open_storage(
    location: str | Path, box: SecretBox, *, content_sync_seconds: float = 60.0
) -> Storage:
    """The storage at `location`: a PostgreSQL URL or an SQLite file's path. Connections are
    opened lazily, per process (and for SQLite per thread), so after gunicorn forks."""
    if is_postgres(location):
        from webhook.storage.postgres.database import PgDatabase
        from webhook.storage.postgres.storage import PostgresStorage

        return PostgresStorage(
            PgDatabase(str(location)), box, content_sync_seconds=content_sync_seconds
        )
    from webhook.storage.sqlite.database import Database
    from webhook.storage.sqlite.storage import SqliteStorage

    return SqliteStorage(Database(Path(location)), box, content_sync_seconds=content_sync_seconds)


def migrate_storage(location: str | Path) -> int:
    """Create or migrate the storage at `location`; return its schema version.

    Raises StorageUnusable (one line naming the database, never its password, and the
    problem) when it cannot be used.
    """
    if is_postgres(location):
        from webhook.storage.postgres.database import PgDatabase

        pg = PgDatabase(str(location))
        try:
            return pg.migrate()
        finally:
            pg.close()
    from webhook.storage.sqlite.database import Database

    return Database(Path(location)).migrate()


def prepare_folder(folder: Path) -> None:
    """Create the storage's folder owner-only (0700) before anything else puts files in it.

    Raises StorageUnusable when it cannot be created.
    """
    from webhook.storage.errors import StorageUnusable
    from webhook.storage.sqlite.database import ensure_private_dir

    try:
        ensure_private_dir(folder)
    except OSError as exc:
        raise StorageUnusable(folder, f"cannot create the folder: {exc.strerror or exc}") from exc
