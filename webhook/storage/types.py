"""Plain value types storage hands out and takes in (never engine rows, never API dictionaries).

Domain objects (`Risk`, `Template`) live in `webhook.domain.models`; these are the storage-side
facts about them: a claim of a job, what is linked to what, what an ingestion answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webhook.domain.models import Asset
from webhook.domain.work_item_changes import WorkItemChange

__all__ = [
    "ConnectionAuthInfo",
    "ConnectionRecord",
    "HistoryEntry",
    "HookAuth",
    "HookRecord",
    "IngestOutcome",
    "Job",
    "JobRecord",
    "JobStateCount",
    "Lease",
    "MetricsSnapshot",
    "OrganizationPause",
    "PeriodicRun",
    "PeriodicSummary",
    "ReconcileHealth",
    "RiskDetail",
    "RiskResolution",
    "RiskSummary",
    "SourceAuth",
    "SourceRecord",
    "SubscriptionStatus",
    "TemplateRecord",
    "WorkItemChange",
    "WorkItemLink",
    "WorkItemRef",
]


@dataclass(frozen=True)
class SourceAuth:
    """A scanner source as the signature check needs it."""

    id: int
    name: str
    callback_url: str | None
    secrets: tuple[str, ...]  # current first, then the previous one while still valid


@dataclass(frozen=True)
class SourceRecord:
    """A scanner source as the admin sees it (never its secrets).

    `previous_secret_valid_until` is when the secret replaced by the last rotation stops
    verifying (ISO 8601), or None when there is none or it already stopped; times are ISO 8601.
    """

    id: int
    name: str
    callback_url: str | None
    previous_secret_valid_until: str | None
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class ConnectionAuthInfo:
    """How a connection signs in, without its secret: `type` is "pat" or
    "service_principal"; `tenant_id`/`client_id` are set only for a service principal."""

    type: str
    tenant_id: str | None = None
    client_id: str | None = None


@dataclass(frozen=True)
class ConnectionRecord:
    """An Azure DevOps connection as the admin sees it (never its credentials); times are
    ISO 8601."""

    id: int
    name: str
    organization_url: str
    auth: ConnectionAuthInfo
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class RiskResolution:
    """How a risk's work item was closed: its state, why (System.Reason), by whom and when
    (ISO 8601)."""

    state: str | None
    reason: str | None
    by: str | None
    at: str | None


@dataclass(frozen=True)
class WorkItemRef:
    """A risk's work item as lists show it (`deleted`: it sits in the recycle bin)."""

    id: int
    url: str | None
    project: str
    type: str
    state: str | None
    deleted: bool


@dataclass(frozen=True)
class RiskSummary:
    """A risk as lists show it (SPEC 3.3): `assets` holds at most the first ASSETS_IN_LIST
    assets and `assets_total` counts them all; times are ISO 8601."""

    id: int
    source: str
    key: str
    name: str
    severity: str
    status: str
    resolution: RiskResolution | None
    url: str | None
    project: str | None
    assets: tuple[Asset, ...]
    assets_total: int
    tags: tuple[str, ...]
    created_at: str
    updated_at: str
    work_item: WorkItemRef | None


@dataclass(frozen=True)
class HistoryEntry:
    """One entry of a risk's sync history (`at` ISO 8601; `detail` as recorded)."""

    at: str
    event: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class RiskDetail(RiskSummary):
    """One risk in full: every asset, its texts and its sync history, oldest first."""

    definition: str | None
    evidence: str | None
    proof: str | None
    remediation: str | None
    history: tuple[HistoryEntry, ...]


@dataclass(frozen=True)
class TemplateRecord:
    """A work item template as the admin sees it (the domain `Template` plus its times).

    `sources` None means every source; `fields` maps field reference names to values; times
    are ISO 8601.
    """

    id: int
    name: str
    connection_id: int
    project: str
    work_item_type: str
    auto_create: bool
    severity_threshold: str
    sources: tuple[str, ...] | None
    title_format: str
    tags: tuple[str, ...]
    area_path: str | None
    iteration_path: str | None
    fields: dict[str, Any]
    close_on_resolve: bool
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class JobRecord:
    """A recorded job as the admin sees it (see `Job` for a worker's claim of one).

    `state` is pending, running, failed or done; `next_attempt_at` (ISO 8601) is set only
    while pending.
    """

    id: int
    kind: str
    state: str
    attempts: int
    last_error: str | None
    risk_id: int | None
    next_attempt_at: str | None


@dataclass(frozen=True)
class Job:
    """One claim of a recorded job, as its holder sees it.

    `token` is the fencing token of this claim: every claim of the job increments it, and the
    holder's outcome (complete, fail, retry later, linking a work item) is recorded only while
    the job still carries that token, i.e. nobody took it over meanwhile.
    """

    id: int
    kind: str
    risk_id: int | None
    lane: str
    payload: dict[str, Any]
    attempts: int  # including the current claim
    lease_owner: str | None
    token: int = 0
    taken_over: bool = False  # claimed from a holder whose lease ran out without an outcome

    @property
    def outcome_unknown(self) -> bool:
        """An earlier claim may have done (part of) the work without recording it."""
        return self.taken_over or self.token > 1 or self.attempts > 1


@dataclass(frozen=True)
class Lease:
    """What an observer saw of a running job's lease: renewals move `renewals` on."""

    id: int
    token: int
    renewals: int


@dataclass(frozen=True)
class WorkItemLink:
    """The Azure DevOps work item linked to a risk, as last written or read by the service.

    `rev` is the newest revision applied; `title`/`body_hash` what the service last wrote
    (None: unknown); `deleted` whether the item sits in the recycle bin; times are ISO 8601.
    """

    risk_id: int
    connection_id: int
    template_id: int | None
    ado_id: int
    project: str
    type: str
    url: str | None
    state: str | None
    state_category: str | None
    rev: int
    deleted: bool
    tag: str
    changed_at: str | None
    title: str | None
    body_hash: str | None
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class HookRecord:
    """A service-hook subscription as last seen by the service.

    One per (connection, project, event type); `subscription_id` is the Azure DevOps
    subscription (None: none yet), `status` its status as last read (`enabled`,
    `onProbation`, `disabledBySystem`, ... or `missing`), `project_id` the project's GUID;
    `heal_count` counts recreations; times are ISO 8601.
    """

    id: int
    connection_id: int
    project: str
    project_id: str | None
    event_type: str
    subscription_id: str | None
    status: str
    heal_count: int
    last_checked_at: str | None
    last_healed_at: str | None
    last_error: str | None


@dataclass(frozen=True)
class HookAuth:
    """What a hook's basic-auth user name stands for (see HookRepository.hook_credentials)."""

    hook_id: int
    connection_id: int
    password_hash: str
    subscription_id: str | None
    project: str
    project_id: str | None


@dataclass(frozen=True)
class IngestOutcome:
    """What a scanner delivery answered: `response` is the JSON text, as stored for replays."""

    status: int
    response: str  # the JSON answer, exactly as stored for replays of this webhook-id
    replayed: bool
    actions: tuple[str, ...]


# ---- operations: the service's own figures ---------------------------------------------------


@dataclass(frozen=True)
class JobStateCount:
    """Jobs in one state: how many, and the age in seconds of the oldest (None: unknown)."""

    count: int
    oldest_age_seconds: float | None


@dataclass(frozen=True)
class PeriodicRun:
    """The last run of a periodic task (reconcile, hook_check, ...).

    Times are unix seconds (None: never started / never finished); `last_ok` None before the
    first finish; `last_result` is the JSON object the run stored (see
    OperationsRepository.finish_periodic), {} when there is none.
    """

    last_started_ts: float | None
    last_finished_ts: float | None
    last_ok: bool | None
    last_result: dict[str, Any]


@dataclass(frozen=True)
class SubscriptionStatus:
    """A service-hook subscription as /metrics labels it (status as last read)."""

    id: int
    event_type: str
    project: str
    status: str


@dataclass(frozen=True)
class PeriodicSummary:
    """A finished periodic task as /metrics shows it: when it last ended (unix seconds), whether
    it succeeded, how many runs in a row failed; `last_changes`/`item_failures` only for
    reconciliation (None otherwise)."""

    last_run_at_unix: float
    last_ok: bool | None
    consecutive_failures: int
    last_changes: int | None = None
    item_failures: int | None = None


@dataclass(frozen=True)
class MetricsSnapshot:
    """Database-derived figures for /metrics, read at scrape time.

    `jobs` maps a state (pending, running, failed) to its count; a None field or a periodic
    task that never finished omits its series.
    """

    jobs: dict[str, JobStateCount]
    subscriptions: tuple[SubscriptionStatus, ...]
    worker_heartbeat_age_seconds: float | None
    reconcile: PeriodicSummary | None
    hook_check: PeriodicSummary | None


@dataclass(frozen=True)
class ReconcileHealth:
    """How reconciliation is doing, for /readyz: a pass fails as a whole when a project cannot
    be read (`last_error` says why); items it could not apply are counted in `item_failures`
    without failing the pass; `last_run_at` is ISO 8601."""

    last_ok: bool | None
    last_run_at: str
    consecutive_failures: int
    last_error: str | None
    item_failures: int


@dataclass(frozen=True)
class OrganizationPause:
    """An organization Azure DevOps asked to wait, until `until_ts` (unix seconds)."""

    organization_url: str
    until_ts: float


@dataclass(frozen=True)
class BackfillResult:
    """A template backfill (SPEC 3.3): risks matching now, and how many got a create job."""

    matched: int
    queued: int
