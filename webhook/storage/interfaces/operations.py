"""Operations (heartbeats, periodic leases, pauses, metrics): the Protocol of their storage."""

from __future__ import annotations

from typing import Any, Protocol

from webhook.domain.models import WorkItemTypeInfo
from webhook.storage.types import (
    JobStateCount,
    MetricsSnapshot,
    PeriodicRun,
    ReconcileHealth,
)


class OperationsRepository(Protocol):
    """Heartbeats, periodic leases, organization pauses, type cache, metrics, pruning, clock
    repair, installation facts."""

    def installation_id(self) -> str:
        """A random id for this installation, used in work item tracking tags."""
        ...

    def tracking_key(self) -> bytes:
        """The installation's random key for tracking tag MACs (32 bytes), made once."""
        ...

    def check_writable(self) -> None:
        """Raise unless a real write commits now, through the same bounded path as any write."""
        ...

    def checkpoint(self) -> tuple[int, int]:
        """Copy the write-ahead log into the store's file, holding up writers as briefly as
        possible (the worker calls it every few seconds): (log pages, pages copied).

        Raises StorageBusy when the store stays busy.
        """
        ...

    def note_clock_offset(self, boot: str, offset: float) -> float:
        """Repair pending due times after the wall clock stepped back."""
        ...

    def job_counts(self) -> dict[str, JobStateCount]:
        """Count and oldest age of jobs by state, done ones left out (for /metrics)."""
        ...

    def heartbeat(self, worker_id: str, pid: int, host: str) -> None:
        """Record that a worker is alive."""
        ...

    def worker_heartbeat_age(self) -> float | None:
        """Seconds since the freshest worker heartbeat, or None if no worker ever ran."""
        ...

    def prune(self, *, deliveries_older_than: float, jobs_done_older_than: float) -> None:
        """Forget answered deliveries and finished jobs past their usefulness."""
        ...

    def cached_type_info(
        self, connection_id: int, project: str, type_name: str, *, max_age: float
    ) -> WorkItemTypeInfo | None:
        """Work item type facts fetched less than max_age seconds ago."""
        ...

    def save_type_info(
        self, connection_id: int, project: str, type_name: str, info: WorkItemTypeInfo
    ) -> None:
        """Cache work item type facts."""
        ...

    def pause_organization(self, organization_url: str, until_ts: float) -> None:
        """Pause every call to an organization until the given time (never shortens a pause)."""
        ...

    def organization_paused_until(self, organization_url: str) -> float | None:
        """When the organization's pause ends, if it is paused now."""
        ...

    def start_periodic(self, name: str, interval: float, owner: str, lease: float) -> bool:
        """Take the lease on a periodic task if it is due and nobody runs it."""
        ...

    def finish_periodic(self, name: str, owner: str, ok: bool, result: dict[str, Any]) -> None:
        """Record how a periodic task ended and release its lease."""
        ...

    def request_periodic(self, name: str) -> None:
        """Make a periodic task due now (after its current run, if one is running)."""
        ...

    def periodic_status(self) -> dict[str, PeriodicRun]:
        """Last run of each periodic task, by task name."""
        ...

    def metrics_snapshot(self) -> MetricsSnapshot:
        """Database-derived figures for /metrics (computed at scrape time)."""
        ...

    def reconcile_health(self) -> ReconcileHealth | None:
        """How reconciliation is doing, for /readyz (None before its first run)."""
        ...
