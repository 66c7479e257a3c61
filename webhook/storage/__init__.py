"""Storage: repository interfaces (`interfaces`), value types (`types`), one error tree
(`errors`), and implementations in subpackages (`sqlite`). Outside an implementation nothing
speaks SQL or imports an engine; the functions here are where the engine is chosen (today
always SQLite, at the path WEBHOOK_DB names).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from webhook.crypto import SecretBox
    from webhook.storage.interfaces import Storage


def open_storage(path: Path, box: SecretBox, *, content_sync_seconds: float = 60.0) -> Storage:
    """The storage at `path` (opened lazily, per process and thread, after fork)."""
    from webhook.storage.sqlite.database import Database
    from webhook.storage.sqlite.storage import SqliteStorage

    return SqliteStorage(Database(path), box, content_sync_seconds=content_sync_seconds)


def migrate_storage(path: Path) -> int:
    """Create or migrate the storage at `path`; return its schema version.

    Raises StorageUnusable (one line naming the file and the problem) when it cannot be used.
    """
    from webhook.storage.sqlite.database import Database

    return Database(path).migrate()


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
