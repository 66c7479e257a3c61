"""SqliteStorage: every SQLite repository over one database, as one object.

Each repository property answers the same object typed as its Protocol
(`webhook.storage.interfaces`), so callers can name the aggregate they use
(`storage.jobs.claim_jobs(...)`) while the flat verbs (`storage.claim_jobs(...)`) keep working
during the transition.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from webhook.crypto import SecretBox
from webhook.storage.sqlite.common import SqliteRepo
from webhook.storage.sqlite.connections import SqliteConnections
from webhook.storage.sqlite.database import Database
from webhook.storage.sqlite.hooks import SqliteHooks
from webhook.storage.sqlite.jobs import SqliteJobs
from webhook.storage.sqlite.operations import SqliteOperations
from webhook.storage.sqlite.risks import SqliteRisks
from webhook.storage.sqlite.sources import SqliteSources
from webhook.storage.sqlite.templates import SqliteTemplates
from webhook.storage.sqlite.ui_sessions import SqliteUiSessions
from webhook.storage.sqlite.work_items import SqliteWorkItems


class SqliteStorage(
    SqliteSources,
    SqliteRisks,
    SqliteJobs,
    SqliteWorkItems,
    SqliteConnections,
    SqliteTemplates,
    SqliteHooks,
    SqliteOperations,
    SqliteRepo,
):
    """All repositories over one SQLite database (see the module docstring)."""

    def __init__(self, db: Database, box: SecretBox, *, content_sync_seconds: float = 60.0) -> None:
        super().__init__(db, box, content_sync_seconds=content_sync_seconds)
        self._ui_sessions = SqliteUiSessions(db)

    @property
    def location(self) -> str:
        """The database file's path, as given."""
        return str(self.db.path)

    def migrate(self) -> int:
        """Apply schema.sql and pending migrations (Database.migrate); the schema version."""
        return self.db.migrate()

    @contextmanager
    def unit_of_work(self) -> Iterator[SqliteStorage]:
        """One write transaction spanning repositories (see Storage.unit_of_work): every write
        of this thread joins it until the block ends (Database.unit)."""
        with self.db.unit():
            yield self

    @property
    def sources(self) -> SqliteSources:
        """Scanner sources."""
        return self

    @property
    def risks(self) -> SqliteRisks:
        """Risks and ingestion."""
        return self

    @property
    def jobs(self) -> SqliteJobs:
        """The job queue."""
        return self

    @property
    def work_items(self) -> SqliteWorkItems:
        """Work item links."""
        return self

    @property
    def connections(self) -> SqliteConnections:
        """Azure DevOps connections."""
        return self

    @property
    def templates(self) -> SqliteTemplates:
        """Work item templates."""
        return self

    @property
    def hooks(self) -> SqliteHooks:
        """Service-hook subscriptions and their events."""
        return self

    @property
    def operations(self) -> SqliteOperations:
        """Heartbeats, periodic leases, pauses, type cache, metrics, pruning."""
        return self

    @property
    def ui_sessions(self) -> SqliteUiSessions:
        """Admin UI sessions and sign-in throttling."""
        return self._ui_sessions
