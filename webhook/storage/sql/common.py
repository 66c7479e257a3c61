"""What the SQL repositories share: the base class (database, secret box, the helpers
that record history and jobs inside a transaction) and row → value conversions."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from webhook import clock
from webhook.crypto import SecretBox
from webhook.domain.models import Asset, Risk, Template
from webhook.domain.sync_plan import (
    JobSpec,
)
from webhook.storage.constants import JOB_LEASE_SECONDS as JOB_LEASE_SECONDS
from webhook.storage.sql.db import Connection, Row, SqlDatabase
from webhook.storage.types import (
    Job,
    JobRecord,
    WorkItemLink,
)


def page_rows(
    conn: Connection, sql: str, params: list[Any], page: int, per_page: int, order: str
) -> tuple[list[Row], int]:
    total = conn.execute(f"SELECT count(*) FROM ({sql}) AS counted", params).fetchone()[0]
    rows = conn.execute(
        f"{sql} ORDER BY {order} LIMIT ? OFFSET ?", [*params, per_page, (page - 1) * per_page]
    ).fetchall()
    return rows, total


def assets_of(assets_json: str | None) -> tuple[Asset, ...]:
    """`[[group, identifier], ...]` as stored → the assets, in order."""
    return tuple(Asset(group=g, identifier=i) for g, i in json.loads(assets_json or "[]"))


def loads(value: str | None, default: Any) -> Any:
    return default if value is None else json.loads(value)


def template_from_row(row: Row | dict[str, Any]) -> Template:
    """Build the domain Template from its row."""
    sources = loads(row["sources"], None)
    return Template(
        id=row["id"],
        name=row["name"],
        connection_id=row["connection_id"],
        project=row["project"],
        work_item_type=row["work_item_type"],
        auto_create=bool(row["auto_create"]),
        severity_threshold=row["severity_threshold"],
        sources=tuple(sources) if sources is not None else None,
        title_format=row["title_format"],
        tags=tuple(loads(row["tags"], [])),
        area_path=row["area_path"],
        iteration_path=row["iteration_path"],
        fields=loads(row["fields"], {}),
        close_on_resolve=bool(row["close_on_resolve"]),
    )


def risk_from_row(row: Row) -> Risk:
    """Build the domain Risk from its row."""
    return Risk(
        id=row["id"],
        source=row["source"],
        key=row["key"],
        name=row["name"],
        severity=row["severity"],
        status=row["status"],
        url=row["url"],
        definition=row["definition"],
        evidence=row["evidence"],
        proof=row["proof"],
        remediation=row["remediation"],
        assets=[Asset(group=g, identifier=i) for g, i in json.loads(row["assets"])],
        project=row["project"],
        tags=json.loads(row["tags"]),
    )


def link_from_row(row: Row) -> WorkItemLink:
    """Build a WorkItemLink from its work_items row."""
    return WorkItemLink(**{**dict(row), "deleted": bool(row["deleted"])})


RISK_INSERT = (
    "INSERT INTO risks(name, severity, status, scanner_status, url, definition, evidence, proof,"
    " remediation, assets, project, tags, content_hash, item_hash, resolution_state,"
    " resolution_by, resolution_at, id, source, key, created_at, updated_at)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
HISTORY_INSERT = "INSERT INTO risk_history(risk_id, at, event, detail) VALUES (?, ?, ?, ?)"
JOBS_INSERT = (
    "INSERT INTO jobs(kind, risk_id, lane, payload, next_attempt_ts, created_ts, updated_ts)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


@dataclass
class Pending:
    """History and job rows gathered while a batch is applied, written by two inserts at the
    end: on PostgreSQL every statement is a round trip, so a 1,000-risk delivery costs a few
    instead of thousands. Rows keep the order they were gathered in (lane order holds)."""

    risks: list[tuple[Any, ...]] = field(default_factory=list)  # RISK_INSERT's values
    history: list[tuple[Any, ...]] = field(default_factory=list)
    jobs: list[tuple[Any, ...]] = field(default_factory=list)

    def write(self, conn: Connection, db: SqlDatabase) -> None:
        """Insert the gathered rows through `conn` (inside the batch's transaction): new
        risks first, since their history and jobs refer to them."""
        if self.risks:
            conn.executemany(RISK_INSERT, self.risks)
        if self.history:
            conn.executemany(HISTORY_INSERT, self.history)
        if self.jobs:
            conn.executemany(JOBS_INSERT, self.jobs)
            db.notify_jobs(conn)


class SqlRepo:
    """Base of the SQL repositories: one database, one secret box, shared helpers."""

    def __init__(
        self, db: SqlDatabase, box: SecretBox, *, content_sync_seconds: float = 60.0
    ) -> None:
        self.db = db
        self.box = box
        # WEBHOOK_CONTENT_SYNC_SECONDS: content changes of one item gathered into one update.
        self.content_sync_seconds = content_sync_seconds
        self._secret_cache: dict[str, str] = {}
        self._source_rows: dict[str, tuple[float, tuple[Any, ...]]] = {}
        self._tracking_key: bytes | None = None

    def _store_time(self, host_ts: float) -> float:
        """A time a caller computed from this host's clock, on the store's clock."""
        return host_ts + self.db.clock_offset()

    def _host_time(self, store_ts: float) -> float:
        """A time on the store's clock, on this host's clock (webhook.clock)."""
        return store_ts - self.db.clock_offset()

    def _add_history(
        self,
        conn: Connection,
        risk_id: int,
        events: Iterable[tuple[str, dict[str, Any]]],
        now: str,
        *,
        into: Pending | None = None,
    ) -> None:
        """Record `events` of a risk at `now` (ISO); with `into`, only gather the rows there
        for one insert later (Pending.write)."""
        rows = [(risk_id, now, event, json.dumps(detail)) for event, detail in events]
        if into is not None:
            into.history.extend(rows)
        elif rows:
            conn.executemany(HISTORY_INSERT, rows)

    def _add_jobs(
        self,
        conn: Connection,
        risk_id: int | None,
        jobs: Iterable[JobSpec],
        now_ts: float,
        lane_prefix: str | None = None,
        *,
        into: Pending | None = None,
    ) -> None:
        """Record `jobs` for a risk (lane `risk:<id>:<lane>` unless `lane_prefix`), due
        `delay` after `now_ts`, and wake idle workers at commit; with `into`, only gather the
        rows there for one insert later (Pending.write)."""
        prefix = lane_prefix or f"risk:{risk_id}"
        rows = [
            (
                j.kind,
                risk_id,
                f"{prefix}:{j.lane}",
                json.dumps(j.payload),
                now_ts + j.delay,
                now_ts,
                now_ts,
            )
            for j in jobs
        ]
        if into is not None:
            into.jobs.extend(rows)
        elif rows:
            conn.executemany(JOBS_INSERT, rows)
            self.db.notify_jobs(conn)

    @staticmethod
    def _holds(conn: Connection, job: Job) -> bool:
        """Whether `job`'s claim is still the job's current one (same fencing token)."""
        row = conn.execute(
            "SELECT 1 FROM jobs WHERE id=? AND claim_token=? AND state='running'",
            (job.id, job.token),
        ).fetchone()
        return row is not None

    def _finish_job(
        self, conn: Connection, job: Job, state: str, error: str | None, next_ts: float
    ) -> bool:
        cur = conn.execute(
            "UPDATE jobs SET state=?, last_error=?, next_attempt_ts=?, lease_owner=NULL,"
            " lease_expires_ts=NULL, updated_ts=? WHERE id=? AND claim_token=? AND state='running'",
            (state, error, next_ts, self.db.now(), job.id, job.token),
        )
        return cur.rowcount == 1

    @staticmethod
    def _job_record(row: Row) -> JobRecord:
        return JobRecord(
            id=row["id"],
            kind=row["kind"],
            state=row["state"],
            attempts=row["attempts"],
            last_error=row["last_error"],
            risk_id=row["risk_id"],
            next_attempt_at=clock.iso(row["next_attempt_ts"])
            if row["state"] == "pending"
            else None,
        )
