"""Azure DevOps service-hook subscriptions: create, check, heal, remove."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, replace
from typing import Any

from webhook import clock, metrics
from webhook.ado import AdoClient, AdoError, AdoNotFound
from webhook.crypto import hash_password, new_hook_password
from webhook.gateway import AdoGateway, OrganizationNotAllowed, OrganizationPaused
from webhook.storage.interfaces import Storage
from webhook.storage.types import HookRecord

log = logging.getLogger(__name__)

EVENT_TYPES = ("workitem.updated", "workitem.deleted", "workitem.restored")
HEALTHY = "enabled"


class PublicUrlMissing(Exception):
    """WEBHOOK_PUBLIC_URL is not set, so Azure DevOps would not know where to deliver."""


@dataclass(frozen=True)
class HookSetup:
    """What `Subscriptions.ensure` did: every hook of the project (in EVENT_TYPES order) and the
    ids of those created (or recreated) by this call."""

    hooks: tuple[HookRecord, ...]
    created: frozenset[int]

    @property
    def created_any(self) -> bool:
        """Whether anything was created (POST /admin/hooks then answers 201)."""
        return bool(self.created)


def hook_coverage(project: str, hooks: list[HookRecord]) -> dict[str, Any]:
    """Whether a project's work item changes reach the service, from its stored hook rows.

    Returns `{"registered": bool, "healthy": bool, "missing": [event types],
    "message": str | None}`: registered when every event type has a subscription, healthy
    when each was last seen `enabled`; the message tells an admin what that means and what
    to do (None when all is well). Statuses are the last ones read (GET /admin/hooks, the
    periodic check), not read live.
    """
    by_type = {h.event_type: h for h in hooks if h.subscription_id}
    missing = [e for e in EVENT_TYPES if e not in by_type]
    unhealthy = sorted(f"{e} is {h.status}" for e, h in by_type.items() if h.status != HEALTHY)
    message = None
    if missing:
        message = (
            f"no service hooks for project {project!r} ({', '.join(missing)} missing): closing "
            "its work items in Azure DevOps resolves risks only at the next reconciliation "
            "until you register them with POST /admin/hooks"
        )
    elif unhealthy:
        message = (
            f"service hooks of project {project!r} are not healthy ({'; '.join(unhealthy)}); "
            "the periodic check recreates them, POST /admin/hooks does it now"
        )
    return {
        "registered": not missing,
        "healthy": not missing and not unhealthy,
        "missing": missing,
        "message": message,
    }


def unhooked_projects(store: Storage) -> list[dict[str, Any]]:
    """Projects that templates file work items in but whose hooks are missing or unhealthy:
    `[{"connection_id", "project", "message"}]`."""
    hooks: dict[tuple[int, str], list[HookRecord]] = {}
    for hook in store.hooks.all_hooks():
        hooks.setdefault((hook.connection_id, hook.project), []).append(hook)
    out = []
    for connection_id, project in store.hooks.template_projects():
        coverage = hook_coverage(project, hooks.get((connection_id, project), []))
        if not coverage["healthy"]:
            out.append(
                {"connection_id": connection_id, "project": project, "message": coverage["message"]}
            )
    return out


def subscription_body(
    event_type: str, project_id: str, url: str, username: str, password: str
) -> dict[str, Any]:
    """The Subscription create body for a work item web hook (facts §2.1), pinned to 1.0."""
    return {
        "publisherId": "tfs",
        "eventType": event_type,
        "resourceVersion": "1.0",
        "consumerId": "webHooks",
        "consumerActionId": "httpRequest",
        "publisherInputs": {"projectId": project_id},
        "consumerInputs": {
            "url": url,
            "basicAuthUsername": username,
            "basicAuthPassword": password,
            "resourceDetailsToSend": "all",
            "messagesToSend": "none",
            "detailedMessagesToSend": "none",
        },
    }


class Subscriptions:
    """Keeps one enabled subscription per (connection, project, event type)."""

    def __init__(self, store: Storage, gateway: AdoGateway, public_url: str | None) -> None:
        self.store = store
        self.gateway = gateway
        self.public_url = public_url

    def _create(
        self,
        client: AdoClient,
        connection_id: int,
        project: str,
        project_id: str,
        event_type: str,
        *,
        healed: bool,
        old_subscription: str | None,
    ) -> HookRecord:
        if not self.public_url:
            raise PublicUrlMissing("WEBHOOK_PUBLIC_URL is not set")
        if old_subscription:
            client.delete_subscription(old_subscription)  # 404 tolerated by the client
        username = f"adowh-{secrets.token_hex(6)}"
        password = new_hook_password()
        created = client.create_subscription(
            subscription_body(
                event_type, project_id, f"{self.public_url}/hooks/ado", username, password
            )
        )
        if healed:
            metrics.SUBSCRIPTIONS_HEALED.labels(event_type).inc()
        return self.store.hooks.save_hook(
            connection_id=connection_id,
            project=project,
            project_id=project_id,
            event_type=event_type,
            subscription_id=created["id"],
            status=created.get("status") or HEALTHY,
            username=username,
            password_hash=hash_password(password),
            healed=healed,
        )

    def ensure(self, connection_id: int, project: str) -> HookSetup:
        """Create what is missing or unhealthy; return every hook of the project and which
        were created now.

        Raises PublicUrlMissing without WEBHOOK_PUBLIC_URL, AdoNotFound for an unknown
        project, AdoError (OrganizationPaused included) when Azure DevOps fails.
        """
        if not self.public_url:
            raise PublicUrlMissing("WEBHOOK_PUBLIC_URL is not set")
        client = self.gateway.client(connection_id)
        project_id = client.get_project(project)["id"]
        existing = {h.event_type: h for h in self.store.hooks.hooks_for(connection_id, project)}
        result: list[HookRecord] = []
        created: set[int] = set()
        for event_type in EVENT_TYPES:
            hook = existing.get(event_type)
            status = self._live_status(client, hook) if hook else "missing"
            if hook and status == HEALTHY:
                self.store.hooks.note_hook_status(hook.id, status)
                result.append(replace(hook, status=status))
                continue
            made = self._create(
                client,
                connection_id,
                project,
                project_id,
                event_type,
                healed=hook is not None,
                old_subscription=hook.subscription_id if hook else None,
            )
            result.append(made)
            created.add(made.id)
        if created:
            # Changes made while the project had no working hooks reach us only by
            # reconciliation: run it now rather than at its next interval.
            self.store.operations.request_periodic("reconcile")
        return HookSetup(tuple(result), frozenset(created))

    @staticmethod
    def _live_status(client: AdoClient, hook: HookRecord) -> str:
        if not hook.subscription_id:
            return "missing"
        try:
            return str(client.get_subscription(hook.subscription_id).get("status") or "unknown")
        except AdoNotFound:
            return "missing"

    def live(self, hook: HookRecord) -> HookRecord:
        """The hook with its status read from Azure DevOps now (or the error).

        While the organization is paused nothing is asked: the stored status comes back with
        ``last_error`` saying until when the status is not checked.
        """
        try:
            client = self.gateway.client(hook.connection_id)
            status = self._live_status(client, hook)
            self.store.hooks.note_hook_status(hook.id, status)
            return replace(hook, status=status)
        except OrganizationPaused as exc:
            return replace(hook, last_error=f"status not checked: {exc}")
        except OrganizationNotAllowed as exc:
            # WEBHOOK_ALLOWED_ORG_HOSTS no longer admits the organization: nothing is asked.
            return replace(hook, last_error=f"status not checked: {exc.message}")
        except AdoError as exc:
            self.store.hooks.note_hook_status(hook.id, hook.status, f"status unknown: {exc}")
            return replace(hook, last_error=f"status unknown: {exc.message}")

    def remove(self, hook: HookRecord) -> None:
        """Delete the subscription in Azure DevOps, then forget it."""
        if hook.subscription_id:
            client = self.gateway.client(hook.connection_id)
            client.delete_subscription(hook.subscription_id)
        self.store.hooks.delete_hook(hook.id)

    def check_all(self) -> dict[str, Any]:
        """Periodic: read every subscription's status and recreate unhealthy ones.

        Hooks of a paused organization are skipped without a call (the next run checks them):
        ``{"checked", "healed", "errors", "paused", "paused_until": {organization: ISO time}}``.
        """
        healed, checked, errors, paused = 0, 0, 0, 0
        paused_until: dict[str, str] = {}
        for hook in self.store.hooks.all_hooks():
            try:
                client = self.gateway.client(hook.connection_id)
                self.gateway.check_pause(client.org.canonical)  # skip without a call
                checked += 1
                status = self._live_status(client, hook)
                if status == HEALTHY:
                    self.store.hooks.note_hook_status(hook.id, status)
                    continue
                log.warning(
                    "subscription %s for %s is %s: recreating",
                    hook.subscription_id,
                    hook.event_type,
                    status,
                )
                self._create(
                    client,
                    hook.connection_id,
                    hook.project,
                    # Rows from before project ids were stored name none: ask for it.
                    hook.project_id or client.get_project(hook.project)["id"],
                    hook.event_type,
                    healed=True,
                    old_subscription=hook.subscription_id,
                )
                healed += 1
            except OrganizationPaused as exc:
                # Also raised by a request once an answer paused the organization mid-run.
                paused += 1
                paused_until[exc.organization or "?"] = clock.iso(exc.until_ts)
            except (AdoError, PublicUrlMissing) as exc:
                errors += 1
                self.store.hooks.note_hook_status(hook.id, hook.status, str(exc))
        if healed:
            self.store.operations.request_periodic(
                "reconcile"
            )  # events were lost while it was down
        return {
            "checked": checked,
            "healed": healed,
            "errors": errors,
            "paused": paused,
            "paused_until": paused_until,
        }
