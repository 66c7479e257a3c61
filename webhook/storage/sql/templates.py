"""Work item templates and their backfill (both engines)."""

from __future__ import annotations

import json
from dataclasses import fields as dataclass_fields
from typing import Any

from webhook import clock
from webhook.domain.models import Template
from webhook.domain.sync_plan import (
    CREATE_WORK_ITEM,
    backfill_rules,
)
from webhook.storage.errors import AlreadyExists, Missing
from webhook.storage.sql.common import (
    SqlRepo,
    page_rows,
    template_from_row,
)
from webhook.storage.sql.db import Connection, Row
from webhook.storage.types import BackfillResult, TemplateRecord

# Risks queued per transaction by a template backfill (the writers' lock is held that long).
BACKFILL_BATCH = 2_000


class SqlTemplates(SqlRepo):
    """Templates, and applying one to the risks already stored."""

    @staticmethod
    def _template_record(row: Row) -> TemplateRecord:
        template = template_from_row(row)  # one reading of the columns, the domain's rules
        return TemplateRecord(
            **{f.name: getattr(template, f.name) for f in dataclass_fields(Template)},
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    @staticmethod
    def _template_values(data: dict[str, Any]) -> dict[str, Any]:
        out = dict(data)
        for name in ("tags", "fields"):
            if name in out:
                out[name] = json.dumps(out[name])
        if "sources" in out:
            out["sources"] = None if out["sources"] is None else json.dumps(out["sources"])
        for name in ("auto_create", "close_on_resolve"):
            if name in out:
                out[name] = int(bool(out[name]))
        return out

    def create_template(self, data: dict[str, Any]) -> TemplateRecord:
        """Save a validated template."""
        now = clock.iso(self.db.now())
        values = self._template_values(data)
        values.update(created_at=now, updated_at=now)
        cols = ", ".join(values)
        marks = ", ".join("?" * len(values))
        try:
            with self.db.write() as conn:
                row = conn.execute(
                    f"INSERT INTO templates({cols}) VALUES ({marks}) RETURNING *",
                    list(values.values()),
                ).fetchone()
        except self.db.integrity_errors as exc:
            if "UNIQUE" in str(exc).upper():  # SQLite: UNIQUE; PostgreSQL: unique
                raise AlreadyExists(
                    f"a template named {data.get('name')!r} already exists"
                ) from None
            raise Missing(f"connection {data.get('connection_id')} does not exist") from None
        return self._template_record(row)

    def update_template(self, template_id: int, data: dict[str, Any]) -> TemplateRecord:
        """Change a template's fields."""
        values = self._template_values(data)
        values["updated_at"] = clock.iso(self.db.now())
        sets = ", ".join(f"{k}=?" for k in values)
        try:
            with self.db.write() as conn:
                cur = conn.execute(
                    f"UPDATE templates SET {sets} WHERE id=?", [*values.values(), template_id]
                )
                if cur.rowcount == 0:
                    raise Missing(f"template {template_id} does not exist")
                row = conn.execute("SELECT * FROM templates WHERE id=?", (template_id,)).fetchone()
        except self.db.integrity_errors:
            raise AlreadyExists(f"a template named {data.get('name')!r} already exists") from None
        return self._template_record(row)

    def delete_template(self, template_id: int) -> None:
        """Delete a template (existing work items keep their link)."""
        with self.db.write() as conn:
            cur = conn.execute("DELETE FROM templates WHERE id=?", (template_id,))
            if cur.rowcount == 0:
                raise Missing(f"template {template_id} does not exist")

    def list_templates(self, page: int, per_page: int) -> tuple[list[TemplateRecord], int]:
        """Templates, oldest first."""
        with self.db.read() as conn:
            rows, total = page_rows(conn, "SELECT * FROM templates", [], page, per_page, "id")
        return [self._template_record(r) for r in rows], total

    def get_template(self, template_id: int) -> TemplateRecord:
        """One template with its times (Missing)."""
        row = self.db.conn.execute("SELECT * FROM templates WHERE id=?", (template_id,)).fetchone()
        if row is None:
            raise Missing(f"template {template_id} does not exist")
        return self._template_record(row)

    def load_template(self, template_id: int) -> Template | None:
        """The domain template, or None."""
        row = self.db.conn.execute("SELECT * FROM templates WHERE id=?", (template_id,)).fetchone()
        return template_from_row(row) if row else None

    @staticmethod
    def _backfill_filter(conn: Connection, template_id: int) -> tuple[str, list[Any]] | None:
        """SQL condition on `risks r` for SPEC 3.3 backfill (None: no risk can match).

        Open, no work item, no create pending, and template choice picks this template now.
        Raises Missing when the template does not exist.
        """
        templates = [template_from_row(r) for r in conn.execute("SELECT * FROM templates")]
        template = next((t for t in templates if t.id == template_id), None)
        if template is None:
            raise Missing(f"template {template_id} does not exist")
        rules = backfill_rules(templates, template)
        if not rules:
            return None
        choices: list[str] = []
        params: list[Any] = []
        for rule in rules:
            sources = rule.only_sources if rule.only_sources is not None else rule.except_sources
            clause = "r.severity = ?"
            if sources:
                marks = ",".join("?" * len(sources))
                negate = "NOT " if rule.only_sources is None else ""
                clause += f" AND r.source {negate}IN ({marks})"
            choices.append(f"({clause})")
            params.extend([rule.severity, *sorted(sources)])
        where = (
            "r.status = 'open'"
            " AND NOT EXISTS (SELECT 1 FROM work_items w WHERE w.risk_id = r.id)"
            " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.risk_id = r.id"
            f"   AND j.kind = '{CREATE_WORK_ITEM}' AND j.state IN ('pending','running'))"
            f" AND ({' OR '.join(choices)})"
        )
        return where, params

    def backfill_template(self, template_id: int, *, dry_run: bool) -> BackfillResult:
        """Apply a template to the risks already stored (SPEC 3.3 backfill).

        Returns `{"matched": N, "queued": M}`: N risks match now (open, no work item and none
        being created, template choice picks this template); a dry run queues nothing, else
        each gets the create_work_item job ingestion would record (same lane, payload with
        "backfill": true) and a history entry. Counted in one read, then queued by risk id in
        transactions of BACKFILL_BATCH, each re-checking the conditions (so hundreds of
        thousands of risks never hold the writers' lock long, and nothing is queued twice).
        M may fall short of N when risks changed meanwhile. Raises Missing.
        """
        with self.db.read() as conn:
            found = self._backfill_filter(conn, template_id)
            matched = 0
            if found is not None:
                where, params = found
                sql = f"SELECT count(*) FROM risks r WHERE {where}"
                matched = int(conn.execute(sql, params).fetchone()[0])
        queued, after = 0, 0
        while matched and not dry_run:
            now_ts = self.db.now()
            with self.db.write() as conn:
                found = self._backfill_filter(conn, template_id)
                if found is None:
                    break
                where, params = found
                ids = [
                    row[0]
                    for row in conn.execute(
                        f"SELECT r.id FROM risks r WHERE r.id > ? AND {where}"
                        " ORDER BY r.id LIMIT ?",
                        [after, *params, BACKFILL_BATCH],
                    )
                ]
                if not ids:
                    break
                payload = json.dumps({"template_id": template_id, "backfill": True})
                conn.executemany(
                    "INSERT INTO jobs(kind, risk_id, lane, payload, next_attempt_ts, created_ts,"
                    " updated_ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (CREATE_WORK_ITEM, i, f"risk:{i}:ado", payload, now_ts, now_ts, now_ts)
                        for i in ids
                    ],
                )
                detail = json.dumps({"template_id": template_id})
                conn.executemany(
                    "INSERT INTO risk_history(risk_id, at, event, detail) VALUES (?, ?, ?, ?)",
                    [(i, clock.iso(now_ts), "backfill_queued", detail) for i in ids],
                )
            queued += len(ids)
            after = ids[-1]
        return BackfillResult(matched=matched, queued=queued)
