"""The job queue: the Protocol its storage satisfies."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from webhook.domain.sync_plan import JobSpec
from webhook.storage.constants import JOB_LEASE_SECONDS
from webhook.storage.types import (
    Job,
    JobRecord,
    Lease,
)


class JobRepository(Protocol):
    """The recorded jobs the worker performs (claims, leases, fencing, lanes)."""

    def list_jobs(self, state: str | None, page: int, per_page: int) -> tuple[list[JobRecord], int]:
        """Jobs, optionally by state (without a state: everything not done)."""
        ...

    def retry_job(self, job_id: int) -> JobRecord:
        """Requeue a failed job now, with a fresh budget of attempts (Missing, InUse)."""
        ...

    def enqueue(
        self,
        jobs: Iterable[JobSpec],
        *,
        risk_id: int | None = None,
        lane: str | None = None,
        at: float | None = None,
    ) -> list[int]:
        """Record `jobs` (pending) and return their ids, in order.

        Each job's lane is `<lane>:<spec.lane>`; `lane` defaults to `risk:<risk_id>`. A job is
        due `spec.delay` seconds after `at` (epoch seconds; default now). Inside a unit of work
        the jobs commit or roll back with the rest of it.
        """
        ...

    def claim_jobs(
        self,
        owner: str,
        *,
        limit: int = 1,
        kinds: tuple[str, ...] = (),
        skip_kinds: tuple[str, ...] = (),
        lease_seconds: float = JOB_LEASE_SECONDS,
        stale: tuple[Lease, ...] = (),
    ) -> list[Job]:
        """Lease up to `limit` runnable jobs, oldest first, only the head of each lane."""
        ...

    def claim_job(
        self,
        owner: str,
        *,
        skip_kinds: tuple[str, ...] = (),
        lease_seconds: float = JOB_LEASE_SECONDS,
        stale: tuple[Lease, ...] = (),
    ) -> Job | None:
        """Lease the next runnable job (oldest first, one at a time per lane), or None."""
        ...

    def has_runnable_job(
        self,
        *,
        kinds: tuple[str, ...] = (),
        skip_kinds: tuple[str, ...] = (),
        stale: tuple[Lease, ...] = (),
    ) -> bool:
        """Cheap check the worker uses between claims (a plain read, no lock)."""
        ...

    def running_leases(self) -> list[Lease]:
        """The lease of every running job (a plain read), for observers of lease renewals."""
        ...

    def renew_leases(
        self, owner: str, held: Iterable[Job], *, lease_seconds: float = JOB_LEASE_SECONDS
    ) -> set[int]:
        """Renew the leases of the jobs in `held` (those the caller's threads still work on)."""
        ...

    def record_job_payload(self, job: Job, payload: dict[str, Any]) -> bool:
        """Replace the payload of a job this worker holds, e.g. to note what a call is about to send
        so that a retry looks for exactly that. False when the lease was lost meanwhile.
        """
        ...

    def complete_job(self, job: Job) -> bool:
        """Mark a job done (False if it was taken over meanwhile or is already finished)."""
        ...

    def fail_job(self, job: Job, error: str) -> bool:
        """Mark a job failed; it waits for a manual retry (False: the claim was lost)."""
        ...

    def retry_job_later(
        self, job: Job, error: str | None, at_ts: float, *, count_attempt: bool = True
    ) -> bool:
        """Put a job back to pending until wall time `at_ts` (False: the claim was lost)."""
        ...

    def wait_for_jobs(self, poll: float) -> bool:
        """Block an idle worker thread until new jobs may be runnable. Engines without
        notifications sleep `poll` seconds and answer False; engines with them (PostgreSQL
        LISTEN/NOTIFY) return True as soon as a commit recorded jobs, else False after about a
        second (jobs that merely came due are found by the caller's next claim)."""
        ...
