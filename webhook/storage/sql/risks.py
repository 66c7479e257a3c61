"""Risks: ingestion of scanner deliveries (group commit) and reading risks back (both engines)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from webhook import clock
from webhook.domain.models import Risk, Template
from webhook.domain.sync_plan import (
    CONTENT_CHANGED,
    PreviousRisk,
    content_hash,
    item_content_hash,
    plan_risk_change,
)
from webhook.storage.constants import ASSETS_IN_LIST
from webhook.storage.errors import Missing
from webhook.storage.sql.common import (
    Pending,
    SqlRepo,
    assets_of,
    page_rows,
    risk_from_row,
    template_from_row,
)
from webhook.storage.sql.db import Connection, Row
from webhook.storage.types import (
    HistoryEntry,
    IngestOutcome,
    RiskDetail,
    RiskResolution,
    RiskSummary,
    SourceAuth,
    WorkItemRef,
)


class SqlRisks(SqlRepo):
    """Risks and their history; a delivery and the work it implies in one transaction."""

    def record_risks(self, source: SourceAuth, webhook_id: str, risks: list[Risk]) -> IngestOutcome:
        """Store a scanner delivery and the work it implies in one transaction (or replay it).

        The transaction may be shared with concurrent deliveries (group commit); this one's
        part is all or nothing either way.
        """
        return self.db.write_grouped(
            lambda conn: self._record_risks(conn, source, webhook_id, risks)
        )

    def _record_risks(
        self, conn: Connection, source: SourceAuth, webhook_id: str, risks: list[Risk]
    ) -> IngestOutcome:
        now_ts = self.db.now()
        now = clock.iso(now_ts)
        seen = conn.execute(
            "SELECT status, response FROM deliveries WHERE source_id=? AND webhook_id=?",
            (source.id, webhook_id),
        ).fetchone()
        if seen is not None:
            return IngestOutcome(seen["status"], seen["response"], True, ())
        templates = [template_from_row(r) for r in conn.execute("SELECT * FROM templates")]
        existing = self._existing_risks(conn, source.name, [r.key for r in risks])
        results: list[dict[str, Any]] = []
        actions: list[str] = []
        pending = Pending()
        # New risks get their ids now and are inserted together at the end (Pending).
        new_ids = iter(
            self.db.reserve_ids(conn, "risks", sum(r.key not in existing for r in risks))
        )
        for risk in risks:
            prev_row = existing.get(risk.key)
            risk_id, action = self._apply_risk(
                conn, risk, prev_row, templates, source, now, now_ts, pending, new_ids
            )
            results.append({"key": risk.key, "id": risk_id, "action": action})
            actions.append(action)
        pending.write(conn, self.db)
        # Compact with sorted keys: the same text Flask's jsonify would send.
        response = json.dumps({"risks": results}, separators=(",", ":"), sort_keys=True)
        conn.execute(
            "INSERT INTO deliveries(source_id, webhook_id, status, response, received_ts)"
            " VALUES (?, ?, 202, ?, ?)",
            (source.id, webhook_id, response, now_ts),
        )
        return IngestOutcome(202, response, False, tuple(actions))

    def _existing_risks(self, conn: Connection, source: str, keys: list[str]) -> dict[str, Row]:
        found: dict[str, Row] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(
                "SELECT r.id, r.key, r.severity, r.status, r.scanner_status, r.content_hash,"
                " r.item_hash,"
                " (SELECT 1 FROM work_items w WHERE w.risk_id = r.id) AS has_item,"
                " (SELECT 1 FROM jobs j WHERE j.risk_id = r.id AND j.kind='create_work_item'"
                "   AND j.state IN ('pending','running')) AS create_pending,"
                " (SELECT 1 FROM jobs j WHERE j.risk_id = r.id AND j.kind='content_changed'"
                "   AND j.state = 'pending') AS content_pending"
                f" FROM risks r WHERE r.source=? AND r.key IN ({marks})",
                [source, *chunk],
            ):
                found[row["key"]] = row
        return found

    def _apply_risk(
        self,
        conn: Connection,
        risk: Risk,
        prev_row: Row | None,
        templates: list[Template],
        source: SourceAuth,
        now: str,
        now_ts: float,
        pending: Pending,
        new_ids: Iterator[int],
    ) -> tuple[int, str]:
        """Apply one reported risk: a known one's row now; a new one's row (with the next of
        `new_ids`), and the history and jobs of either, into `pending`."""
        digest = content_hash(risk)
        # An unchanged report (the common case) skips hashing the content a second time.
        item_hash = (
            prev_row["item_hash"]
            if prev_row is not None and prev_row["content_hash"] == digest
            else item_content_hash(risk)
        )
        previous = (
            PreviousRisk(
                id=prev_row["id"],
                severity=prev_row["severity"],
                status=prev_row["status"],
                scanner_status=prev_row["scanner_status"],
                content_hash=prev_row["content_hash"],
                item_hash=prev_row["item_hash"],
            )
            if prev_row is not None
            else None
        )
        change = plan_risk_change(
            previous,
            risk,
            incoming_hash=digest,
            templates=templates,
            has_work_item=bool(prev_row and prev_row["has_item"]),
            create_pending=bool(prev_row and prev_row["create_pending"]),
            has_callback=bool(source.callback_url),
            incoming_item_hash=item_hash,
            content_pending=bool(prev_row and prev_row["content_pending"]),
            content_delay=self.content_sync_seconds,
        )
        if change.action == "unchanged":
            assert previous is not None
            return previous.id, "unchanged"
        values = (
            risk.name,
            risk.severity,
            change.status,
            change.scanner_status,
            risk.url,
            risk.definition,
            risk.evidence,
            risk.proof,
            risk.remediation,
            json.dumps([[a.group, a.identifier] for a in risk.assets], ensure_ascii=False),
            risk.project,
            json.dumps(risk.tags, ensure_ascii=False),
            digest,
            item_hash,
        )
        if previous is None:
            risk_id = next(new_ids)
            by_scanner = change.resolution_by_scanner
            resolution = ("resolved", f"scanner:{source.name}", now) if by_scanner else (None,) * 3
            pending.risks.append((*values, *resolution, risk_id, risk.source, risk.key, now, now))
        else:
            risk_id = previous.id
            conn.execute(
                "UPDATE risks SET name=?, severity=?, status=?, scanner_status=?, url=?,"
                " definition=?, evidence=?, proof=?, remediation=?, assets=?, project=?, tags=?,"
                " content_hash=?, item_hash=?, updated_at=? WHERE id=?",
                (*values, now, risk_id),
            )
        if change.resolution_by_scanner and previous is not None:
            conn.execute(
                "UPDATE risks SET resolution_state='resolved', resolution_by=?, resolution_at=?,"
                " resolution_reason=NULL WHERE id=?",
                (f"scanner:{source.name}", now, risk_id),
            )
        elif change.status == "open" and previous is not None and previous.status != "open":
            conn.execute(
                "UPDATE risks SET resolution_state=NULL, resolution_by=NULL, resolution_at=NULL,"
                " resolution_reason=NULL WHERE id=?",
                (risk_id,),
            )
        self._add_history(conn, risk_id, change.history, now, into=pending)
        if change.supersedes_content and previous is not None:
            # The update planned now carries the content: the waiting rewrite would repeat it.
            conn.execute(
                "UPDATE jobs SET state='done', updated_ts=? WHERE risk_id=? AND kind=?"
                " AND state='pending'",
                (now_ts, risk_id, CONTENT_CHANGED),
            )
        self._add_jobs(conn, risk_id, change.jobs, now_ts, into=pending)
        return risk_id, change.action

    @property
    def _risk_select(self) -> str:
        """The list's SELECT: a bounded head of the assets and their count, computed by the
        database (the dialect's JSON functions), so the large columns (assets up to 10,000, four
        texts up to 256 KiB each) never reach Python for a list."""
        dialect = self.db.dialect
        return (
            "SELECT r.id, r.source, r.key, r.name, r.severity, r.status, r.url, r.project,"
            " r.tags, r.resolution_state, r.resolution_reason, r.resolution_by,"
            " r.resolution_at, r.created_at, r.updated_at,"
            f" {dialect.json_array_length('r.assets')} AS assets_total,"
            f" {dialect.json_array_head('r.assets', ASSETS_IN_LIST)} AS assets_head,"
            " w.ado_id AS wi_id, w.url AS wi_url, w.project AS wi_project,"
            " w.type AS wi_type, w.state AS wi_state, w.deleted AS wi_deleted"
            " FROM risks r LEFT JOIN work_items w ON w.risk_id = r.id"
        )

    @staticmethod
    def _risk_fields(row: Row) -> dict[str, Any]:
        """A risk as lists show it (SPEC 3.3), as RiskSummary's fields: `assets` holds the
        first ASSETS_IN_LIST assets and `assets_total` counts them all."""
        resolution = None
        if row["resolution_state"] is not None:
            resolution = RiskResolution(
                state=row["resolution_state"],
                reason=row["resolution_reason"],
                by=row["resolution_by"],
                at=row["resolution_at"],
            )
        work_item = None
        if row["wi_id"] is not None:
            work_item = WorkItemRef(
                id=row["wi_id"],
                url=row["wi_url"],
                project=row["wi_project"],
                type=row["wi_type"],
                state=row["wi_state"],
                deleted=bool(row["wi_deleted"]),
            )
        return {
            "id": row["id"],
            "source": row["source"],
            "key": row["key"],
            "name": row["name"],
            "severity": row["severity"],
            "status": row["status"],
            "resolution": resolution,
            "url": row["url"],
            "project": row["project"],
            "assets": assets_of(row["assets_head"]),
            "assets_total": row["assets_total"],
            "tags": tuple(json.loads(row["tags"])),
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "work_item": work_item,
        }

    def list_risks(
        self, filters: dict[str, str], page: int, per_page: int
    ) -> tuple[list[RiskSummary], int]:
        """Risks matching the filters, newest first, with their work item (bounded assets)."""
        clauses, params = [], []
        for name in ("status", "severity", "source", "key"):
            if filters.get(name):
                clauses.append(f"r.{name} = ?")
                params.append(filters[name])
        sql = self._risk_select + (" WHERE " + " AND ".join(clauses) if clauses else "")
        with self.db.read() as conn:
            rows, total = page_rows(conn, sql, params, page, per_page, "id DESC")
        return [RiskSummary(**self._risk_fields(r)) for r in rows], total

    def get_risk(self, risk_id: int) -> RiskDetail:
        """One risk with all its assets, its full text and sync history (Missing)."""
        with self.db.read() as conn:
            row = conn.execute(self._risk_select + " WHERE r.id=?", (risk_id,)).fetchone()
            if row is None:
                raise Missing(f"risk {risk_id} does not exist")
            full = conn.execute(
                "SELECT assets, definition, evidence, proof, remediation FROM risks WHERE id=?",
                (risk_id,),
            ).fetchone()
            history = conn.execute(
                "SELECT at, event, detail FROM risk_history WHERE risk_id=? ORDER BY id",
                (risk_id,),
            ).fetchall()
        return RiskDetail(
            **{**self._risk_fields(row), "assets": assets_of(full["assets"])},
            definition=full["definition"],
            evidence=full["evidence"],
            proof=full["proof"],
            remediation=full["remediation"],
            history=tuple(
                HistoryEntry(at=h["at"], event=h["event"], detail=json.loads(h["detail"]))
                for h in history
            ),
        )

    def load_risk(self, risk_id: int) -> Risk | None:
        """The domain risk, or None when it was deleted."""
        row = self.db.conn.execute("SELECT * FROM risks WHERE id=?", (risk_id,)).fetchone()
        return risk_from_row(row) if row else None

    def count_risks(self) -> int:
        """How many risks are stored."""
        return int(self.db.conn.execute("SELECT count(*) FROM risks").fetchone()[0])

    def get_risk_summary(self, risk_id: int) -> RiskSummary | None:
        """A risk as the list endpoint shows it, or None."""
        row = self.db.conn.execute(self._risk_select + " WHERE r.id=?", (risk_id,)).fetchone()
        return RiskSummary(**self._risk_fields(row)) if row else None

    def add_history(self, risk_id: int, event: str, detail: dict[str, Any]) -> None:
        """Append one entry to a risk's sync history."""
        with self.db.write() as conn:
            self._add_history(conn, risk_id, [(event, detail)], clock.iso(self.db.now()))
