"""Azure DevOps clients for stored connections, organization pauses and cached type facts."""

from __future__ import annotations

import threading
from typing import Any

from webhook import clock, metrics
from webhook.ado import AdoClient, PatAuth, ServicePrincipalAuth
from webhook.domain.models import WorkItemState, WorkItemTypeInfo
from webhook.domain.orgurl import OrgUrl, parse_organization_url
from webhook.settings import Settings
from webhook.store import Store

TYPE_CACHE_SECONDS = 3600.0


class OrganizationPaused(Exception):
    """Azure DevOps asked us to wait (Retry-After); the whole organization is paused."""

    def __init__(self, until_ts: float) -> None:
        super().__init__(
            f"Azure DevOps asked to wait; organization paused until {clock.iso(until_ts)}"
        )
        self.until_ts = until_ts


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


def type_info_to_json(info: WorkItemTypeInfo) -> dict[str, Any]:
    """Serializable form for the type cache."""
    return {
        "name": info.name,
        "states": [[s.name, s.category] for s in info.states],
        "field_names": sorted(info.field_names),
        "required_fields": sorted(info.required_fields),
    }


def type_info_from_json(data: dict[str, Any]) -> WorkItemTypeInfo:
    """Inverse of type_info_to_json."""
    return WorkItemTypeInfo(
        name=data["name"],
        states=tuple(WorkItemState(n, c) for n, c in data["states"]),
        field_names=frozenset(data["field_names"]),
        required_fields=frozenset(data["required_fields"]),
    )


class AdoGateway:
    """Builds one client per connection and thread; records Retry-After pauses and metrics."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._local = threading.local()

    def parse_org(self, url: str) -> OrgUrl:
        """Strictly parse an organization URL against the allow-list (OrgUrlError otherwise)."""
        return parse_organization_url(url, extra_hosts=self.settings.allowed_org_hosts)

    def new_client(self, org: OrgUrl, auth: dict[str, Any]) -> AdoClient:
        """A client for explicit credentials (e.g. validating before saving)."""

        def on_retry_after(seconds: float) -> None:
            metrics.RATE_LIMIT_PAUSES.inc()
            self.store.pause_organization(org.canonical, clock.now() + seconds)

        def on_response(method: str, status: int | str) -> None:
            metrics.ADO_CALLS.labels(method, str(status)).inc()

        return AdoClient(
            org,
            auth_from_dict(auth),
            entra_authority=self.settings.entra_authority,
            on_retry_after=on_retry_after,
            on_response=on_response,
        )

    def client(self, connection_id: int, *, respect_pause: bool = True) -> AdoClient:
        """The client for a stored connection; raises OrganizationPaused during a pause."""
        org_url, auth = self.store.connection_credentials(connection_id)
        org = self.parse_org(org_url)
        if respect_pause:
            until = self.store.organization_paused_until(org.canonical)
            if until is not None:
                raise OrganizationPaused(until)
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
            cached = self.store.cached_type_info(
                connection_id, project, type_name, max_age=TYPE_CACHE_SECONDS
            )
            if cached is not None:
                return type_info_from_json(cached)
        client = self.client(connection_id)
        states = client.get_work_item_type_states(project, type_name)
        fields = client.get_work_item_type_fields(project, type_name)
        info = type_info_from_ado(type_name, states, fields)
        self.store.save_type_info(connection_id, project, type_name, type_info_to_json(info))
        return info
