"""Azure DevOps clients for stored connections, organization pauses and cached type facts.

Pauses (SPEC 4 "Pacing"): a ``Retry-After`` from Azure DevOps, on any status, pauses the whole
organization in the store (every process sees it). Every client the gateway builds checks the
pause before *each* request — not only when it is built — so a job stops between two of its
calls, and periodic checks and admin requests make no call while it lasts: the request raises
:class:`OrganizationPaused` instead (the worker retries the job after the pause without
counting an attempt; admin routes answer 503 ``ado_paused``).

Shares: while a worker job runs, each request also holds one of the organization's slots in
:data:`webhook.outbound.SHARES`, so one slow organization cannot take every worker thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from webhook import clock, logs, metrics, outbound
from webhook.ado import AdoClient, AdoError, PatAuth, ServicePrincipalAuth
from webhook.domain.models import WorkItemState, WorkItemTypeInfo
from webhook.domain.orgurl import OrgUrl, OrgUrlError, parse_organization_url
from webhook.jobs import RetryLater
from webhook.settings import Settings
from webhook.storage.interfaces import Storage

TYPE_CACHE_SECONDS = 3600.0
# How long a process trusts what it last read of an organization's pause. A pause this process
# records is seen at once; one recorded by another process within this many seconds.
PAUSE_CACHE_SECONDS = 1.0


class OrganizationPaused(Exception):
    """Azure DevOps asked us to wait (Retry-After); the whole organization is paused.

    ``until_ts``: unix time the pause ends; ``organization``: its canonical URL. Raised before
    a request is sent, so nothing reached Azure DevOps.
    """

    def __init__(self, until_ts: float, organization: str | None = None) -> None:
        where = f"organization {organization}" if organization else "the organization"
        super().__init__(
            f"Azure DevOps asked to wait: {where} is paused until {clock.iso(until_ts)}"
        )
        self.until_ts = until_ts
        self.organization = organization

    def seconds_left(self, now: float | None = None) -> int:
        """Return the whole seconds until the pause ends (rounded up, at least 1)."""
        return whole_seconds(self.until_ts - (clock.now() if now is None else now))


class OrganizationNotAllowed(AdoError):
    """A stored connection's organization URL is no longer allowed (WEBHOOK_ALLOWED_ORG_HOSTS
    was narrowed since it was saved): nothing is sent to it. An AdoError, so every caller that
    copes with Azure DevOps refusing (a job's retry, a hook's status, a connection test) copes
    with this too; the admin API answers 409 `organization_not_allowed`."""


def whole_seconds(seconds: float) -> int:
    """A wait as a Retry-After value: whole seconds, rounded up, at least 1."""
    return max(1, int(-(-seconds // 1)))


class _PauseCache:
    """What this process last read of each organization's pause: (database, org) → until."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], tuple[float, float | None]] = {}

    def get(self, key: tuple[str, str]) -> tuple[bool, float | None]:
        """Return (fresh, until_ts) for ``key``."""
        with self._lock:
            seen = self._seen.get(key)
        if seen is None or time.monotonic() - seen[0] > PAUSE_CACHE_SECONDS:
            return False, None
        return True, seen[1]

    def put(self, key: tuple[str, str], until: float | None) -> None:
        """Remember ``until`` (None: not paused) for ``key``."""
        with self._lock:
            self._seen[key] = (time.monotonic(), until)

    def reset(self) -> None:
        """Forget everything (after a fork, or in tests)."""
        self._lock = threading.Lock()
        self._seen = {}


_PAUSES = _PauseCache()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_PAUSES.reset)


def auth_from_dict(auth: dict[str, Any]) -> PatAuth | ServicePrincipalAuth:
    """Credentials object from the stored (decrypted) auth mapping."""
    if auth["type"] == "pat":
        return PatAuth(token=auth["token"])
    return ServicePrincipalAuth(
        tenant_id=auth["tenant_id"],
        client_id=auth["client_id"],
        client_secret=auth["client_secret"],
    )


def type_info_from_ado(
    name: str, states: list[dict[str, Any]], fields: list[dict[str, Any]]
) -> WorkItemTypeInfo:
    """Domain facts about a work item type from its /states and /fields answers."""
    required = {
        f["referenceName"]
        for f in fields
        if f.get("alwaysRequired") and f.get("defaultValue") in (None, "")
    }
    return WorkItemTypeInfo(
        name=name,
        states=tuple(WorkItemState(s["name"], s.get("category") or "") for s in states),
        field_names=frozenset(f["referenceName"] for f in fields),
        required_fields=frozenset(required),
    )


def required_field_details(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every always-required field of a type with its allowed values and default, by name.

    `fields` is the `GET …/workitemtypes/{type}/fields?$expand=allowedValues` answer
    (WorkItemTypeFieldWithReferences: referenceName, name, alwaysRequired, defaultValue,
    allowedValues; learn.microsoft.com/rest/api/azure/devops/wit/work-item-types-field/list).
    Returns `[{"reference_name", "name", "allowed_values": [str], "default"}]`; a field whose
    default is empty must be set by whoever creates the item (see type_info_from_ado).
    """
    out = [
        {
            "reference_name": f["referenceName"],
            "name": f.get("name") or f["referenceName"],
            "allowed_values": [str(v) for v in f.get("allowedValues") or []],
            "default": None if f.get("defaultValue") in (None, "") else f.get("defaultValue"),
        }
        for f in fields
        if f.get("alwaysRequired")
    ]
    return sorted(out, key=lambda d: str(d["reference_name"]).casefold())


def _worker_share(organization: str) -> Callable[[], None]:
    """Inside a worker job, take one of the organization's slots; return its release.

    Outside a job (admin requests, periodic tasks) there is no worker share to keep. When the
    organization already has its share: jobs.RetryLater(delay, count_attempt=False).
    """
    if logs.current_context().get("job_id") is None:
        return _nothing
    try:
        return outbound.SHARES.acquire([(f"ado {organization}", outbound.ado_organization_share())])
    except outbound.DestinationBusy as exc:
        raise RetryLater(str(exc), delay=exc.delay, count_attempt=False) from None


def _nothing() -> None:
    return None


class AdoGateway:
    """Builds one client per connection and thread; records Retry-After pauses and metrics;
    every request of its clients waits out the organization's pause (OrganizationPaused)."""

    def __init__(self, settings: Settings, store: Storage) -> None:
        self.settings = settings
        self.store = store
        self._local = threading.local()

    def parse_org(self, url: str) -> OrgUrl:
        """Strictly parse an organization URL against the allow-list (OrgUrlError otherwise)."""
        return parse_organization_url(url, extra_hosts=self.settings.allowed_org_hosts)

    def stored_org(self, url: str) -> OrgUrl:
        """parse_org for a URL saved with a connection: OrganizationNotAllowed when the
        allow-list no longer admits it."""
        try:
            return self.parse_org(url)
        except OrgUrlError as exc:
            raise OrganizationNotAllowed(
                f"the connection's organization is no longer allowed ({exc}); list its host"
                " in WEBHOOK_ALLOWED_ORG_HOSTS again, or edit the connection"
            ) from None

    # ---- pauses -------------------------------------------------------------------------

    def _pause_key(self, organization: str) -> tuple[str, str]:
        return (self.store.location, organization)

    def organization_paused_until(self, organization: str) -> float | None:
        """When the organization's pause ends (unix time), or None when it is not paused."""
        key = self._pause_key(organization)
        fresh, until = _PAUSES.get(key)
        if not fresh:
            until = self.store.operations.organization_paused_until(organization)
            _PAUSES.put(key, until)
        return until if until is not None and until > clock.now() else None

    def paused_until(self, connection_id: int) -> float | None:
        """When the pause of the connection's organization ends, or None (no call is made)."""
        org_url = self.store.connections.get_connection(connection_id).organization_url
        return self.organization_paused_until(self.stored_org(org_url).canonical)

    def pause(self, organization: str, seconds: float) -> None:
        """Pause every call to the organization for ``seconds`` (never shortens a pause)."""
        metrics.RATE_LIMIT_PAUSES.inc()
        self.store.operations.pause_organization(organization, clock.now() + seconds)
        # Re-read: the stored pause may end later than this one.
        until = self.store.operations.organization_paused_until(organization)
        _PAUSES.put(self._pause_key(organization), until)

    def check_pause(self, organization: str) -> None:
        """Raise OrganizationPaused while the organization is paused."""
        until = self.organization_paused_until(organization)
        if until is not None:
            raise OrganizationPaused(until, organization)

    # ---- clients ------------------------------------------------------------------------

    def new_client(self, org: OrgUrl, auth: dict[str, Any]) -> AdoClient:
        """A client for explicit credentials (e.g. validating before saving).

        Each of its requests first checks the organization's pause (OrganizationPaused) and,
        inside a worker job, takes one of the organization's slots in
        ``outbound.SHARES`` (``jobs.RetryLater`` without counting an attempt when full).
        """

        @contextmanager
        def guard(method: str, path: str) -> Iterator[None]:
            self.check_pause(org.canonical)
            release = _worker_share(org.canonical)
            try:
                yield
            finally:
                release()

        def on_retry_after(seconds: float) -> None:
            self.pause(org.canonical, seconds)

        def on_response(method: str, status: int | str) -> None:
            metrics.ADO_CALLS.labels(method, str(status)).inc()

        return AdoClient(
            org,
            auth_from_dict(auth),
            entra_authority=self.settings.entra_authority,
            guard=guard,
            on_retry_after=on_retry_after,
            on_response=on_response,
        )

    def client(self, connection_id: int) -> AdoClient:
        """The client for a stored connection (its requests raise OrganizationPaused during a
        pause of the organization, without calling)."""
        org_url, auth = self.store.connections.connection_credentials(connection_id)
        org = self.stored_org(org_url)
        cache: dict[int, tuple[str, AdoClient]] = getattr(self._local, "clients", None) or {}
        self._local.clients = cache
        fingerprint = f"{org_url}|{sorted(auth.items())}"
        cached = cache.get(connection_id)
        if cached and cached[0] == fingerprint:
            return cached[1]
        if cached:
            cached[1].close()
        client = self.new_client(org, auth)
        cache[connection_id] = (fingerprint, client)
        return client

    def type_info(
        self, connection_id: int, project: str, type_name: str, *, refresh: bool = False
    ) -> WorkItemTypeInfo:
        """States (with categories) and fields of a type, cached for an hour."""
        if not refresh:
            cached = self.store.operations.cached_type_info(
                connection_id, project, type_name, max_age=TYPE_CACHE_SECONDS
            )
            if cached is not None:
                return cached
        client = self.client(connection_id)
        states = client.get_work_item_type_states(project, type_name)
        fields = client.get_work_item_type_fields(project, type_name)
        info = type_info_from_ado(type_name, states, fields)
        self.store.operations.save_type_info(connection_id, project, type_name, info)
        return info
