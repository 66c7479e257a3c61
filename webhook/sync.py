"""Job handlers: the outside work recorded by the store, performed idempotently by the worker."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from webhook import metrics
from webhook.domain.models import Risk, WorkItemTypeInfo
from webhook.domain.rendering import (
    build_create_patch,
    build_severity_change,
    build_status_comment,
    comment_has_marker,
)
from webhook.domain.states import (
    CLOSE_CATEGORIES,
    REOPEN_CATEGORIES,
    classify_state,
    first_state_in,
)
from webhook.domain.sync_plan import (
    CALLBACK,
    CREATE_WORK_ITEM,
    SCANNER_REOPENED,
    SCANNER_RESOLVED,
    SEVERITY_CHANGED,
)
from webhook.domain.templates import tracking_tag
from webhook.gateway import AdoGateway
from webhook.services import Services
from webhook.store import Job
from webhook.worker import PeriodicTask, PermanentFailure

log = logging.getLogger(__name__)
HISTORY_FIELD = "System.History"


class SyncHandlers:
    """Performs each kind of job against Azure DevOps (or the scanner's callback URL)."""

    def __init__(self, services: Services, gateway: AdoGateway | None = None) -> None:
        self.services = services
        self.store = services.store
        self.gateway = gateway or AdoGateway(services.settings, services.store)

    def risk_link(self, risk: Risk) -> str | None:
        """Our own page for the risk, when the service knows its public URL."""
        base = self.services.settings.public_url
        return f"{base}/admin/risks/{risk.id}" if base and risk.id is not None else None

    @staticmethod
    def marker(job: Job) -> str:
        """Visible footer that lets a retry find the comment an earlier attempt posted."""
        return f"ado-webhook event {job.id}"

    # ---- create -------------------------------------------------------------------------

    def create_work_item(self, job: Job) -> None:
        """Create the risk's work item exactly once (adopting one an earlier attempt made)."""
        assert job.risk_id is not None
        risk = self.store.load_risk(job.risk_id)
        if risk is None or self.store.work_item_for(job.risk_id) is not None:
            return
        if risk.status != "open":
            self.store.add_history(
                job.risk_id, "work_item_skipped", {"reason": f"risk is {risk.status}"}
            )
            return
        template = self.store.load_template(int(job.payload["template_id"]))
        if template is None:
            raise PermanentFailure(f"template {job.payload['template_id']} no longer exists")
        client = self.gateway.client(template.connection_id)
        info = self.gateway.type_info(
            template.connection_id, template.project, template.work_item_type
        )
        tag = tracking_tag(self.store.installation_id(), job.risk_id)
        item: dict[str, Any] | None = None
        adopted = False
        if job.attempts > 1:
            # An earlier attempt may have created the item before its outcome got lost.
            ids = client.find_by_tag(template.project, tag)
            if ids:
                item = client.get_work_item(template.project, min(ids))
                adopted = True
        if item is None:
            patch = build_create_patch(
                risk, template, info, tracking_tag=tag, risk_link=self.risk_link(risk)
            )
            item = client.create_work_item(template.project, template.work_item_type, patch)
        state = (item.get("fields") or {}).get("System.State")
        linked = self.store.link_work_item(
            job.risk_id,
            connection_id=template.connection_id,
            template_id=template.id,
            project=template.project,
            work_item_type=template.work_item_type,
            item=item,
            tag=tag,
            adopted=adopted,
            state_category=classify_state(state, info) if state else None,
            rendered_severity=risk.severity,
        )
        if linked:
            metrics.WORK_ITEMS_CREATED.labels("true" if adopted else "false").inc()

    # ---- updates to an existing item ----------------------------------------------------

    def _linked(self, job: Job) -> tuple[Risk, Any, WorkItemTypeInfo] | None:
        assert job.risk_id is not None
        risk = self.store.load_risk(job.risk_id)
        wi = self.store.work_item_for(job.risk_id)
        if risk is None or wi is None or wi["deleted"]:
            return None
        info = self.gateway.type_info(wi["connection_id"], wi["project"], wi["type"])
        return risk, wi, info

    def _already_commented(self, job: Job, wi: Any) -> bool:
        if job.attempts <= 1:
            return False
        client = self.gateway.client(wi["connection_id"])
        comments = client.list_comments(wi["project"], wi["ado_id"])
        return any(comment_has_marker(c.get("text") or "", self.marker(job)) for c in comments)

    def _patch(self, job: Job, wi: Any, info: WorkItemTypeInfo, ops: list[dict[str, Any]]) -> None:
        client = self.gateway.client(wi["connection_id"])
        item = client.update_work_item(wi["project"], wi["ado_id"], ops)
        fields = item.get("fields") or {}
        state = fields.get("System.State")
        self.store.record_work_item_state(
            wi["risk_id"],
            rev=int(item.get("rev") or 0),
            state=state,
            state_category=classify_state(state, info) if state else None,
            changed_at=fields.get("System.ChangedDate"),
        )

    def severity_changed(self, job: Job) -> None:
        """Update Severity/Priority and post one comment about the change."""
        linked = self._linked(job)
        if linked is None:
            return
        risk, wi, info = linked
        if self._already_commented(job, wi):
            return
        ops, comment = build_severity_change(
            risk,
            job.payload["from"],
            job.payload["to"],
            info,
            risk_link=self.risk_link(risk),
            marker=self.marker(job),
        )
        ops.append({"op": "add", "path": f"/fields/{HISTORY_FIELD}", "value": comment})
        self._patch(job, wi, info, ops)
        self.store.add_history(risk.id or 0, "work_item_severity_updated", dict(job.payload))

    def _current_state(self, wi: Any, info: WorkItemTypeInfo) -> tuple[str | None, str | None]:
        client = self.gateway.client(wi["connection_id"])
        item = client.get_work_item(wi["project"], wi["ado_id"])
        state = (item.get("fields") or {}).get("System.State")
        category = classify_state(state, info) if state else None
        if state and category is None:
            info = self.gateway.type_info(
                wi["connection_id"], wi["project"], wi["type"], refresh=True
            )
            category = classify_state(state, info)
        return state, category

    def scanner_resolved(self, job: Job) -> None:
        """Comment that the scanner no longer sees the risk; close the item if so configured."""
        linked = self._linked(job)
        if linked is None:
            return
        risk, wi, info = linked
        if self._already_commented(job, wi):
            return
        comment = build_status_comment(
            "scanner_resolved", risk, risk_link=self.risk_link(risk), marker=self.marker(job)
        )
        ops = [{"op": "add", "path": f"/fields/{HISTORY_FIELD}", "value": comment}]
        template = self.store.load_template(wi["template_id"]) if wi["template_id"] else None
        target = None
        if template is not None and template.close_on_resolve:
            _, category = self._current_state(wi, info)
            if category not in (*CLOSE_CATEGORIES, "Removed"):
                target = first_state_in(info, CLOSE_CATEGORIES)
                if target:
                    ops.append({"op": "add", "path": "/fields/System.State", "value": target})
        self._patch(job, wi, info, ops)
        self.store.add_history(
            risk.id or 0, "work_item_scanner_resolved", {"closed_to": target} if target else {}
        )

    def scanner_reopened(self, job: Job) -> None:
        """Reopen the item (first Proposed/InProgress state) with a comment: a regression."""
        linked = self._linked(job)
        if linked is None:
            return
        risk, wi, info = linked
        if self._already_commented(job, wi):
            return
        comment = build_status_comment(
            "scanner_reopened", risk, risk_link=self.risk_link(risk), marker=self.marker(job)
        )
        ops = [{"op": "add", "path": f"/fields/{HISTORY_FIELD}", "value": comment}]
        _, category = self._current_state(wi, info)
        target = None
        if category not in REOPEN_CATEGORIES:
            target = first_state_in(info, REOPEN_CATEGORIES)
            if target:
                ops.append({"op": "add", "path": "/fields/System.State", "value": target})
        self._patch(job, wi, info, ops)
        self.store.add_history(
            risk.id or 0, "work_item_reopened", {"reopened_to": target} if target else {}
        )

    def handlers(self) -> dict[str, Callable[[Job], None]]:
        """Job kind → handler."""
        from webhook.callbacks import CallbackSender

        sender = CallbackSender(self.store)
        return {
            CREATE_WORK_ITEM: self.create_work_item,
            SEVERITY_CHANGED: self.severity_changed,
            SCANNER_RESOLVED: self.scanner_resolved,
            SCANNER_REOPENED: self.scanner_reopened,
            CALLBACK: sender.send,
        }


def build_handlers(services: Services) -> dict[str, Callable[[Job], None]]:
    """Every job handler the worker knows."""
    return SyncHandlers(services).handlers()


def build_periodic_tasks(services: Services) -> list[PeriodicTask]:
    """Housekeeping that runs on timers, one worker at a time."""
    store = services.store

    def prune() -> dict[str, Any]:
        store.prune(deliveries_older_than=7 * 86400, jobs_done_older_than=30 * 86400)
        return {}

    return [PeriodicTask("prune", 3600.0, prune)]
