"""`Storage`: every repository over one store, and its unit of work."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from webhook.storage.interfaces.connections import ConnectionRepository
from webhook.storage.interfaces.hooks import HookRepository
from webhook.storage.interfaces.jobs import JobRepository
from webhook.storage.interfaces.operations import OperationsRepository
from webhook.storage.interfaces.risks import RiskRepository
from webhook.storage.interfaces.sources import SourceRepository
from webhook.storage.interfaces.templates import TemplateRepository
from webhook.storage.interfaces.ui_sessions import UiSessionRepository
from webhook.storage.interfaces.work_items import WorkItemRepository


class Storage(
    SourceRepository,
    RiskRepository,
    JobRepository,
    WorkItemRepository,
    ConnectionRepository,
    TemplateRepository,
    HookRepository,
    OperationsRepository,
    Protocol,
):
    """Every repository over one store; each property names one aggregate's repository."""

    @property
    def location(self) -> str:
        """Where this store lives (for SQLite, its file path): a key for process-wide caches
        shared by every storage object over the same store."""
        ...

    def migrate(self) -> int:
        """Create or migrate the store's schema; return its schema version.

        Raises StorageUnusable, with one line naming the store and the problem, when it
        cannot be opened or written or has a schema newer than this code knows.
        """
        ...

    def unit_of_work(self) -> AbstractContextManager[Storage]:
        """One write transaction spanning repositories: `with storage.unit_of_work() as uow:`.

        Every write made through `uow` (or through this storage, on this thread) until the
        block ends is part of it: all commit together when the block ends, or none when it
        raises. So a state change and the jobs it implies (`uow.jobs.enqueue(...)`) are recorded
        together or not at all. A verb that raises inside the block undoes only its own writes
        (the block may catch its error and go on). Reads inside see the unit's own writes.
        Waits and errors as for any write (StorageBusy when the database stays busy). Verbs
        that batch concurrent callers (record_risks, record_hook_event) run inline in it.
        """
        ...

    @property
    def sources(self) -> SourceRepository:
        """Scanner sources."""
        ...

    @property
    def risks(self) -> RiskRepository:
        """Risks and ingestion."""
        ...

    @property
    def jobs(self) -> JobRepository:
        """The job queue."""
        ...

    @property
    def work_items(self) -> WorkItemRepository:
        """Work item links."""
        ...

    @property
    def connections(self) -> ConnectionRepository:
        """Azure DevOps connections."""
        ...

    @property
    def templates(self) -> TemplateRepository:
        """Work item templates."""
        ...

    @property
    def hooks(self) -> HookRepository:
        """Service-hook subscriptions and their events."""
        ...

    @property
    def operations(self) -> OperationsRepository:
        """Heartbeats, periodic leases, pauses, type cache, metrics, pruning."""
        ...

    @property
    def ui_sessions(self) -> UiSessionRepository:
        """Admin UI sessions and sign-in throttling."""
        ...
