"""Links between risks and Azure DevOps work items, and changes seen there (both engines)."""

from __future__ import annotations

import json
from typing import Any

from webhook import clock
from webhook.domain.sync_plan import (
    JobSpec,
    WrittenContent,
)
from webhook.domain.work_item_changes import (
    SKIPPED_EVENT,
    LinkedItem,
    catch_up_after_link,
    is_stale,
    plan_work_item_change,
    replay_skipped,
    restores,
)
from webhook.storage.errors import InUse, Missing
from webhook.storage.sql.common import (
    SqlRepo,
    link_from_row,
)
from webhook.storage.sql.db import Connection
from webhook.storage.types import (
    Job,
    JobRecord,
    WorkItemChange,
    WorkItemLink,
)


class SqlWorkItems(SqlRepo):
    """Work item links: exactly one per risk, revisions, deletions and restores."""

    def work_item_for(self, risk_id: int) -> WorkItemLink | None:
        """The work item linked to a risk, if any."""
        row = self.db.conn.execute(
            "SELECT * FROM work_items WHERE risk_id=?", (risk_id,)
        ).fetchone()
        return None if row is None else link_from_row(row)

    def work_item_owner(self, connection_id: int, ado_id: int) -> int | None:
        """The risk an Azure DevOps work item is linked to, if any."""
        row = self.db.conn.execute(
            "SELECT risk_id FROM work_items WHERE connection_id=? AND ado_id=?",
            (connection_id, ado_id),
        ).fetchone()
        return None if row is None else int(row[0])

    def request_work_item(self, risk_id: int, template_id: int) -> JobRecord:
        """Manual export: record a create job unless the risk already has (or awaits) an item."""
        now = self.db.now()
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM risks WHERE id=?", (risk_id,)).fetchone() is None:
                raise Missing(f"risk {risk_id} does not exist")
            if (
                conn.execute("SELECT 1 FROM templates WHERE id=?", (template_id,)).fetchone()
                is None
            ):
                raise Missing(f"template {template_id} does not exist")
            if conn.execute("SELECT 1 FROM work_items WHERE risk_id=?", (risk_id,)).fetchone():
                raise InUse(f"risk {risk_id} already has a work item")
            if conn.execute(
                "SELECT 1 FROM jobs WHERE risk_id=? AND kind='create_work_item'"
                " AND state IN ('pending','running','failed')",
                (risk_id,),
            ).fetchone():
                # A failed create holds the risk's lane: retrying it is the way on.
                raise InUse(
                    f"a work item for risk {risk_id} is already being created"
                    " (or its creation failed: retry that job)"
                )
            self._add_jobs(
                conn,
                risk_id,
                [JobSpec("create_work_item", "ado", {"template_id": template_id, "manual": True})],
                now,
            )
            self._add_history(
                conn, risk_id, [("export_requested", {"template_id": template_id})], clock.iso(now)
            )
            row = conn.execute(
                "SELECT * FROM jobs WHERE risk_id=? ORDER BY id DESC LIMIT 1", (risk_id,)
            ).fetchone()
        return self._job_record(row)

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
        """Record the work item created (or adopted) for a risk, plus catch-up work.

        `written` is what the create wrote (title, body hash, and the item_content_hash of the
        risk as rendered): later content updates compare with it. Returns False when the risk
        already had one, or when `job` (the claim that made the item) was taken over meanwhile:
        nothing changed.
        """
        written = written or WrittenContent(None, None, None)
        now_ts = self.db.now()
        now = clock.iso(now_ts)
        fields = item.get("fields", {})
        html = (item.get("_links", {}).get("html") or {}).get("href")
        with self.db.write() as conn:
            if job is not None and not self._holds(conn, job):
                return False
            if conn.execute("SELECT 1 FROM work_items WHERE risk_id=?", (risk_id,)).fetchone():
                return False
            risk = conn.execute(
                "SELECT severity, status, item_hash FROM risks WHERE id=?", (risk_id,)
            ).fetchone()
            if risk is None:
                return False
            conn.execute(
                "INSERT INTO work_items(risk_id, connection_id, template_id, ado_id, project, type,"
                " url, state, state_category, rev, tag, changed_at, title, body_hash,"
                " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    risk_id,
                    connection_id,
                    template_id,
                    item["id"],
                    project,
                    work_item_type,
                    html,
                    fields.get("System.State"),
                    state_category,
                    item.get("rev", 1),
                    tag,
                    fields.get("System.ChangedDate"),
                    written.title,
                    written.body_hash,
                    now,
                    now,
                ),
            )
            self._add_history(
                conn,
                risk_id,
                [
                    (
                        "work_item_adopted" if adopted else "work_item_created",
                        {"id": item["id"], "url": html, "project": project, "type": work_item_type},
                    )
                ],
                now,
            )
            # The scanner may have changed the risk while Azure DevOps was creating the item.
            catch_up = catch_up_after_link(
                severity=risk["severity"],
                status=risk["status"],
                item_hash=risk["item_hash"],
                rendered_severity=rendered_severity,
                written=written,
            )
            self._add_jobs(conn, risk_id, catch_up, now_ts)
        return True

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
        """Remember the newest revision we wrote or read (so its echo is ignored), and the
        title / body hash that write set (None: that part was not written)."""
        with self.db.write() as conn:
            conn.execute(
                f"UPDATE work_items SET rev={self.db.dialect.greatest('rev', '?')},"
                " state=CASE WHEN ? >= rev THEN ? ELSE state END,"
                " state_category=CASE WHEN ? >= rev THEN ? ELSE state_category END,"
                " changed_at=coalesce(?, changed_at), title=coalesce(?, title),"
                " body_hash=coalesce(?, body_hash), updated_at=? WHERE risk_id=?",
                (
                    rev,
                    rev,
                    state,
                    rev,
                    state_category,
                    changed_at,
                    title,
                    body_hash,
                    clock.iso(self.db.now()),
                    risk_id,
                ),
            )

    def linked_work_items(
        self, connection_id: int, project: str, *, include_deleted: bool = False
    ) -> dict[int, WorkItemLink]:
        """Work items linked to risks in one project, by Azure DevOps id."""
        rows = self.db.conn.execute(
            "SELECT * FROM work_items WHERE connection_id=? AND project=?"
            + ("" if include_deleted else " AND deleted=0"),
            (connection_id, project),
        ).fetchall()
        return {r["ado_id"]: link_from_row(r) for r in rows}

    def linked_projects(self, *, include_deleted: bool = False) -> list[tuple[int, str]]:
        """(connection id, project) pairs that have linked work items."""
        where = "" if include_deleted else " WHERE deleted=0"
        return [
            (r[0], r[1])
            for r in self.db.conn.execute(
                "SELECT DISTINCT connection_id, project FROM work_items"
                + where
                + " ORDER BY connection_id, project"
            )
        ]

    def apply_work_item_change(self, risk_id: int, change: WorkItemChange) -> bool:
        """Apply a state change seen in Azure DevOps; False when stale (rev already applied)."""
        with self.db.write() as conn:
            return self._apply_change(conn, risk_id, change, self.db.now())

    def apply_hook_changes(self, changes: list[tuple[Job, WorkItemChange | None]]) -> None:
        """Apply several claimed hook-event jobs and mark them done, all in one transaction.

        A job whose lease was lost meanwhile is left to its new owner; None as the change
        just finishes the job (nothing to apply).
        """
        now_ts = self.db.now()
        with self.db.write() as conn:
            for job, change in changes:
                finished = self._finish_job(conn, job, "done", None, now_ts)
                if finished and change is not None and job.risk_id is not None:
                    self._apply_change(conn, job.risk_id, change, now_ts)

    def _apply_change(
        self, conn: Connection, risk_id: int, change: WorkItemChange, now_ts: float
    ) -> bool:
        """Apply `change` inside `conn`'s transaction (see webhook.domain.work_item_changes)."""
        now = clock.iso(now_ts)
        wi = conn.execute("SELECT * FROM work_items WHERE risk_id=?", (risk_id,)).fetchone()
        risk = conn.execute(
            "SELECT r.status, s.callback_url FROM risks r"
            " LEFT JOIN sources s ON s.name = r.source WHERE r.id=?",
            (risk_id,),
        ).fetchone()
        if wi is None or risk is None:
            return False
        item = LinkedItem(
            ado_id=wi["ado_id"],
            rev=wi["rev"],
            deleted=bool(wi["deleted"]),
            type=wi["type"],
            project=wi["project"],
        )
        if is_stale(item, change):
            return False
        plan = plan_work_item_change(
            item,
            change,
            risk_status=risk["status"],
            has_callback=bool(risk["callback_url"]),
            replay=self._skipped_while_deleted(conn, risk_id) if restores(item, change) else (),
        )
        deleted = change.deleted
        conn.execute(
            f"UPDATE work_items SET rev={self.db.dialect.greatest('rev', 'coalesce(?, rev)')},"
            " state=coalesce(?, state), state_category=coalesce(?, state_category),"
            " deleted=coalesce(?, deleted), changed_at=coalesce(?, changed_at),"
            " type=coalesce(?, type), project=coalesce(?, project), updated_at=?"
            " WHERE risk_id=?",
            (
                change.rev,
                change.state,
                change.category,
                None if deleted is None else int(deleted),
                change.at,
                change.work_item_type,
                change.project,
                now,
                risk_id,
            ),
        )
        if plan.new_status == "open":
            conn.execute(
                "UPDATE risks SET status='open', resolution_state=NULL, resolution_by=NULL,"
                " resolution_at=NULL, resolution_reason=NULL, updated_at=? WHERE id=?",
                (now, risk_id),
            )
        elif plan.new_status is not None:
            conn.execute(
                "UPDATE risks SET status=?, resolution_state=?, resolution_by=?,"
                " resolution_at=?, resolution_reason=?, updated_at=? WHERE id=?",
                (
                    plan.new_status,
                    change.state,
                    change.by,
                    change.at or now,
                    change.reason,
                    now,
                    risk_id,
                ),
            )
        self._add_history(conn, risk_id, plan.history, now)
        self._add_jobs(conn, risk_id, plan.jobs, now_ts)
        return True

    SKIPPED_EVENT = SKIPPED_EVENT

    def note_skipped_while_deleted(self, job: Job) -> bool:
        """Record in the risk's history that a job found its work item deleted.

        A deleted item is not recreated (SPEC 4, "Status back from Azure DevOps") and cannot be
        written to, so the job does nothing now; the entry keeps the job's kind, lane and
        payload so that restoring the item performs it then (see `_skipped_while_deleted`).
        Returns False (nothing recorded) when the item is no longer deleted: checked in the
        same transaction, so a restore applied meanwhile either sees this entry or came first.
        """
        if job.risk_id is None:
            return False
        lane = job.lane.removeprefix(f"risk:{job.risk_id}:")
        detail = {
            "reason": "work item deleted",
            "kind": job.kind,
            "lane": lane,
            "payload": job.payload,
        }
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT deleted FROM work_items WHERE risk_id=?", (job.risk_id,)
            ).fetchone()
            if row is None or not row["deleted"]:
                return False
            self._add_history(
                conn, job.risk_id, [(SKIPPED_EVENT, detail)], clock.iso(self.db.now())
            )
        return True

    def _skipped_while_deleted(self, conn: Connection, risk_id: int) -> list[JobSpec]:
        """The jobs skipped since the item's last deletion, to perform now it is back."""
        last_delete = conn.execute(
            "SELECT max(id) FROM risk_history WHERE risk_id=? AND event='work_item_deleted'",
            (risk_id,),
        ).fetchone()[0]
        rows = conn.execute(
            "SELECT detail FROM risk_history WHERE risk_id=? AND event=? AND id>? ORDER BY id",
            (risk_id, SKIPPED_EVENT, last_delete or 0),
        ).fetchall()
        severity = conn.execute("SELECT severity FROM risks WHERE id=?", (risk_id,)).fetchone()
        return replay_skipped(
            (json.loads(row["detail"]) for row in rows),
            severity["severity"] if severity else None,
        )
