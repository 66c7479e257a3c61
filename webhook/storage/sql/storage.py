"""SqlStorage: every SQL repository over one engine's database, as one object.

Each repository property answers the same object typed as its Protocol
(`webhook.storage.interfaces`), so callers name the aggregate they use
(`storage.jobs.claim_jobs(...)`). Each engine subclasses it with what only it knows: where it
lives (`location`) and how its schema is made (`migrate`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

from webhook.crypto import SecretBox
from webhook.storage.sql.common import SqlRepo
from webhook.storage.sql.connections import SqlConnections
from webhook.storage.sql.db import SqlDatabase
from webhook.storage.sql.hooks import SqlHooks
from webhook.storage.sql.jobs import SqlJobs
from webhook.storage.sql.operations import SqlOperations
from webhook.storage.sql.risks import SqlRisks
from webhook.storage.sql.sources import SqlSources
from webhook.storage.sql.templates import SqlTemplates
from webhook.storage.sql.ui_sessions import SqlUiSessions
from webhook.storage.sql.work_items import SqlWorkItems


class SqlStorage(
    SqlSources,
    SqlRisks,
    SqlJobs,
    SqlWorkItems,
    SqlConnections,
    SqlTemplates,
    SqlHooks,
    SqlOperations,
    SqlRepo,
    ABC,
):
    """All repositories over one engine's database (see the module docstring)."""

    def __init__(
        self, db: SqlDatabase, box: SecretBox, *, content_sync_seconds: float = 60.0
    ) -> None:
        super().__init__(db, box, content_sync_seconds=content_sync_seconds)
        self._ui_sessions = SqlUiSessions(db)

    @property
    @abstractmethod
    def location(self) -> str:
        """Where this store lives (see Storage.location); each engine says."""

    @abstractmethod
    def migrate(self) -> int:
        """Create or migrate the schema (see Storage.migrate); each engine does its own."""

    @contextmanager
    def unit_of_work(self) -> Iterator[SqlStorage]:
        """One write transaction spanning repositories (see Storage.unit_of_work): every write
        of this thread joins it until the block ends (Database.unit)."""
        with self.db.unit():
            yield self

    @property
    def sources(self) -> SqlSources:
        """Scanner sources."""
        return self

    @property
    def risks(self) -> SqlRisks:
        """Risks and ingestion."""
        return self

    @property
    def jobs(self) -> SqlJobs:
        """The job queue."""
        return self

    @property
    def work_items(self) -> SqlWorkItems:
        """Work item links."""
        return self

    @property
    def connections(self) -> SqlConnections:
        """Azure DevOps connections."""
        return self

    @property
    def templates(self) -> SqlTemplates:
        """Work item templates."""
        return self

    @property
    def hooks(self) -> SqlHooks:
        """Service-hook subscriptions and their events."""
        return self

    @property
    def operations(self) -> SqlOperations:
        """Heartbeats, periodic leases, pauses, type cache, metrics, pruning."""
        return self

    @property
    def ui_sessions(self) -> SqlUiSessions:
        """Admin UI sessions and sign-in throttling."""
        return self._ui_sessions
