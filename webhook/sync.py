"""Job handlers: the outside work recorded by the store, performed idempotently by the worker."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from webhook import metrics
from webhook.ado import AdoClient, AdoConflict, AdoNotFound, AdoRateLimited
from webhook.callbacks import CallbackSender
from webhook.domain.hook_events import identity_name
from webhook.domain.models import Risk, Template, WorkItemTypeInfo
from webhook.domain.rendering import (
    ContentUpdate,
    WrittenContent,
    build_content_update,
    build_create_patch,
    build_severity_change,
    build_status_comment,
    comment_has_marker,
    title_may_change,
    written_content,
)
from webhook.domain.states import (
    CLOSE_CATEGORIES,
    REOPEN_CATEGORIES,
    classify_state,
    first_state_in,
)
from webhook.domain.sync_plan import (
    item_content_hash,
)
from webhook.domain.templates import (
    adoption_problems,
    format_title,
    legacy_tracking_tag,
    tracking_tag,
)
from webhook.gateway import AdoGateway, OrganizationPaused
from webhook.jobs import BatchHandler, Handler, JobKind, PeriodicTask, PermanentFailure, RetryLater
from webhook.settings import Settings
from webhook.storage.interfaces import Storage
from webhook.storage.types import Job, WorkItemChange, WorkItemLink
from webhook.subscriptions import Subscriptions

log = logging.getLogger(__name__)
HISTORY_FIELD = "System.History"
ADOPTION_FIELDS = ["System.Tags", "System.TeamProject", "System.WorkItemType"]
# One workitemsbatch call. More candidates means a flood of forged legacy tags from before
# reserved tags were refused; the lowest ids are checked and, failing those, the risk gets a new
# item: a possible duplicate is better than adopting someone else's.
MAX_ADOPTION_CANDIDATES = 200
RECONCILE_OVERLAP_SECONDS = 300.0
RECONCILE_FIELDS = [
    "System.State",
    "System.Rev",
    "System.ChangedBy",
    "System.ChangedDate",
    "System.WorkItemType",
    "System.TeamProject",
    "System.Reason",
]
RECONCILE_FAILURES_SHOWN = 20
RECONCILE_RETRY_MAX = 1000


class ReconcileFailed(Exception):
    """A reconciliation pass could not read one or more projects (the others were done)."""


@dataclass
class _ReconcilePass:
    """Counts and failures of one reconciliation pass."""

    checked: int = 0
    changes: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    retry: list[tuple[int, str, int]] = field(default_factory=list)
    project_errors: list[str] = field(default_factory=list)

    def attempt(
        self,
        connection_id: int,
        project: str,
        item_id: int,
        read: Callable[[], WorkItemChange],
        apply: Callable[[WorkItemChange], bool],
    ) -> None:
        """Read and apply one item's change; a failure is recorded, not raised, unless it
        concerns every item alike (Azure DevOps asked us to wait: the project is skipped)."""
        try:
            if apply(read()):
                self.changes += 1
        except (OrganizationPaused, AdoRateLimited):
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("reconciliation could not apply work item %s: %s", item_id, reason)
            self.failures.append({"id": item_id, "project": project, "reason": reason[:500]})
            self.retry.append((connection_id, project, item_id))


class SyncHandlers:
    """Performs each kind of job against Azure DevOps (or the scanner's callback URL)."""

    def __init__(self, store: Storage, gateway: AdoGateway, callbacks: CallbackSender) -> None:
        self.store = store
        self.gateway = gateway
        self.callbacks = callbacks

    def risk_link(self, risk: Risk) -> str | None:
        """Our own page for a risk without a usable scanner `url`: None for now.

        Work item bodies and comments are read by people in Azure DevOps, who must never get a
        link they cannot open: the admin API (`/admin/risks/<id>`) needs the admin token, so it
        is never linked. The risk page of the web UI (SPEC 3.4) goes here once it exists; until
        then the body links only to the scanner's own http(s) `url` (rendering.link_for).
        """
        return None

    @staticmethod
    def marker(job: Job) -> str:
        """Visible footer that lets a retry find the comment an earlier attempt posted."""
        return f"ado-webhook event {job.id}"

    # ---- create -------------------------------------------------------------------------

    def create_work_item(self, job: Job) -> None:
        """Create the risk's work item exactly once (adopting one an earlier attempt made)."""
        assert job.risk_id is not None
        risk = self.store.risks.load_risk(job.risk_id)
        if risk is None or self.store.work_items.work_item_for(job.risk_id) is not None:
            return
        if risk.status != "open":
            self.store.risks.add_history(
                job.risk_id, "work_item_skipped", {"reason": f"risk is {risk.status}"}
            )
            return
        template = self.store.templates.load_template(int(job.payload["template_id"]))
        if template is None:
            raise PermanentFailure(f"template {job.payload['template_id']} no longer exists")
        client = self.gateway.client(template.connection_id)
        info = self.gateway.type_info(
            template.connection_id, template.project, template.work_item_type
        )
        installation = self.store.operations.installation_id()
        # The tag an earlier attempt sent is recorded in the payload before it is sent; a job
        # without one either never reached the create call or predates MAC'd tags (legacy).
        sent: str | None = job.payload.get("tag")
        item: dict[str, Any] | None = None
        adopted = False
        written: WrittenContent | None = None
        if job.outcome_unknown:
            # An earlier claim (a retry, a pause, a worker whose lease ran out) may have created
            # the item before its outcome got lost.
            tag = sent or legacy_tracking_tag(installation, job.risk_id)
            item = self._adoptable(job, client, template, tag, installation)
            adopted = item is not None
            if item is not None:
                title = (item.get("fields") or {}).get("System.Title")
                written = WrittenContent(title if isinstance(title, str) else None, None, None)
        if item is None:
            tag = sent or tracking_tag(
                installation, job.risk_id, self.store.operations.tracking_key()
            )
            if sent is None and not self.store.jobs.record_job_payload(
                job, {**job.payload, "tag": tag}
            ):
                raise RetryLater("lost the lease on this job")
            patch = build_create_patch(
                risk, template, info, tracking_tag=tag, risk_link=self.risk_link(risk)
            )
            written = written_content(patch, item_hash=item_content_hash(risk))
            item = client.create_work_item(template.project, template.work_item_type, patch)
        state = (item.get("fields") or {}).get("System.State")
        linked = self.store.work_items.link_work_item(
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
            job=job,
            written=written,
        )
        if linked:
            metrics.WORK_ITEMS_CREATED.labels("true" if adopted else "false").inc()

    def _adoptable(
        self, job: Job, client: AdoClient, template: Template, tag: str, installation: str
    ) -> dict[str, Any] | None:
        """The lowest-id item an earlier attempt made for this risk, or None.

        Finds candidates with WIQL, then checks provenance on each (`adoption_problems`: exact
        tag, the template's project and type, no other tracking tag of ours) and that no other
        risk is linked to it. Refused candidates are logged and recorded in the risk's history.
        """
        assert job.risk_id is not None
        ids = sorted(client.find_by_tag(template.project, tag))[:MAX_ADOPTION_CANDIDATES]
        if not ids:
            return None
        found = client.get_work_items_batch(template.project, ids, fields=ADOPTION_FIELDS)
        refused: list[dict[str, Any]] = []
        chosen: int | None = None
        for candidate in sorted(found, key=lambda c: int(c["id"])):
            problems = adoption_problems(
                candidate.get("fields") or {},
                tag=tag,
                installation_id=installation,
                project=template.project,
                work_item_type=template.work_item_type,
            )
            owner = self.store.work_items.work_item_owner(
                template.connection_id, int(candidate["id"])
            )
            if owner is not None and owner != job.risk_id:
                problems.append(f"is linked to risk {owner}")
            if problems:
                refused.append({"id": int(candidate["id"]), "reasons": problems})
            elif chosen is None:
                chosen = int(candidate["id"])
        if refused:
            log.warning(
                "risk %s: refused to adopt work items found by tag %s: %s",
                job.risk_id,
                tag,
                refused[:20],
            )
            self.store.risks.add_history(
                job.risk_id, "work_item_adoption_refused", {"tag": tag, "items": refused[:20]}
            )
        if chosen is None:
            return None
        return client.get_work_item(template.project, chosen)

    # ---- updates to an existing item ----------------------------------------------------

    def _linked(self, job: Job) -> tuple[Risk, Any, WorkItemTypeInfo] | None:
        assert job.risk_id is not None
        risk = self.store.risks.load_risk(job.risk_id)
        wi = self.store.work_items.work_item_for(job.risk_id)
        if risk is None or wi is None:
            return None
        if wi.deleted:
            # Not written to (nor recreated) while deleted; recorded, and done on restore.
            if self.store.work_items.note_skipped_while_deleted(job):
                return None
            wi = self.store.work_items.work_item_for(job.risk_id)  # restored meanwhile
            if wi is None:
                return None
        info = self.gateway.type_info(wi.connection_id, wi.project, wi.type)
        return risk, wi, info

    def _already_commented(self, job: Job, wi: Any) -> bool:
        if job.attempts <= 1:
            return False
        client = self.gateway.client(wi.connection_id)
        comments = client.list_comments(wi.project, wi.ado_id)
        return any(comment_has_marker(c.get("text") or "", self.marker(job)) for c in comments)

    def _content(
        self, risk: Risk, wi: Any, info: WorkItemTypeInfo, item: dict[str, Any] | None = None
    ) -> ContentUpdate:
        """The ops bringing the item's body (and title, unless people changed it) up to date.

        The title the template gives now is compared with the one last written; only when they
        differ is the item read (unless `item`, read already, is given) to see whether people
        changed it meanwhile. SPEC 4, "Content stays current".
        """
        template = self.store.templates.load_template(wi.template_id) if wi.template_id else None
        title = format_title(template.title_format, risk) if template else None
        if item is None and title_may_change(title, wi.title):
            client = self.gateway.client(wi.connection_id)
            item = client.get_work_item(wi.project, wi.ado_id, expand=None)
        fields = (item or {}).get("fields") or {}
        return build_content_update(
            risk,
            info,
            title=title,
            last_title=wi.title,
            last_body_hash=wi.body_hash,
            current_title=fields.get("System.Title"),
            current_rev=int(item["rev"]) if item and item.get("rev") is not None else None,
            risk_link=self.risk_link(risk),
        )

    def _patch(
        self,
        job: Job,
        wi: Any,
        info: WorkItemTypeInfo,
        ops: list[dict[str, Any]],
        content: ContentUpdate | None = None,
    ) -> None:
        """Apply ops plus the content ops in one PATCH (one revision) and record the result."""
        client = self.gateway.client(wi.connection_id)
        if content is not None:
            ops = [*content.ops, *ops]
        try:
            item = client.update_work_item(wi.project, wi.ado_id, ops)
        except AdoConflict as exc:
            if not any(op.get("op") == "test" for op in ops):
                raise
            # The item changed after we read its title (AZURE_DEVOPS.md 3.3): read it again,
            # after the usual backoff (nothing was written: the whole PATCH was refused).
            raise RetryLater(
                f"work item {wi.ado_id} changed while being updated: {exc.message}"
            ) from None
        fields = item.get("fields") or {}
        state = fields.get("System.State")
        self.store.work_items.record_work_item_state(
            wi.risk_id,
            rev=int(item.get("rev") or 0),
            state=state,
            state_category=classify_state(state, info) if state else None,
            changed_at=fields.get("System.ChangedDate"),
            title=content.title if content else None,
            body_hash=content.body_hash if content else None,
        )

    def content_changed(self, job: Job) -> None:
        """Rewrite the body (and the title while people left it alone) after the scanner
        changed what the risk says: one update, no comment, nothing when the item already
        shows the current content (changes gathered for WEBHOOK_CONTENT_SYNC_SECONDS)."""
        linked = self._linked(job)
        if linked is None:
            return
        risk, wi, info = linked
        content = self._content(risk, wi, info)
        if not content.ops:
            return
        self._patch(job, wi, info, [], content)
        self.store.risks.add_history(
            risk.id or 0,
            "work_item_content_updated",
            {"body": content.body_hash is not None, "title": content.title is not None},
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
        # The body shows the severity too: it follows in the same update (one revision).
        self._patch(job, wi, info, ops, self._content(risk, wi, info))
        self.store.risks.add_history(risk.id or 0, "work_item_severity_updated", dict(job.payload))

    def _comment_and_move(
        self,
        job: Job,
        kind: str,
        *,
        move_to: tuple[str, ...] | None,
        leave_in: tuple[str, ...],
        event: str,
    ) -> None:
        """Post the status comment and, unless the item already is in `leave_in`, move it to
        the type's first state in `move_to` — one PATCH, so one revision."""
        linked = self._linked(job)
        if linked is None:
            return
        risk, wi, info = linked
        if self._already_commented(job, wi):
            return
        comment = build_status_comment(
            kind, risk, risk_link=self.risk_link(risk), marker=self.marker(job)
        )
        ops = [{"op": "add", "path": f"/fields/{HISTORY_FIELD}", "value": comment}]
        target = None
        item = None
        if move_to:
            client = self.gateway.client(wi.connection_id)
            item = client.get_work_item(wi.project, wi.ado_id)
            state = (item.get("fields") or {}).get("System.State")
            if (self._category(wi, state) if state else None) not in leave_in:
                target = first_state_in(info, move_to)
                if target:
                    ops.append({"op": "add", "path": "/fields/System.State", "value": target})
        # Content changed since the last write rides along (a waiting rewrite was dropped).
        self._patch(job, wi, info, ops, self._content(risk, wi, info, item))
        self.store.risks.add_history(risk.id or 0, event, {"moved_to": target} if target else {})

    def scanner_resolved(self, job: Job) -> None:
        """Comment that the scanner no longer sees the risk; close the item if so configured."""
        assert job.risk_id is not None
        wi = self.store.work_items.work_item_for(job.risk_id)
        template = (
            self.store.templates.load_template(wi.template_id) if wi and wi.template_id else None
        )
        close = template is not None and template.close_on_resolve
        self._comment_and_move(
            job,
            "scanner_resolved",
            move_to=CLOSE_CATEGORIES if close else None,
            leave_in=(*CLOSE_CATEGORIES, "Removed"),
            event="work_item_scanner_resolved",
        )

    def scanner_reopened(self, job: Job) -> None:
        """Reopen the item (first Proposed/InProgress state) with a comment: a regression."""
        self._comment_and_move(
            job,
            "scanner_reopened",
            move_to=REOPEN_CATEGORIES,
            leave_in=REOPEN_CATEGORIES,
            event="work_item_reopened",
        )

    def _classify(self, connection_id: int, project: str, type_name: str, state: str) -> str | None:
        """The category of `state` for that type in that project (refreshing the cached type
        once when it does not list the state), or None when Azure DevOps does not know it."""
        info = self.gateway.type_info(connection_id, project, type_name)
        category = classify_state(state, info)
        if category is None:
            info = self.gateway.type_info(connection_id, project, type_name, refresh=True)
            category = classify_state(state, info)
        return category

    def _category(self, wi: Any, state: str) -> str:
        category = self._classify(wi.connection_id, wi.project, wi.type, state)
        if category is None:
            # Never guess from a state name: wait until Azure DevOps tells us its category.
            raise RetryLater(f"state {state!r} of {wi.type} has no known category yet")
        return category

    def _change_from_item(
        self, wi: WorkItemLink, item: dict[str, Any], origin: str
    ) -> WorkItemChange:
        """The change a work item read from Azure DevOps (GET or batch read) amounts to.

        The state is classified by the item's type and project as they are now (a person may
        have changed them; SPEC 4); RetryLater when even a fresh read of that type does not
        list the state.
        """
        fields = item.get("fields") or {}
        state = fields.get("System.State")
        type_name = fields.get("System.WorkItemType") or wi.type
        project = fields.get("System.TeamProject") or wi.project
        category = None
        if state:
            category = self._classify(wi.connection_id, project, type_name, state)
            if category is None:
                raise RetryLater(
                    f"state {state!r} of {type_name} in {project} has no known category"
                )
        rev = item.get("rev") or fields.get("System.Rev")
        return WorkItemChange(
            rev=int(rev) if rev is not None else None,
            state=state,
            category=category,
            by=identity_name(fields.get("System.ChangedBy")),
            at=fields.get("System.ChangedDate"),
            reason=fields.get("System.Reason") or None,
            deleted=False,
            origin=origin,
            allow_same_rev=True,
            work_item_type=type_name,
            project=project,
        )

    def current_truth(self, wi: WorkItemLink, origin: str = "hook") -> WorkItemChange:
        """Read the linked item as Azure DevOps has it now: live, or in the recycle bin.

        Used where an event's revision cannot order it (deletion and restore keep the rev,
        AZURE_DEVOPS.md 1.4/1.5) or its state cannot be classified by the type it names.
        A live item gives its state, rev, type and project (deleted=False); otherwise the
        recycle bin gives who deleted it and when (deleted=True); an item in neither was
        destroyed and stays deleted. Azure DevOps errors propagate (the job retries).
        """
        client = self.gateway.client(wi.connection_id)
        try:
            item = client.get_work_item(wi.project, wi.ado_id, expand=None)
        except AdoNotFound:
            item = None
        if item is not None:
            return self._change_from_item(wi, item, origin)
        try:
            binned: dict[str, Any] = client.get_deleted_work_item(wi.project, wi.ado_id)
        except AdoNotFound:
            binned = {}  # destroyed for good (or no longer readable): it is not coming back
        found = binned.get("resource")
        resource: dict[str, Any] = found if isinstance(found, dict) else {}
        rev = resource.get("rev")
        return WorkItemChange(
            rev=int(rev) if isinstance(rev, int) else None,
            state=None,
            category=None,
            by=None,
            at=None,
            deleted=True,
            origin=origin,
            allow_same_rev=True,
            deleted_by=identity_name(binned.get("deletedBy")),
            deleted_at=binned.get("deletedDate")
            if isinstance(binned.get("deletedDate"), str)
            else None,
        )

    def _hook_change(self, job: Job) -> WorkItemChange | None:
        """What a recorded Azure DevOps event changes (None: nothing to apply).

        An update newer than the last applied revision is applied as the event tells, its
        state classified by the type (and project) the event reports. Deletion and restore
        carry no revision that orders them, and an update whose state its type does not list
        may come from a type change the event does not show: both read the item's current
        truth from Azure DevOps instead (SPEC 4, "One odd item never stops the rest").
        """
        assert job.risk_id is not None
        p = job.payload
        wi = self.store.work_items.work_item_for(job.risk_id)
        if wi is None:
            return None
        rev = p.get("rev")
        if p.get("event_type") != "workitem.updated" or not isinstance(rev, int):
            return self.current_truth(wi)
        if rev <= wi.rev:
            return None  # stale or our own write's echo (checked again when applied)
        state = p.get("state")
        type_name = p.get("work_item_type") or wi.type
        project = p.get("project") or wi.project
        category = None
        if state:
            category = self._classify(wi.connection_id, project, type_name, state)
            if category is None:
                return self.current_truth(wi)
        return WorkItemChange(
            rev=rev,
            state=state,
            category=category,
            by=p.get("by"),
            at=p.get("at"),
            reason=p.get("reason"),
            # An item cannot be edited in the recycle bin: a newer update means it is back.
            deleted=False if wi.deleted else None,
            work_item_type=p.get("work_item_type"),
            project=p.get("project"),
        )

    def apply_hook_event(self, job: Job) -> None:
        """Apply a recorded Azure DevOps event to the risk (classifying the state by category)."""
        change = self._hook_change(job)
        self.store.work_items.apply_hook_changes([(job, change)])

    def apply_hook_events(self, jobs: list[Job]) -> dict[int, Exception]:
        """apply_hook_event for many jobs: classified one by one, applied in one transaction."""
        ready: list[tuple[Job, WorkItemChange | None]] = []
        failures: dict[int, Exception] = {}
        for job in jobs:
            try:
                ready.append((job, self._hook_change(job)))
            except Exception as exc:  # e.g. a state whose category is not known yet
                failures[job.id] = exc
        if ready:
            self.store.work_items.apply_hook_changes(ready)
        return failures

    # ---- reconciliation -----------------------------------------------------------------

    def reconcile(self) -> dict[str, Any]:
        """Periodic safety net: apply the changes the hooks missed (SPEC 4).

        Per project: WIQL for linked items changed since the last pass (with an overlap), plus
        items that failed last pass and items we hold as deleted; one batch read of those; the
        recycle bin for deletions (an id the batch read did not return, or one listed in the
        bin). Each item is applied on its own: one that fails is recorded and retried next
        pass, and the pass goes on. A project that cannot be read is skipped too, but then the
        pass fails at the end (its watermark stays) so that it shows in /metrics and /readyz.

        Returns `{"watermark", "checked", "changes", "item_failures", "failed_items": [{"id",
        "project", "reason"}, ...] (at most 20), "retry": [[connection_id, project, id], ...]}`.
        """
        last = self.store.operations.periodic_status().get("reconcile")
        previous = last.last_result if last is not None else {}
        started = time.time()
        since = float(previous.get("watermark") or 0) - RECONCILE_OVERLAP_SECONDS
        since_dt = datetime.fromtimestamp(max(since, 0), tz=UTC)
        retry: dict[tuple[int, str], set[int]] = {}
        for entry in previous.get("retry") or []:
            if isinstance(entry, list) and len(entry) == 3:
                retry.setdefault((int(entry[0]), str(entry[1])), set()).add(int(entry[2]))
        run = _ReconcilePass()
        paused: set[int] = set()  # organization paused: no call now, the next pass covers it
        for connection_id, project in self.store.work_items.linked_projects(include_deleted=True):
            if connection_id in paused:
                continue
            try:
                if self.gateway.paused_until(connection_id) is not None:
                    paused.add(connection_id)
                    continue
                self._reconcile_project(
                    run,
                    connection_id,
                    project,
                    since_dt,
                    retry.get((connection_id, project), set()),
                )
            except (OrganizationPaused, AdoRateLimited) as exc:
                # Paused mid-pass (SPEC 4 "Pacing"): no more calls to it; not a failure.
                log.info("reconciliation of %s paused: %s", project, exc)
                paused.add(connection_id)
            except Exception as exc:
                log.warning("reconciliation of %s skipped: %s", project, exc)
                run.project_errors.append(f"{project}: {type(exc).__name__}: {exc}")
        metrics.RECONCILE_CHANGES.inc(run.changes)
        if run.project_errors:
            raise ReconcileFailed(
                f"{len(run.project_errors)} project(s) could not be reconciled: "
                + "; ".join(run.project_errors)[:1000]
            )
        return {
            # A paused organization was not read: the next pass starts where this one did.
            "watermark": float(previous.get("watermark") or 0) if paused else started,
            "checked": run.checked,
            "changes": run.changes,
            "item_failures": len(run.failures),
            "failed_items": run.failures[:RECONCILE_FAILURES_SHOWN],
            "retry": [[c, p, i] for c, p, i in run.retry][:RECONCILE_RETRY_MAX],
            "paused_connections": sorted(paused),
        }

    def _reconcile_project(
        self,
        run: _ReconcilePass,
        connection_id: int,
        project: str,
        since: datetime,
        retry_ids: set[int],
    ) -> None:
        client = self.gateway.client(connection_id)
        linked = self.store.work_items.linked_work_items(
            connection_id, project, include_deleted=True
        )
        if not linked:
            return
        held_deleted = [i for i, row in linked.items() if row.deleted]
        changed = [i for i in client.changed_since(project, since) if i in linked]
        ids = list(dict.fromkeys([*changed, *(i for i in retry_ids if i in linked), *held_deleted]))
        run.checked += len(ids)
        returned: set[int] = set()
        for item in client.get_work_items_batch(project, ids, fields=RECONCILE_FIELDS):
            item_id = int(item["id"])
            returned.add(item_id)
            row = linked.get(item_id)
            if row is None:
                continue
            rev = int(item.get("rev") or (item.get("fields") or {}).get("System.Rev") or 0)
            if not row.deleted and rev <= row.rev:
                continue
            run.attempt(
                connection_id,
                project,
                item_id,
                partial(self._change_from_item, row, item, "reconcile"),
                partial(self.store.work_items.apply_work_item_change, row.risk_id),
            )
        # Deleted items are in neither WIQL nor the batch read: an id asked for and not
        # returned, or one listed in the recycle bin, is looked up there (who deleted it).
        binned = set(client.list_deleted_work_item_ids(project))
        missing = [
            i
            for i, row in linked.items()
            if not row.deleted and (i in binned or (i in ids and i not in returned))
        ]
        for item_id in missing:
            row = linked[item_id]
            run.attempt(
                connection_id,
                project,
                item_id,
                partial(self.current_truth, row, origin="reconcile"),
                partial(self.store.work_items.apply_work_item_change, row.risk_id),
            )

    def handlers(self) -> dict[str, Handler]:
        """Job kind → handler: every kind the worker performs one at a time."""
        return {
            JobKind.CREATE_WORK_ITEM: self.create_work_item,
            JobKind.SEVERITY_CHANGED: self.severity_changed,
            JobKind.CONTENT_CHANGED: self.content_changed,
            JobKind.SCANNER_RESOLVED: self.scanner_resolved,
            JobKind.SCANNER_REOPENED: self.scanner_reopened,
            JobKind.CALLBACK: self.callbacks.send,
            JobKind.APPLY_HOOK_EVENT: self.apply_hook_event,
        }

    def batch_handlers(self) -> dict[str, BatchHandler]:
        """Job kinds the worker performs many at a time (database-only work, one transaction)."""
        return {JobKind.APPLY_HOOK_EVENT: self.apply_hook_events}


def periodic_tasks(
    settings: Settings, store: Storage, sync: SyncHandlers, subscriptions: Subscriptions
) -> list[PeriodicTask]:
    """Housekeeping that runs on timers, one worker at a time: prune, hook check, reconcile."""

    def prune() -> dict[str, Any]:
        store.operations.prune(deliveries_older_than=7 * 86400, jobs_done_older_than=30 * 86400)
        return {}

    return [
        PeriodicTask("prune", 3600.0, prune),
        PeriodicTask("hook_check", float(settings.hook_check_seconds), subscriptions.check_all),
        PeriodicTask("reconcile", float(settings.reconcile_seconds), sync.reconcile),
    ]
