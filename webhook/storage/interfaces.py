"""Storage interfaces: one Protocol per aggregate, and `Storage` that holds them all.

Implementations (today `webhook.storage.sqlite`, later PostgreSQL) satisfy these; the contract
suite `tests/storage_contract.py` checks their guarantees once for all of them. Values crossing
these interfaces are the dataclasses of `webhook.storage.types` and `webhook.domain.models`,
or primitives; errors are those of `webhook.storage.errors` (Missing, AlreadyExists, InUse,
StorageBusy).

Unit of work: every verb that changes state is one transaction, and it records the jobs that
change implies in that same transaction (a delivery and its sync jobs, a link and its catch-up
jobs, a work item change and its callback). A transaction may be shared by concurrent callers
(group commit in `record_risks` and `record_hook_event`); each caller's part is all or nothing.

A unit of work (`Storage.unit_of_work`) spans repositories when a caller outside storage
makes a state change and the jobs it implies with several verbs.

Transition note: sources answer dataclasses (`SourceRecord`) that webhook/schemas.py dumps; a
few verbs still answer the API's dictionaries (`list_risks`, `get_template`, ...) and are to
follow.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from webhook.domain.models import Risk, Template
from webhook.domain.sync_plan import JobSpec, WrittenContent
from webhook.domain.ui_sessions import SignInCheck
from webhook.storage.types import (
    ConnectionRecord,
    HookAuth,
    HookRecord,
    IngestOutcome,
    Job,
    JobRecord,
    JobStateCount,
    Lease,
    MetricsSnapshot,
    OrganizationPause,
    PeriodicRun,
    ReconcileHealth,
    RiskDetail,
    RiskSummary,
    SourceAuth,
    SourceRecord,
    TemplateRecord,
    WorkItemChange,
    WorkItemLink,
)

# A running job's holder renews its lease every few seconds (Worker.heartbeat_every). Another
# worker takes the job over once it has seen the lease unchanged for this long by its own
# monotonic clock, so a step of the wall clock never makes a live lease look expired.
JOB_LEASE_SECONDS = 40.0
"""Default lease of a claimed job (seconds); see JobRepository.claim_jobs."""


class SourceRepository(Protocol):
    """Scanner sources and their signing secrets."""

    def create_source(self, name: str, callback_url: str | None) -> tuple[SourceRecord, str]:
        """Create a source with a fresh secret; return it and the secret (shown once)."""
        ...

    def list_sources(self, page: int, per_page: int) -> tuple[list[SourceRecord], int]:
        """Sources, oldest first."""
        ...

    def get_source(self, source_id: int) -> SourceRecord:
        """One source (without its secret)."""
        ...

    def rotate_source_secret(self, source_id: int) -> tuple[SourceRecord, str]:
        """Issue a new secret; the current one stays valid for 24 hours."""
        ...

    def find_source(self, name: str, *, fresh: bool = False) -> SourceAuth | None:
        """The source with its currently valid secrets, or None."""
        ...


class RiskRepository(Protocol):
    """Risks, their history, and ingestion of scanner deliveries."""

    def record_risks(self, source: SourceAuth, webhook_id: str, risks: list[Risk]) -> IngestOutcome:
        """Store a scanner delivery and the work it implies in one transaction (or replay it)."""
        ...

    def list_risks(
        self, filters: dict[str, str], page: int, per_page: int
    ) -> tuple[list[RiskSummary], int]:
        """Risks matching the filters, newest first, with their work item (bounded assets)."""
        ...

    def get_risk(self, risk_id: int) -> RiskDetail:
        """One risk with all its assets, its full text and sync history."""
        ...

    def load_risk(self, risk_id: int) -> Risk | None:
        """The domain risk, or None when it was deleted."""
        ...

    def count_risks(self) -> int:
        """How many risks are stored."""
        ...

    def get_risk_summary(self, risk_id: int) -> RiskSummary | None:
        """A risk as the list endpoint shows it, or None."""
        ...

    def add_history(self, risk_id: int, event: str, detail: dict[str, Any]) -> None:
        """Append one entry to a risk's sync history."""
        ...


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


class WorkItemRepository(Protocol):
    """Links between risks and Azure DevOps work items, and changes seen there."""

    def work_item_for(self, risk_id: int) -> WorkItemLink | None:
        """The work item linked to a risk, if any."""
        ...

    def work_item_owner(self, connection_id: int, ado_id: int) -> int | None:
        """The risk an Azure DevOps work item is linked to, if any."""
        ...

    def request_work_item(self, risk_id: int, template_id: int) -> JobRecord:
        """Manual export: record a create job unless the risk already has (or awaits) an item."""
        ...

    def link_work_item(
        self,
        risk_id: int,
        *,
        connection_id: int,
        template_id: int | None,
        project: str,
        work_item_type: str,
        item: dict[str, Any],
        tag: str,
        adopted: bool,
        state_category: str | None,
        rendered_severity: str,
        job: Job | None = None,
        written: WrittenContent | None = None,
    ) -> bool:
        """Record the work item created (or adopted) for a risk, plus catch-up work."""
        ...

    def record_work_item_state(
        self,
        risk_id: int,
        *,
        rev: int,
        state: str | None,
        state_category: str | None,
        changed_at: str | None = None,
        title: str | None = None,
        body_hash: str | None = None,
    ) -> None:
        """Remember the newest revision we wrote or read (so its echo is ignored), and the title /
        body hash that write set (None: that part was not written).
        """
        ...

    def linked_work_items(
        self, connection_id: int, project: str, *, include_deleted: bool = False
    ) -> dict[int, WorkItemLink]:
        """Work items linked to risks in one project, by Azure DevOps id."""
        ...

    def linked_projects(self, *, include_deleted: bool = False) -> list[tuple[int, str]]:
        """(connection id, project) pairs that have linked work items."""
        ...

    def apply_work_item_change(self, risk_id: int, change: WorkItemChange) -> bool:
        """Apply a state change seen in Azure DevOps; False when stale (rev already applied)."""
        ...

    def apply_hook_changes(self, changes: list[tuple[Job, WorkItemChange | None]]) -> None:
        """Apply several claimed hook-event jobs and mark them done, all in one transaction."""
        ...

    def note_skipped_while_deleted(self, job: Job) -> bool:
        """Record in the risk's history that a job found its work item deleted."""
        ...


class ConnectionRepository(Protocol):
    """Azure DevOps connections (credentials encrypted at rest, never listed)."""

    def create_connection(
        self, name: str, organization_url: str, auth: dict[str, Any]
    ) -> ConnectionRecord:
        """Save a validated connection; credentials are encrypted."""
        ...

    def update_connection(
        self,
        connection_id: int,
        *,
        name: str | None = None,
        auth: dict[str, Any] | None = None,
        organization_url: str | None = None,
    ) -> ConnectionRecord:
        """Rename a connection and/or replace its organization URL or credentials."""
        ...

    def delete_connection(self, connection_id: int) -> None:
        """Delete a connection unless templates still use it."""
        ...

    def list_connections(self, page: int, per_page: int) -> tuple[list[ConnectionRecord], int]:
        """Connections (never their credentials)."""
        ...

    def get_connection(self, connection_id: int) -> ConnectionRecord:
        """One connection (never its credentials)."""
        ...

    def connection_credentials(self, connection_id: int) -> tuple[str, dict[str, Any]]:
        """(organization URL, decrypted auth) for calling Azure DevOps."""
        ...


class TemplateRepository(Protocol):
    """Work item templates and their backfill."""

    def create_template(self, data: dict[str, Any]) -> TemplateRecord:
        """Save a validated template."""
        ...

    def update_template(self, template_id: int, data: dict[str, Any]) -> TemplateRecord:
        """Change a template's fields."""
        ...

    def delete_template(self, template_id: int) -> None:
        """Delete a template (existing work items keep their link)."""
        ...

    def list_templates(self, page: int, per_page: int) -> tuple[list[TemplateRecord], int]:
        """Templates, oldest first."""
        ...

    def get_template(self, template_id: int) -> TemplateRecord:
        """One template with its times (Missing)."""
        ...

    def load_template(self, template_id: int) -> Template | None:
        """The domain template, or None."""
        ...

    def backfill_template(self, template_id: int, *, dry_run: bool) -> dict[str, int]:
        """Apply a template to the risks already stored (SPEC 3.3 backfill)."""
        ...


class HookRepository(Protocol):
    """Service-hook subscriptions and the events they deliver."""

    def hooks_for(self, connection_id: int, project: str) -> list[HookRecord]:
        """Hook rows of one connection and project."""
        ...

    def template_projects(self) -> list[tuple[int, str]]:
        """(connection id, project) pairs that templates file work items in."""
        ...

    def all_hooks(self) -> list[HookRecord]:
        """Every hook row (for the periodic check)."""
        ...

    def list_hooks(self, page: int, per_page: int) -> tuple[list[HookRecord], int]:
        """Hooks, oldest first."""
        ...

    def get_hook(self, hook_id: int) -> HookRecord:
        """One hook. Raises Missing when it does not exist."""
        ...

    def save_hook(
        self,
        *,
        connection_id: int,
        project: str,
        project_id: str,
        event_type: str,
        subscription_id: str,
        status: str,
        username: str,
        password_hash: str,
        healed: bool,
    ) -> HookRecord:
        """Create or replace the hook row for (connection, project, event type)."""
        ...

    def note_hook_status(self, hook_id: int, status: str, error: str | None = None) -> None:
        """Remember the live status last read from Azure DevOps."""
        ...

    def delete_hook(self, hook_id: int) -> None:
        """Forget a hook row."""
        ...

    def hook_credentials(self, username: str) -> HookAuth | None:
        """The hook a basic-auth user name belongs to (with its subscription and project)."""
        ...

    def record_hook_event(
        self,
        *,
        hook_id: int,
        connection_id: int,
        event_id: str,
        event_type: str,
        work_item_id: int,
        rev: int | None,
        change: dict[str, Any],
    ) -> str:
        """Record one delivery and the job that applies it: recorded | duplicate | not_ours."""
        ...


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
    ) -> dict[str, Any] | None:
        """Work item type facts fetched less than max_age seconds ago."""
        ...

    def save_type_info(
        self, connection_id: int, project: str, type_name: str, info: dict[str, Any]
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


class UiSessionRepository(Protocol):
    """Admin UI sessions, sign-in throttling, and the Overview figures."""

    def create_session(self, session_id: str) -> None:
        """Record a new signed-in session (and forget sessions that have ended)."""
        ...

    def session_alive(self, session_id: str) -> bool:
        """True when the session exists and has neither expired nor idled out; touches it."""
        ...

    def end_session(self, session_id: str) -> None:
        """Delete a session: its cookie, wherever copied, no longer signs anyone in."""
        ...

    def sign_in_allowed(self, client: str) -> SignInCheck:
        """Whether `client` (an address) may try a sign-in now."""
        ...

    def record_sign_in_failure(self, client: str) -> SignInCheck:
        """Count a failed sign-in; return whether the next try must wait."""
        ...

    def clear_sign_in_failures(self, client: str) -> None:
        """Forget an address's failures after it signed in."""
        ...

    def open_risks_by_severity(self) -> dict[str, int]:
        """{severity: number of open risks}."""
        ...

    def work_items_per_day(self, days: int) -> list[tuple[str, int]]:
        """[(YYYY-MM-DD, work items filed that UTC day)] for the last `days` days, oldest first."""
        ...

    def paused_organizations(self) -> list[OrganizationPause]:
        """Organizations Azure DevOps asked to wait (pauses that have not ended), by URL."""
        ...


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
