"""SqliteStorage: the SQL repositories over one SQLite database file."""

from __future__ import annotations

from webhook.crypto import SecretBox
from webhook.storage.sql.storage import SqlStorage
from webhook.storage.sqlite.database import Database


class SqliteStorage(SqlStorage):
    """Every repository over the SQLite file `db.path` (SPEC 5)."""

    def __init__(self, db: Database, box: SecretBox, *, content_sync_seconds: float = 60.0) -> None:
        super().__init__(db, box, content_sync_seconds=content_sync_seconds)
        self.sqlite = db

    @property
    def location(self) -> str:
        """The database file's path, as given."""
        return str(self.sqlite.path)

    def migrate(self) -> int:
        """Apply schema.sql and pending migrations (Database.migrate); the schema version."""
        return self.sqlite.migrate()
