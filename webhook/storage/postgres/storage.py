"""PostgresStorage: the SQL repositories over one PostgreSQL database (SPEC 6)."""

from __future__ import annotations

from webhook.crypto import SecretBox
from webhook.storage.postgres.database import PgDatabase
from webhook.storage.sql.storage import SqlStorage


class PostgresStorage(SqlStorage):
    """Every repository over the PostgreSQL database `db` (several nodes may share it)."""

    def __init__(
        self, db: PgDatabase, box: SecretBox, *, content_sync_seconds: float = 60.0
    ) -> None:
        super().__init__(db, box, content_sync_seconds=content_sync_seconds)
        self.postgres = db

    @property
    def location(self) -> str:
        """The database's URL with any password replaced by `***` (a cache key and a label)."""
        return self.postgres.label

    def migrate(self) -> int:
        """Create or migrate the schema under an advisory lock (PgDatabase.migrate)."""
        return self.postgres.migrate()
