"""Storage verbs over SQLite (sqlite-utils): one transaction per use case.

Everything that implies outside work records that work (a job) in the same transaction as the
change itself. A PostgreSQL implementation would offer the same verbs.
"""

from __future__ import annotations

import json
import secrets as pysecrets
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from webhook import clock
from webhook.crypto import SecretBox, new_source_secret
from webhook.domain.models import Asset, Risk, Template
from webhook.domain.sync_plan import (
    CONTENT_CHANGED,
    CREATE_WORK_ITEM,
    JobSpec,
    PreviousRisk,
    WrittenContent,
    backfill_rules,
    content_hash,
    item_content_hash,
    plan_risk_change,
)
from webhook.storage.errors import AlreadyExists, InUse, Missing, StorageError
from webhook.storage.sqlite.database import Database
from webhook.storage.types import (
    HookAuth,
    IngestOutcome,
    Job,
    Lease,
    SourceAuth,
    WorkItemChange,
    WorkItemLink,
)

ROTATION_GRACE_SECONDS = 24 * 3600
# How long a process may answer from its copy of a source row (see Store.find_source).
SOURCE_CACHE_SECONDS = 5.0
# A running job's holder renews its lease every few seconds (Worker.heartbeat_every). Another
# worker takes the job over once it has seen the lease unchanged for this long by its own
# monotonic clock, so a step of the wall clock never makes a live lease look expired.
JOB_LEASE_SECONDS = 40.0
# A wall clock that went back by more than this (against the monotonic clock) moves pending due
# times back by the same step (Store.note_clock_offset).
CLOCK_STEP_TOLERANCE = 2.0
ASSETS_IN_LIST = 20
"""Assets a risk shows in lists (`assets_total` counts them all; GET /admin/risks/<id> has all)."""
# Risks queued per transaction by a template backfill (the writers' lock is held that long).
BACKFILL_BATCH = 2_000
# /readyz writes this much (and deletes it again) to see the database has room for a delivery.
READY_PROBE_BYTES = 16 * 1024


StoreError = StorageError


def _page(
    conn: sqlite3.Connection, sql: str, params: list[Any], page: int, per_page: int, order: str
) -> tuple[list[sqlite3.Row], int]:
    total = conn.execute(f"SELECT count(*) FROM ({sql})", params).fetchone()[0]
    rows = conn.execute(
        f"{sql} ORDER BY {order} LIMIT ? OFFSET ?", [*params, per_page, (page - 1) * per_page]
    ).fetchall()
    return rows, total


def _asset_dicts(assets_json: str | None) -> list[dict[str, str]]:
    """`[[group, identifier], ...]` as stored → `[{"group", "identifier"}, ...]`."""
    return [{"group": g, "identifier": i} for g, i in json.loads(assets_json or "[]")]


def _loads(value: str | None, default: Any) -> Any:
    return default if value is None else json.loads(value)


def _periodic_due(row: sqlite3.Row | None, now: float, interval: float) -> bool:
    """A periodic task is due when nobody holds its lease and its interval has passed."""
    if row is None:
        return True
    if row["lease_owner"] and (row["lease_expires_ts"] or 0) > now:
        return False
    return not (row["last_started_ts"] and now - row["last_started_ts"] < interval)


def _register_auth(auth: dict[str, Any]) -> None:
    """Let the log redaction filter know a credential's secret parts."""
    from webhook.logs import register_secret

    for name in ("token", "client_secret"):
        if auth.get(name):
            register_secret(str(auth[name]))


def template_from_row(row: sqlite3.Row | dict[str, Any]) -> Template:
    """Build the domain Template from its row."""
    sources = _loads(row["sources"], None)
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
        tags=tuple(_loads(row["tags"], [])),
        area_path=row["area_path"],
        iteration_path=row["iteration_path"],
        fields=_loads(row["fields"], {}),
        close_on_resolve=bool(row["close_on_resolve"]),
    )


def risk_from_row(row: sqlite3.Row) -> Risk:
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


def link_from_row(row: sqlite3.Row) -> WorkItemLink:
    """Build a WorkItemLink from its work_items row."""
    return WorkItemLink(**{**dict(row), "deleted": bool(row["deleted"])})


__all__ = [
    "AlreadyExists",
    "HookAuth",
    "InUse",
    "IngestOutcome",
    "Job",
    "Lease",
    "Missing",
    "SourceAuth",
    "StoreError",
    "WorkItemChange",
    "WorkItemLink",
]


class Store:
    """Intent-named storage verbs; the only module that speaks SQL."""

    def __init__(self, db: Database, box: SecretBox, *, content_sync_seconds: float = 60.0) -> None:
        self.db = db
        self.box = box
        # WEBHOOK_CONTENT_SYNC_SECONDS: content changes of one item gathered into one update.
        self.content_sync_seconds = content_sync_seconds
        self._secret_cache: dict[str, str] = {}
        self._source_rows: dict[str, tuple[float, tuple[Any, ...]]] = {}
        self._tracking_key: bytes | None = None

    # ---- meta ---------------------------------------------------------------------------

    def installation_id(self) -> str:
        """A random id for this installation, used in work item tracking tags."""
        row = self.db.conn.execute("SELECT value FROM meta WHERE key='installation_id'").fetchone()
        if row:
            return str(row[0])
        with self.db.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('installation_id', ?)",
                (pysecrets.token_hex(4),),
            )
            return str(
                conn.execute("SELECT value FROM meta WHERE key='installation_id'").fetchone()[0]
            )

    def tracking_key(self) -> bytes:
        """The installation's random key for tracking tag MACs (32 bytes), made once.

        Kept in meta as `tracking_key_enc`, encrypted with the SecretBox (never in clear). It is
        generated at random, not derived from WEBHOOK_SECRET_KEY: those keys rotate, a tracking
        tag must not. Race-safe across processes: INSERT OR IGNORE, then read what won.
        Raises ValueError when no configured WEBHOOK_SECRET_KEY decrypts it.
        """
        if self._tracking_key is None:
            sql = "SELECT value FROM meta WHERE key='tracking_key_enc'"
            row = self.db.conn.execute(sql).fetchone()
            if row is None:
                with self.db.write() as conn:
                    conn.execute(
                        "INSERT OR IGNORE INTO meta(key, value) VALUES ('tracking_key_enc', ?)",
                        (self.box.encrypt(pysecrets.token_hex(32)),),
                    )
                    row = conn.execute(sql).fetchone()
            self._tracking_key = bytes.fromhex(self.box.decrypt(str(row[0])))
        return self._tracking_key

    def check_writable(self) -> None:
        """Raise unless a real write commits now, through the same bounded path as any write.

        Upserts a probe row (a WAL append and an fsync) and checks there is room for
        READY_PROBE_BYTES more (Database.check_room). Raises DatabaseUnavailable (busy, disk
        full, file removed or replaced, I/O error) or another sqlite3 error.
        """
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('ready_probe', ?)"
                " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (clock.iso(),),
            )
            self.db.check_room(conn, READY_PROBE_BYTES)

    # ---- sources ------------------------------------------------------------------------

    def _source_dict(self, row: sqlite3.Row) -> dict[str, Any]:
        prev = row["previous_expires_ts"]
        return {
            "id": row["id"],
            "name": row["name"],
            "callback_url": row["callback_url"],
            "previous_secret_valid_until": clock.iso(prev) if prev and prev > clock.now() else None,
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
        }

    def create_source(self, name: str, callback_url: str | None) -> tuple[dict[str, Any], str]:
        """Create a source with a fresh secret; return it and the secret (shown once)."""
        secret = new_source_secret()
        now = clock.iso()
        try:
            with self.db.write() as conn:
                cur = conn.execute(
                    "INSERT INTO sources(name, callback_url, secret_enc, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (name, callback_url, self.box.encrypt(secret), now, now),
                )
                row = conn.execute("SELECT * FROM sources WHERE id=?", (cur.lastrowid,)).fetchone()
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"a source named {name!r} already exists") from None
        return self._source_dict(row), secret

    def list_sources(self, page: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
        """Sources, oldest first."""
        with self.db.read() as conn:
            rows, total = _page(conn, "SELECT * FROM sources", [], page, per_page, "id")
        return [self._source_dict(r) for r in rows], total

    def get_source(self, source_id: int) -> dict[str, Any]:
        """One source (without its secret)."""
        row = self.db.conn.execute("SELECT * FROM sources WHERE id=?", (source_id,)).fetchone()
        if row is None:
            raise Missing(f"source {source_id} does not exist")
        return self._source_dict(row)

    def rotate_source_secret(self, source_id: int) -> tuple[dict[str, Any], str]:
        """Issue a new secret; the current one stays valid for 24 hours."""
        secret = new_source_secret()
        now = clock.now()
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM sources WHERE id=?", (source_id,)).fetchone()
            if row is None:
                raise Missing(f"source {source_id} does not exist")
            conn.execute(
                "UPDATE sources SET previous_secret_enc=secret_enc, previous_expires_ts=?,"
                " secret_enc=?, updated_at=? WHERE id=?",
                (now + ROTATION_GRACE_SECONDS, self.box.encrypt(secret), clock.iso(now), source_id),
            )
            row = conn.execute("SELECT * FROM sources WHERE id=?", (source_id,)).fetchone()
        return self._source_dict(row), secret

    def find_source(self, name: str, *, fresh: bool = False) -> SourceAuth | None:
        """The source with its currently valid secrets, or None.

        Every scanner request looks its source up, so rows are kept in process memory for
        SOURCE_CACHE_SECONDS. Sources are only ever created or rotated: a caller whose
        signature check fails asks again with `fresh=True`, so a new secret works at once;
        the old one's 24 h grace is checked against the clock on every call.
        """
        cached = self._source_rows.get(name)
        if cached is not None and not fresh and time.monotonic() - cached[0] < SOURCE_CACHE_SECONDS:
            row = cached[1]
        else:
            found = self.db.conn.execute(
                "SELECT id, name, callback_url, secret_enc, previous_secret_enc,"
                " previous_expires_ts FROM sources WHERE name=?",
                (name,),
            ).fetchone()
            if found is None:
                self._source_rows.pop(name, None)
                return None
            row = tuple(found)
            if len(self._source_rows) > 1024:
                self._source_rows.clear()
            self._source_rows[name] = (time.monotonic(), row)
        source_id, source_name, callback_url, secret_enc, previous_enc, previous_expires = row
        valid = [self._decrypt_cached(secret_enc)]
        if previous_enc and (previous_expires or 0) > clock.now():
            valid.append(self._decrypt_cached(previous_enc))
        return SourceAuth(source_id, source_name, callback_url, tuple(valid))

    def _decrypt_cached(self, token: str) -> str:
        # Every scanner request needs its source's secret; Fernet decryption is the costly part,
        # so plaintexts are kept in process memory keyed by their (unique) ciphertext.
        cache = self._secret_cache
        secret = cache.get(token)
        if secret is None:
            if len(cache) > 1024:
                cache.clear()
            secret = cache[token] = self.box.decrypt(token)
        return secret

    # ---- ingestion ----------------------------------------------------------------------

    def record_risks(self, source: SourceAuth, webhook_id: str, risks: list[Risk]) -> IngestOutcome:
        """Store a scanner delivery and the work it implies in one transaction (or replay it).

        The transaction may be shared with concurrent deliveries (group commit); this one's
        part is all or nothing either way.
        """
        return self.db.write_grouped(
            lambda conn: self._record_risks(conn, source, webhook_id, risks)
        )

    def _record_risks(
        self, conn: sqlite3.Connection, source: SourceAuth, webhook_id: str, risks: list[Risk]
    ) -> IngestOutcome:
        now_ts = clock.now()
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
        for risk in risks:
            prev_row = existing.get(risk.key)
            risk_id, action = self._apply_risk(conn, risk, prev_row, templates, source, now, now_ts)
            results.append({"key": risk.key, "id": risk_id, "action": action})
            actions.append(action)
        # Compact with sorted keys: the same text Flask's jsonify would send.
        response = json.dumps({"risks": results}, separators=(",", ":"), sort_keys=True)
        conn.execute(
            "INSERT INTO deliveries(source_id, webhook_id, status, response, received_ts)"
            " VALUES (?, ?, 202, ?, ?)",
            (source.id, webhook_id, response, now_ts),
        )
        return IngestOutcome(202, response, False, tuple(actions))

    def _existing_risks(
        self, conn: sqlite3.Connection, source: str, keys: list[str]
    ) -> dict[str, sqlite3.Row]:
        found: dict[str, sqlite3.Row] = {}
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
        conn: sqlite3.Connection,
        risk: Risk,
        prev_row: sqlite3.Row | None,
        templates: list[Template],
        source: SourceAuth,
        now: str,
        now_ts: float,
    ) -> tuple[int, str]:
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
            cur = conn.execute(
                "INSERT INTO risks(name, severity, status, scanner_status, url, definition,"
                " evidence, proof, remediation, assets, project, tags, content_hash, item_hash,"
                " source, key, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (*values, risk.source, risk.key, now, now),
            )
            risk_id = int(cur.lastrowid or 0)
        else:
            risk_id = previous.id
            conn.execute(
                "UPDATE risks SET name=?, severity=?, status=?, scanner_status=?, url=?,"
                " definition=?, evidence=?, proof=?, remediation=?, assets=?, project=?, tags=?,"
                " content_hash=?, item_hash=?, updated_at=? WHERE id=?",
                (*values, now, risk_id),
            )
        if change.resolution_by_scanner:
            conn.execute(
                "UPDATE risks SET resolution_state='resolved', resolution_by=?, resolution_at=?"
                " WHERE id=?",
                (f"scanner:{source.name}", now, risk_id),
            )
        elif change.status == "open" and previous is not None and previous.status != "open":
            conn.execute(
                "UPDATE risks SET resolution_state=NULL, resolution_by=NULL, resolution_at=NULL"
                " WHERE id=?",
                (risk_id,),
            )
        self._add_history(conn, risk_id, change.history, now)
        if change.supersedes_content:
            # The update planned now carries the content: the waiting rewrite would repeat it.
            conn.execute(
                "UPDATE jobs SET state='done', updated_ts=? WHERE risk_id=? AND kind=?"
                " AND state='pending'",
                (now_ts, risk_id, CONTENT_CHANGED),
            )
        self._add_jobs(conn, risk_id, change.jobs, now_ts)
        return risk_id, change.action

    def _add_history(
        self,
        conn: sqlite3.Connection,
        risk_id: int,
        events: Iterable[tuple[str, dict[str, Any]]],
        now: str,
    ) -> None:
        rows = [(risk_id, now, event, json.dumps(detail)) for event, detail in events]
        if rows:
            conn.executemany(
                "INSERT INTO risk_history(risk_id, at, event, detail) VALUES (?, ?, ?, ?)", rows
            )

    def _add_jobs(
        self,
        conn: sqlite3.Connection,
        risk_id: int | None,
        jobs: Iterable[JobSpec],
        now_ts: float,
        lane_prefix: str | None = None,
    ) -> None:
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
        if rows:
            conn.executemany(
                "INSERT INTO jobs(kind, risk_id, lane, payload, next_attempt_ts, created_ts,"
                " updated_ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    # ---- risks --------------------------------------------------------------------------

    # The list shows a bounded head of the assets and their count, computed by SQLite: the large
    # columns (assets up to 10,000, four texts up to 256 KiB each) never reach Python for a list.
    _RISK_SELECT = (
        "SELECT r.id, r.source, r.key, r.name, r.severity, r.status, r.url, r.project, r.tags,"
        " r.resolution_state, r.resolution_by, r.resolution_at, r.created_at, r.updated_at,"
        " json_array_length(r.assets) AS assets_total,"
        " (SELECT json_group_array(json(a.value)) FROM"
        f"   (SELECT value FROM json_each(r.assets) LIMIT {ASSETS_IN_LIST}) a) AS assets_head,"
        " w.ado_id AS wi_id, w.url AS wi_url, w.project AS wi_project,"
        " w.type AS wi_type, w.state AS wi_state, w.deleted AS wi_deleted"
        " FROM risks r LEFT JOIN work_items w ON w.risk_id = r.id"
    )

    @staticmethod
    def _risk_dict(row: sqlite3.Row) -> dict[str, Any]:
        """A risk as lists show it (SPEC 3.3): `assets` holds the first ASSETS_IN_LIST assets
        and `assets_total` counts them all."""
        resolution = None
        if row["resolution_state"] is not None:
            resolution = {
                "state": row["resolution_state"],
                "by": row["resolution_by"],
                "at": row["resolution_at"],
            }
        work_item = None
        if row["wi_id"] is not None:
            work_item = {
                "id": row["wi_id"],
                "url": row["wi_url"],
                "project": row["wi_project"],
                "type": row["wi_type"],
                "state": row["wi_state"],
                "deleted": bool(row["wi_deleted"]),
            }
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
            "assets": _asset_dicts(row["assets_head"]),
            "assets_total": row["assets_total"],
            "tags": json.loads(row["tags"]),
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "work_item": work_item,
        }

    def list_risks(
        self, filters: dict[str, str], page: int, per_page: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Risks matching the filters, newest first, with their work item (bounded assets)."""
        clauses, params = [], []
        for name in ("status", "severity", "source", "key"):
            if filters.get(name):
                clauses.append(f"r.{name} = ?")
                params.append(filters[name])
        sql = self._RISK_SELECT + (" WHERE " + " AND ".join(clauses) if clauses else "")
        with self.db.read() as conn:
            rows, total = _page(conn, sql, params, page, per_page, "id DESC")
        return [self._risk_dict(r) for r in rows], total

    def get_risk(self, risk_id: int) -> dict[str, Any]:
        """One risk with all its assets, its full text and sync history."""
        with self.db.read() as conn:
            row = conn.execute(self._RISK_SELECT + " WHERE r.id=?", (risk_id,)).fetchone()
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
        out = self._risk_dict(row)
        out["assets"] = _asset_dicts(full["assets"])
        for name in ("definition", "evidence", "proof", "remediation"):
            out[name] = full[name]
        out["history"] = [
            {"at": h["at"], "event": h["event"], "detail": json.loads(h["detail"])} for h in history
        ]
        return out

    def load_risk(self, risk_id: int) -> Risk | None:
        """The domain risk, or None when it was deleted."""
        row = self.db.conn.execute("SELECT * FROM risks WHERE id=?", (risk_id,)).fetchone()
        return risk_from_row(row) if row else None

    def count_risks(self) -> int:
        """How many risks are stored."""
        return int(self.db.conn.execute("SELECT count(*) FROM risks").fetchone()[0])

    # ---- jobs ---------------------------------------------------------------------------

    @staticmethod
    def _job_dict(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": row["id"],
            "kind": row["kind"],
            "state": row["state"],
            "attempts": row["attempts"],
            "last_error": row["last_error"],
            "risk_id": row["risk_id"],
            "next_attempt_at": clock.iso(row["next_attempt_ts"])
            if row["state"] == "pending"
            else None,
        }

    def list_jobs(
        self, state: str | None, page: int, per_page: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Jobs, optionally by state (without a state: everything not done)."""
        if state:
            sql, params = "SELECT * FROM jobs WHERE state = ?", [state]
        else:
            sql, params = "SELECT * FROM jobs WHERE state != 'done'", []
        with self.db.read() as conn:
            rows, total = _page(conn, sql, params, page, per_page, "id")
        return [self._job_dict(r) for r in rows], total

    def retry_job(self, job_id: int) -> dict[str, Any]:
        """Requeue a failed job now, with a fresh budget of attempts (Missing, InUse)."""
        now = clock.now()
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise Missing(f"job {job_id} does not exist")
            if row["state"] != "failed":
                raise InUse(f"job {job_id} is {row['state']}, only failed jobs can be retried")
            conn.execute(
                "UPDATE jobs SET state='pending', next_attempt_ts=?, lease_owner=NULL,"
                " attempts=0, updated_ts=? WHERE id=?",
                (now, now, job_id),
            )
            row = conn.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return self._job_dict(row)

    # Lanes keep a risk's work in order: a job waits while an earlier job of its lane is
    # pending, running or failed. A failed job holds its lane until someone retries it, because
    # the later jobs assume it happened (a callback's statuses, a close before a reopen); other
    # lanes, and so other risks, are not held.
    _LANE_FREE = (
        "NOT EXISTS (SELECT 1 FROM jobs e WHERE e.lane = j.lane AND e.id < j.id"
        " AND e.state IN ('pending','running','failed'))"
    )

    @staticmethod
    def _runnable(stale: tuple[Lease, ...]) -> tuple[str, dict[str, Any]]:
        """Due pending jobs, plus running jobs whose lease was seen unchanged (`stale`)."""
        due = "(j.state='pending' AND j.next_attempt_ts <= :now)"
        if not stale:
            return due, {}
        taken = (
            "(j.state='running' AND EXISTS (SELECT 1 FROM json_each(:stale) s"
            " WHERE json_extract(s.value, '$[0]') = j.id"
            " AND json_extract(s.value, '$[1]') = j.claim_token"
            " AND json_extract(s.value, '$[2]') = j.lease_renewals))"
        )
        stale_json = json.dumps([[x.id, x.token, x.renewals] for x in stale])
        return f"({due} OR {taken})", {"stale": stale_json}

    @staticmethod
    def _kind_filter(kinds: tuple[str, ...], *, skip: bool) -> tuple[str, dict[str, str]]:
        if not kinds:
            return "", {}
        names = {f"k{i}": kind for i, kind in enumerate(kinds)}
        placeholders = ",".join(f":{name}" for name in names)
        return f" AND j.kind {'NOT IN' if skip else 'IN'} ({placeholders})", names

    def claim_jobs(
        self,
        owner: str,
        *,
        limit: int = 1,
        kinds: tuple[str, ...] = (),
        skip_kinds: tuple[str, ...] = (),
        lease_seconds: float = JOB_LEASE_SECONDS,
        stale: tuple[Lease, ...] = (),
    ) -> list[Job]:
        """Lease up to `limit` runnable jobs, oldest first, only the head of each lane.

        Runnable: pending and due by the wall clock, or running under a lease in `stale` (the
        caller saw that lease, with that token and renewal count, unchanged for a whole lease:
        its holder died or stopped working on it). Each claim increments the job's fencing
        token; a job taken from a running holder comes back with `taken_over` set.
        """
        now = clock.now()
        runnable, stale_args = self._runnable(stale)
        only, only_args = self._kind_filter(kinds, skip=False)
        skip, skip_args = self._kind_filter(skip_kinds, skip=True)
        with self.db.write() as conn:
            picked = conn.execute(
                f"SELECT j.id, j.state FROM jobs j WHERE {runnable}{only}{skip}"
                f" AND {self._LANE_FREE} ORDER BY j.next_attempt_ts, j.id LIMIT :limit",
                {"now": now, "limit": max(1, limit), **stale_args, **only_args, **skip_args},
            ).fetchall()
            if not picked:
                return []
            was_running = {row["id"] for row in picked if row["state"] == "running"}
            rows = conn.execute(
                "UPDATE jobs SET state='running', lease_owner=:owner, lease_expires_ts=:lease,"
                " attempts=attempts+1, claim_token=claim_token+1, lease_renewals=0,"
                " updated_ts=:now WHERE id IN (SELECT value FROM json_each(:ids)) RETURNING *",
                {
                    "owner": owner,
                    "lease": now + lease_seconds,
                    "now": now,
                    "ids": json.dumps([row["id"] for row in picked]),
                },
            ).fetchall()
        jobs = [
            Job(
                id=row["id"],
                kind=row["kind"],
                risk_id=row["risk_id"],
                lane=row["lane"],
                payload=json.loads(row["payload"]),
                attempts=row["attempts"],
                lease_owner=owner,
                token=row["claim_token"],
                taken_over=row["id"] in was_running,
            )
            for row in rows
        ]
        return sorted(jobs, key=lambda job: job.id)

    def claim_job(
        self,
        owner: str,
        *,
        skip_kinds: tuple[str, ...] = (),
        lease_seconds: float = JOB_LEASE_SECONDS,
        stale: tuple[Lease, ...] = (),
    ) -> Job | None:
        """Lease the next runnable job (oldest first, one at a time per lane), or None."""
        jobs = self.claim_jobs(
            owner, skip_kinds=skip_kinds, lease_seconds=lease_seconds, stale=stale
        )
        return jobs[0] if jobs else None

    def has_runnable_job(
        self,
        *,
        kinds: tuple[str, ...] = (),
        skip_kinds: tuple[str, ...] = (),
        stale: tuple[Lease, ...] = (),
    ) -> bool:
        """Cheap check the worker uses between claims (a plain read, no lock)."""
        runnable, stale_args = self._runnable(stale)
        only, only_args = self._kind_filter(kinds, skip=False)
        skip, skip_args = self._kind_filter(skip_kinds, skip=True)
        row = self.db.conn.execute(
            f"SELECT 1 FROM jobs j WHERE {runnable}{only}{skip} LIMIT 1",
            {"now": clock.now(), **stale_args, **only_args, **skip_args},
        ).fetchone()
        return row is not None

    def running_leases(self) -> list[Lease]:
        """The lease of every running job (a plain read), for observers of lease renewals."""
        rows = self.db.conn.execute(
            "SELECT id, claim_token, lease_renewals FROM jobs WHERE state='running'"
        ).fetchall()
        return [Lease(r["id"], r["claim_token"], r["lease_renewals"]) for r in rows]

    def renew_leases(
        self, owner: str, held: Iterable[Job], *, lease_seconds: float = JOB_LEASE_SECONDS
    ) -> set[int]:
        """Renew the leases of the jobs in `held` (those the caller's threads still work on).

        A renewal moves the job's renewal count on, which observers watch. Returns the ids of
        the jobs in `held` that are no longer this claim's (taken over or finished).
        """
        now = clock.now()
        lost: set[int] = set()
        with self.db.write() as conn:
            for job in held:
                cur = conn.execute(
                    "UPDATE jobs SET lease_renewals=lease_renewals+1, lease_expires_ts=?"
                    " WHERE id=? AND claim_token=? AND lease_owner=? AND state='running'",
                    (now + lease_seconds, job.id, job.token, owner),
                )
                if cur.rowcount != 1:
                    lost.add(job.id)
        return lost

    @staticmethod
    def _holds(conn: sqlite3.Connection, job: Job) -> bool:
        """Whether `job`'s claim is still the job's current one (same fencing token)."""
        row = conn.execute(
            "SELECT 1 FROM jobs WHERE id=? AND claim_token=? AND state='running'",
            (job.id, job.token),
        ).fetchone()
        return row is not None

    def _finish_job(
        self, conn: sqlite3.Connection, job: Job, state: str, error: str | None, next_ts: float
    ) -> bool:
        cur = conn.execute(
            "UPDATE jobs SET state=?, last_error=?, next_attempt_ts=?, lease_owner=NULL,"
            " lease_expires_ts=NULL, updated_ts=? WHERE id=? AND claim_token=? AND state='running'",
            (state, error, next_ts, clock.now(), job.id, job.token),
        )
        return cur.rowcount == 1

    def record_job_payload(self, job: Job, payload: dict[str, Any]) -> bool:
        """Replace the payload of a job this worker holds, e.g. to note what a call is about to
        send so that a retry looks for exactly that. False when the lease was lost meanwhile."""
        with self.db.write() as conn:
            cur = conn.execute(
                "UPDATE jobs SET payload=?, updated_ts=? WHERE id=? AND claim_token=?"
                " AND state='running'",
                (json.dumps(payload), clock.now(), job.id, job.token),
            )
            return cur.rowcount == 1

    def complete_job(self, job: Job) -> bool:
        """Mark a job done (False if it was taken over meanwhile or is already finished)."""
        if not self._holds(self.db.conn, job):
            return False  # e.g. finished inside the handler's own transaction; no lock needed
        with self.db.write() as conn:
            return self._finish_job(conn, job, "done", None, clock.now())

    def fail_job(self, job: Job, error: str) -> bool:
        """Mark a job failed; it waits for a manual retry (False: the claim was lost)."""
        with self.db.write() as conn:
            return self._finish_job(conn, job, "failed", error[:2000], clock.now())

    def retry_job_later(
        self, job: Job, error: str | None, at_ts: float, *, count_attempt: bool = True
    ) -> bool:
        """Put a job back to pending until wall time `at_ts` (False: the claim was lost).

        With count_attempt=False the claim does not count as an attempt (a pause).
        """
        with self.db.write() as conn:
            ok = self._finish_job(conn, job, "pending", error[:2000] if error else None, at_ts)
            if ok and not count_attempt:
                conn.execute("UPDATE jobs SET attempts=max(attempts-1, 0) WHERE id=?", (job.id,))
            return ok

    def note_clock_offset(self, boot: str, offset: float) -> float:
        """Repair pending due times after the wall clock stepped back.

        `offset` is wall minus monotonic time now, `boot` names the monotonic clock's run (see
        webhook.clock). The last offset is kept in `meta`; when it has fallen by more than
        CLOCK_STEP_TOLERANCE on the same boot, the wall clock went back by that much, and every
        pending job still due in the future is moved back by the same step (a job due in 5 s
        before a -600 s step is then due in 5 s again, not 605 s). Idempotent across processes:
        whoever records the new offset first repairs, the others find nothing to do. Returns
        the step repaired in seconds (0.0 when none).
        """
        row = self.db.conn.execute("SELECT value FROM meta WHERE key='clock_offset'").fetchone()
        if row is not None:
            seen = json.loads(row[0])
            if seen["boot"] == boot and abs(seen["offset"] - offset) <= CLOCK_STEP_TOLERANCE:
                return 0.0  # the common case: a plain read, no write
        step = 0.0
        with self.db.write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key='clock_offset'").fetchone()
            seen = json.loads(row[0]) if row is not None else None
            if seen is not None and seen["boot"] == boot:
                if abs(seen["offset"] - offset) <= CLOCK_STEP_TOLERANCE:
                    return 0.0  # another process recorded it meanwhile
                if seen["offset"] - offset > CLOCK_STEP_TOLERANCE:
                    step = seen["offset"] - offset
                    conn.execute(
                        "UPDATE jobs SET next_attempt_ts=next_attempt_ts-:step"
                        " WHERE state='pending' AND next_attempt_ts > :now",
                        {"step": step, "now": clock.now()},
                    )
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('clock_offset', ?)"
                " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (json.dumps({"boot": boot, "offset": offset}),),
            )
        return step

    def job_counts(self) -> dict[str, dict[str, float]]:
        """Count and oldest age of jobs by state (for /metrics)."""
        now = clock.now()
        out: dict[str, dict[str, float]] = {}
        for row in self.db.conn.execute(
            "SELECT state, count(*) AS n, min(created_ts) AS oldest FROM jobs"
            " WHERE state != 'done' GROUP BY state"
        ):
            age = max(0.0, now - row["oldest"])  # never negative after a backward clock step
            out[row["state"]] = {"count": row["n"], "oldest_age_seconds": age}
        return out

    # ---- workers ------------------------------------------------------------------------

    def heartbeat(self, worker_id: str, pid: int, host: str) -> None:
        """Record that a worker is alive."""
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO workers(id, pid, host, heartbeat_ts) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET heartbeat_ts=excluded.heartbeat_ts",
                (worker_id, pid, host, clock.now()),
            )
            conn.execute("DELETE FROM workers WHERE heartbeat_ts < ?", (clock.now() - 86400,))

    def worker_heartbeat_age(self) -> float | None:
        """Seconds since the freshest worker heartbeat, or None if no worker ever ran."""
        row = self.db.conn.execute("SELECT max(heartbeat_ts) FROM workers").fetchone()
        return None if row[0] is None else clock.now() - row[0]

    def prune(self, *, deliveries_older_than: float, jobs_done_older_than: float) -> None:
        """Forget answered deliveries and finished jobs past their usefulness."""
        now = clock.now()
        with self.db.write() as conn:
            conn.execute(
                "DELETE FROM deliveries WHERE received_ts < ?", (now - deliveries_older_than,)
            )
            conn.execute(
                "DELETE FROM hook_events WHERE received_ts < ?", (now - deliveries_older_than,)
            )
            conn.execute(
                "DELETE FROM jobs WHERE state='done' AND updated_ts < ?",
                (now - jobs_done_older_than,),
            )

    # ---- connections --------------------------------------------------------------------

    @staticmethod
    def _connection_dict(row: sqlite3.Row) -> dict[str, Any]:
        auth: dict[str, Any] = {"type": row["auth_type"]}
        if row["auth_type"] == "service_principal":
            auth.update(tenant_id=row["tenant_id"], client_id=row["client_id"])
        return {
            "id": row["id"],
            "name": row["name"],
            "organization_url": row["organization_url"],
            "auth": auth,
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
        }

    def create_connection(
        self, name: str, organization_url: str, auth: dict[str, Any]
    ) -> dict[str, Any]:
        """Save a validated connection; credentials are encrypted."""
        _register_auth(auth)
        now = clock.iso()
        try:
            with self.db.write() as conn:
                cur = conn.execute(
                    "INSERT INTO connections(name, organization_url, auth_type, auth_enc,"
                    " tenant_id, client_id, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        name,
                        organization_url,
                        auth["type"],
                        self.box.encrypt(json.dumps(auth)),
                        auth.get("tenant_id"),
                        auth.get("client_id"),
                        now,
                        now,
                    ),
                )
                row = conn.execute(
                    "SELECT * FROM connections WHERE id=?", (cur.lastrowid,)
                ).fetchone()
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"a connection named {name!r} already exists") from None
        return self._connection_dict(row)

    def update_connection(
        self,
        connection_id: int,
        *,
        name: str | None = None,
        auth: dict[str, Any] | None = None,
        organization_url: str | None = None,
    ) -> dict[str, Any]:
        """Rename a connection and/or replace its organization URL or credentials."""
        if auth is not None:
            _register_auth(auth)
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM connections WHERE id=?", (connection_id,)).fetchone()
            if row is None:
                raise Missing(f"connection {connection_id} does not exist")
            try:
                if name is not None:
                    conn.execute("UPDATE connections SET name=? WHERE id=?", (name, connection_id))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"a connection named {name!r} already exists") from None
            if organization_url is not None:
                conn.execute(
                    "UPDATE connections SET organization_url=? WHERE id=?",
                    (organization_url, connection_id),
                )
            if auth is not None:
                conn.execute(
                    "UPDATE connections SET auth_type=?, auth_enc=?, tenant_id=?, client_id=?"
                    " WHERE id=?",
                    (
                        auth["type"],
                        self.box.encrypt(json.dumps(auth)),
                        auth.get("tenant_id"),
                        auth.get("client_id"),
                        connection_id,
                    ),
                )
            conn.execute(
                "UPDATE connections SET updated_at=? WHERE id=?", (clock.iso(), connection_id)
            )
            row = conn.execute("SELECT * FROM connections WHERE id=?", (connection_id,)).fetchone()
        return self._connection_dict(row)

    def delete_connection(self, connection_id: int) -> None:
        """Delete a connection unless templates still use it."""
        with self.db.write() as conn:
            if (
                conn.execute("SELECT 1 FROM connections WHERE id=?", (connection_id,)).fetchone()
                is None
            ):
                raise Missing(f"connection {connection_id} does not exist")
            used = conn.execute(
                "SELECT name FROM templates WHERE connection_id=?", (connection_id,)
            ).fetchall()
            if used:
                names = ", ".join(r["name"] for r in used)
                raise InUse(f"connection {connection_id} is used by templates: {names}")
            hooks = conn.execute(
                "SELECT count(*) FROM hooks WHERE connection_id=?", (connection_id,)
            ).fetchone()[0]
            if hooks:
                raise InUse(
                    f"connection {connection_id} has {hooks} service hook subscription(s); "
                    "remove them with DELETE /admin/hooks/<id> first"
                )
            conn.execute("DELETE FROM connections WHERE id=?", (connection_id,))

    def list_connections(self, page: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
        """Connections (never their credentials)."""
        with self.db.read() as conn:
            rows, total = _page(conn, "SELECT * FROM connections", [], page, per_page, "id")
        return [self._connection_dict(r) for r in rows], total

    def get_connection(self, connection_id: int) -> dict[str, Any]:
        """One connection (never its credentials)."""
        row = self.db.conn.execute(
            "SELECT * FROM connections WHERE id=?", (connection_id,)
        ).fetchone()
        if row is None:
            raise Missing(f"connection {connection_id} does not exist")
        return self._connection_dict(row)

    def connection_credentials(self, connection_id: int) -> tuple[str, dict[str, Any]]:
        """(organization URL, decrypted auth) for calling Azure DevOps."""
        row = self.db.conn.execute(
            "SELECT organization_url, auth_enc FROM connections WHERE id=?", (connection_id,)
        ).fetchone()
        if row is None:
            raise Missing(f"connection {connection_id} does not exist")
        auth = json.loads(self.box.decrypt(row["auth_enc"]))
        _register_auth(auth)
        return row["organization_url"], auth

    # ---- templates ----------------------------------------------------------------------

    @staticmethod
    def _template_dict(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": row["id"],
            "name": row["name"],
            "connection_id": row["connection_id"],
            "project": row["project"],
            "work_item_type": row["work_item_type"],
            "auto_create": bool(row["auto_create"]),
            "severity_threshold": row["severity_threshold"],
            "sources": _loads(row["sources"], None),
            "title_format": row["title_format"],
            "tags": _loads(row["tags"], []),
            "area_path": row["area_path"],
            "iteration_path": row["iteration_path"],
            "fields": _loads(row["fields"], {}),
            "close_on_resolve": bool(row["close_on_resolve"]),
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
        }

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

    def create_template(self, data: dict[str, Any]) -> dict[str, Any]:
        """Save a validated template."""
        now = clock.iso()
        values = self._template_values(data)
        values.update(created_at=now, updated_at=now)
        cols = ", ".join(values)
        marks = ", ".join("?" * len(values))
        try:
            with self.db.write() as conn:
                cur = conn.execute(
                    f"INSERT INTO templates({cols}) VALUES ({marks})", list(values.values())
                )
                row = conn.execute(
                    "SELECT * FROM templates WHERE id=?", (cur.lastrowid,)
                ).fetchone()
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise AlreadyExists(
                    f"a template named {data.get('name')!r} already exists"
                ) from None
            raise Missing(f"connection {data.get('connection_id')} does not exist") from None
        return self._template_dict(row)

    def update_template(self, template_id: int, data: dict[str, Any]) -> dict[str, Any]:
        """Change a template's fields."""
        values = self._template_values(data)
        values["updated_at"] = clock.iso()
        sets = ", ".join(f"{k}=?" for k in values)
        try:
            with self.db.write() as conn:
                cur = conn.execute(
                    f"UPDATE templates SET {sets} WHERE id=?", [*values.values(), template_id]
                )
                if cur.rowcount == 0:
                    raise Missing(f"template {template_id} does not exist")
                row = conn.execute("SELECT * FROM templates WHERE id=?", (template_id,)).fetchone()
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"a template named {data.get('name')!r} already exists") from None
        return self._template_dict(row)

    def delete_template(self, template_id: int) -> None:
        """Delete a template (existing work items keep their link)."""
        with self.db.write() as conn:
            cur = conn.execute("DELETE FROM templates WHERE id=?", (template_id,))
            if cur.rowcount == 0:
                raise Missing(f"template {template_id} does not exist")

    def list_templates(self, page: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
        """Templates, oldest first."""
        with self.db.read() as conn:
            rows, total = _page(conn, "SELECT * FROM templates", [], page, per_page, "id")
        return [self._template_dict(r) for r in rows], total

    def get_template(self, template_id: int) -> dict[str, Any]:
        """One template as the API shows it."""
        row = self.db.conn.execute("SELECT * FROM templates WHERE id=?", (template_id,)).fetchone()
        if row is None:
            raise Missing(f"template {template_id} does not exist")
        return self._template_dict(row)

    def load_template(self, template_id: int) -> Template | None:
        """The domain template, or None."""
        row = self.db.conn.execute("SELECT * FROM templates WHERE id=?", (template_id,)).fetchone()
        return template_from_row(row) if row else None

    @staticmethod
    def _backfill_filter(
        conn: sqlite3.Connection, template_id: int
    ) -> tuple[str, list[Any]] | None:
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

    def backfill_template(self, template_id: int, *, dry_run: bool) -> dict[str, int]:
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
            now_ts = clock.now()
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
        return {"matched": matched, "queued": queued}

    # ---- work items ---------------------------------------------------------------------

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

    def request_work_item(self, risk_id: int, template_id: int) -> dict[str, Any]:
        """Manual export: record a create job unless the risk already has (or awaits) an item."""
        now = clock.now()
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
        return self._job_dict(row)

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
        now_ts = clock.now()
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
            catch_up: list[JobSpec] = []
            if risk["severity"] != rendered_severity:
                catch_up.append(
                    JobSpec(
                        "severity_changed",
                        "ado",
                        {"from": rendered_severity, "to": risk["severity"]},
                    )
                )
            if risk["status"] == "resolved":
                catch_up.append(JobSpec("scanner_resolved", "ado", {}))
            if not catch_up and (
                written.item_hash is None or written.item_hash != risk["item_hash"]
            ):
                # Content changed meanwhile (any update above brings the content along).
                catch_up.append(JobSpec(CONTENT_CHANGED, "ado", {}))
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
                "UPDATE work_items SET rev=max(rev, ?),"
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
                    clock.iso(),
                    risk_id,
                ),
            )

    def add_history(self, risk_id: int, event: str, detail: dict[str, Any]) -> None:
        """Append one entry to a risk's sync history."""
        with self.db.write() as conn:
            self._add_history(conn, risk_id, [(event, detail)], clock.iso())

    # ---- type cache ---------------------------------------------------------------------

    def cached_type_info(
        self, connection_id: int, project: str, type_name: str, *, max_age: float
    ) -> dict[str, Any] | None:
        """Work item type facts fetched less than max_age seconds ago."""
        row = self.db.conn.execute(
            "SELECT info, fetched_ts FROM type_cache"
            " WHERE connection_id=? AND project=? AND type=?",
            (connection_id, project, type_name),
        ).fetchone()
        if row is None or clock.now() - row["fetched_ts"] > max_age:
            return None
        return json.loads(row["info"])  # type: ignore[no-any-return]

    def save_type_info(
        self, connection_id: int, project: str, type_name: str, info: dict[str, Any]
    ) -> None:
        """Cache work item type facts."""
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO type_cache(connection_id, project, type, info, fetched_ts)"
                " VALUES (?,?,?,?,?) ON CONFLICT(connection_id, project, type)"
                " DO UPDATE SET info=excluded.info, fetched_ts=excluded.fetched_ts",
                (connection_id, project, type_name, json.dumps(info), clock.now()),
            )

    # ---- organization pauses (Retry-After) -----------------------------------------------

    def pause_organization(self, organization_url: str, until_ts: float) -> None:
        """Pause every call to an organization until the given time (never shortens a pause)."""
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO org_pauses(organization_url, paused_until_ts) VALUES (?, ?)"
                " ON CONFLICT(organization_url) DO UPDATE SET"
                " paused_until_ts=max(paused_until_ts, excluded.paused_until_ts)",
                (organization_url, until_ts),
            )

    def organization_paused_until(self, organization_url: str) -> float | None:
        """When the organization's pause ends, if it is paused now."""
        row = self.db.conn.execute(
            "SELECT paused_until_ts FROM org_pauses WHERE organization_url=?", (organization_url,)
        ).fetchone()
        if row is None or row[0] <= clock.now():
            return None
        return float(row[0])

    # ---- periodic tasks -----------------------------------------------------------------

    def start_periodic(self, name: str, interval: float, owner: str, lease: float) -> bool:
        """Take the lease on a periodic task if it is due and nobody runs it."""
        now = clock.now()
        # A plain read first: the worker asks every second, the lock is needed only when due.
        peek = self.db.conn.execute("SELECT * FROM periodic_runs WHERE name=?", (name,)).fetchone()
        if not _periodic_due(peek, now, interval):
            return False
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM periodic_runs WHERE name=?", (name,)).fetchone()
            if not _periodic_due(row, now, interval):
                return False
            conn.execute(
                "INSERT INTO periodic_runs(name, last_started_ts, lease_owner, lease_expires_ts)"
                " VALUES (?,?,?,?) ON CONFLICT(name) DO UPDATE SET"
                " last_started_ts=excluded.last_started_ts, lease_owner=excluded.lease_owner,"
                " lease_expires_ts=excluded.lease_expires_ts",
                (name, now, owner, now + lease),
            )
        return True

    # Result keys a failed run keeps from the previous one (where the next run starts from).
    PERIODIC_CARRY = ("watermark", "retry")

    def finish_periodic(self, name: str, owner: str, ok: bool, result: dict[str, Any]) -> None:
        """Record how a periodic task ended and release its lease.

        The stored result gains `consecutive_failures` (0 after a run that succeeded). A failed
        run keeps the previous result's `watermark` and `retry`, so the next run starts again
        from where the last successful one left off.
        """
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT last_result FROM periodic_runs WHERE name=? AND lease_owner=?",
                (name, owner),
            ).fetchone()
            if row is None:
                return
            previous = _loads(row["last_result"], None)
            previous = previous if isinstance(previous, dict) else {}
            if ok:
                stored = {**result, "consecutive_failures": 0}
            else:
                carried = {k: previous[k] for k in self.PERIODIC_CARRY if k in previous}
                failures = int(previous.get("consecutive_failures") or 0) + 1
                stored = {**carried, **result, "consecutive_failures": failures}
            conn.execute(
                "UPDATE periodic_runs SET last_finished_ts=?, last_ok=?, last_result=?,"
                " lease_owner=NULL, lease_expires_ts=NULL WHERE name=? AND lease_owner=?",
                (clock.now(), int(ok), json.dumps(stored), name, owner),
            )

    def request_periodic(self, name: str) -> None:
        """Make a periodic task due now (after its current run, if one is running)."""
        with self.db.write() as conn:
            conn.execute("UPDATE periodic_runs SET last_started_ts=NULL WHERE name=?", (name,))

    def periodic_status(self) -> dict[str, dict[str, Any]]:
        """Last run of each periodic task."""
        out: dict[str, dict[str, Any]] = {}
        for row in self.db.conn.execute("SELECT * FROM periodic_runs"):
            out[row["name"]] = {
                "last_started_ts": row["last_started_ts"],
                "last_finished_ts": row["last_finished_ts"],
                "last_ok": None if row["last_ok"] is None else bool(row["last_ok"]),
                "last_result": _loads(row["last_result"], None),
            }
        return out

    # ---- metrics ------------------------------------------------------------------------

    def metrics_snapshot(self) -> dict[str, Any]:
        """Database-derived figures for /metrics (computed at scrape time)."""
        periodic = self.periodic_status()
        snapshot: dict[str, Any] = {"jobs": self.job_counts()}
        age = self.worker_heartbeat_age()
        if age is not None:
            snapshot["worker_heartbeat_age_seconds"] = age
        snapshot["subscriptions"] = [
            {
                "id": str(r["id"]),
                "event_type": r["event_type"],
                "project": r["project"],
                "status": r["status"],
            }
            for r in self.db.conn.execute("SELECT id, event_type, project, status FROM hooks")
        ]
        for name, key in (("reconcile", "reconcile"), ("hook_check", "hook_check")):
            run = periodic.get(name)
            if run and run["last_finished_ts"]:
                entry = {"last_run_at_unix": run["last_finished_ts"], "last_ok": run["last_ok"]}
                result = run["last_result"] or {}
                entry["consecutive_failures"] = result.get("consecutive_failures", 0)
                if name == "reconcile":
                    entry["last_changes"] = result.get("changes", 0)
                    entry["item_failures"] = result.get("item_failures", 0)
                snapshot[key] = entry
        return snapshot

    def reconcile_health(self) -> dict[str, Any] | None:
        """How reconciliation is doing, for /readyz (None before its first run).

        `{"last_ok", "last_run_at", "consecutive_failures", "last_error", "item_failures"}`:
        a pass fails as a whole when a project cannot be read; items it could not apply are
        counted in `item_failures` without failing the pass.
        """
        run = self.periodic_status().get("reconcile")
        if not run or not run["last_finished_ts"]:
            return None
        result = run["last_result"] or {}
        return {
            "last_ok": run["last_ok"],
            "last_run_at": clock.iso(run["last_finished_ts"]),
            "consecutive_failures": result.get("consecutive_failures", 0),
            "last_error": result.get("error"),
            "item_failures": result.get("item_failures", 0),
        }

    def get_risk_summary(self, risk_id: int) -> dict[str, Any] | None:
        """A risk as the list endpoint shows it, or None."""
        row = self.db.conn.execute(self._RISK_SELECT + " WHERE r.id=?", (risk_id,)).fetchone()
        return self._risk_dict(row) if row else None

    # ---- service hooks ------------------------------------------------------------------

    @staticmethod
    def _hook_dict(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": row["id"],
            "connection_id": row["connection_id"],
            "project": row["project"],
            "event_type": row["event_type"],
            "subscription_id": row["subscription_id"],
            "status": row["status"],
            "heal_count": row["heal_count"],
            "last_checked_at": row["last_checked_at"],
            "last_healed_at": row["last_healed_at"],
            "last_error": row["last_error"],
        }

    def hooks_for(self, connection_id: int, project: str) -> list[dict[str, Any]]:
        """Hook rows of one connection and project."""
        rows = self.db.conn.execute(
            "SELECT * FROM hooks WHERE connection_id=? AND project=? ORDER BY id",
            (connection_id, project),
        ).fetchall()
        return [{**self._hook_dict(r), "project_id": r["project_id"]} for r in rows]

    def template_projects(self) -> list[tuple[int, str]]:
        """(connection id, project) pairs that templates file work items in."""
        return [
            (r[0], r[1])
            for r in self.db.conn.execute(
                "SELECT DISTINCT connection_id, project FROM templates"
                " ORDER BY connection_id, project"
            )
        ]

    def all_hooks(self) -> list[dict[str, Any]]:
        """Every hook row (for the periodic check)."""
        rows = self.db.conn.execute("SELECT * FROM hooks ORDER BY id").fetchall()
        return [{**self._hook_dict(r), "project_id": r["project_id"]} for r in rows]

    def list_hooks(self, page: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
        """Hooks, oldest first."""
        with self.db.read() as conn:
            rows, total = _page(conn, "SELECT * FROM hooks", [], page, per_page, "id")
        return [self._hook_dict(r) for r in rows], total

    def get_hook(self, hook_id: int) -> dict[str, Any]:
        """One hook row."""
        row = self.db.conn.execute("SELECT * FROM hooks WHERE id=?", (hook_id,)).fetchone()
        if row is None:
            raise Missing(f"hook {hook_id} does not exist")
        return {**self._hook_dict(row), "project_id": row["project_id"]}

    def save_hook(
        self,
        *,
        connection_id: int,
        project: str,
        project_id: str,
        event_type: str,
        subscription_id: str,
        status: str,
        username: str,
        password_hash: str,
        healed: bool,
    ) -> dict[str, Any]:
        """Create or replace the hook row for (connection, project, event type)."""
        now = clock.iso()
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO hooks(connection_id, project, project_id, event_type, subscription_id,"
                " status, username, password_hash, last_checked_at, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(connection_id, project, event_type) DO UPDATE SET"
                " project_id=excluded.project_id, subscription_id=excluded.subscription_id,"
                " status=excluded.status, username=excluded.username,"
                " password_hash=excluded.password_hash, last_checked_at=excluded.last_checked_at,"
                " last_error=NULL, updated_at=excluded.updated_at",
                (
                    connection_id,
                    project,
                    project_id,
                    event_type,
                    subscription_id,
                    status,
                    username,
                    password_hash,
                    now,
                    now,
                    now,
                ),
            )
            if healed:
                conn.execute(
                    "UPDATE hooks SET heal_count=heal_count+1, last_healed_at=?"
                    " WHERE connection_id=? AND project=? AND event_type=?",
                    (now, connection_id, project, event_type),
                )
            row = conn.execute(
                "SELECT * FROM hooks WHERE connection_id=? AND project=? AND event_type=?",
                (connection_id, project, event_type),
            ).fetchone()
        return self._hook_dict(row)

    def note_hook_status(self, hook_id: int, status: str, error: str | None = None) -> None:
        """Remember the live status last read from Azure DevOps."""
        with self.db.write() as conn:
            conn.execute(
                "UPDATE hooks SET status=?, last_error=?, last_checked_at=? WHERE id=?",
                (status, error, clock.iso(), hook_id),
            )

    def delete_hook(self, hook_id: int) -> None:
        """Forget a hook row."""
        with self.db.write() as conn:
            conn.execute("DELETE FROM hooks WHERE id=?", (hook_id,))

    def hook_credentials(self, username: str) -> HookAuth | None:
        """The hook a basic-auth user name belongs to (with its subscription and project)."""
        row = self.db.conn.execute(
            "SELECT id, connection_id, password_hash, subscription_id, project, project_id"
            " FROM hooks WHERE username=?",
            (username,),
        ).fetchone()
        if row is None:
            return None
        return HookAuth(
            hook_id=row["id"],
            connection_id=row["connection_id"],
            password_hash=row["password_hash"],
            subscription_id=row["subscription_id"],
            project=row["project"],
            project_id=row["project_id"],
        )

    def record_hook_event(
        self,
        *,
        hook_id: int,
        connection_id: int,
        event_id: str,
        event_type: str,
        work_item_id: int,
        rev: int | None,
        change: dict[str, Any],
    ) -> str:
        """Record one delivery and the job that applies it: recorded | duplicate | not_ours.

        Shares its transaction with concurrent deliveries in this process (group commit).
        """
        now = clock.now()

        def record(conn: sqlite3.Connection) -> str:
            try:
                conn.execute(
                    "INSERT INTO hook_events(event_id, hook_id, event_type, work_item_id, rev,"
                    " received_ts) VALUES (?,?,?,?,?,?)",
                    (event_id, hook_id, event_type, work_item_id, rev, now),
                )
            except sqlite3.IntegrityError:
                return "duplicate"
            row = conn.execute(
                "SELECT risk_id FROM work_items WHERE connection_id=? AND ado_id=?",
                (connection_id, work_item_id),
            ).fetchone()
            if row is None:
                return "not_ours"
            self._add_jobs(
                conn,
                row["risk_id"],
                [
                    JobSpec(
                        "apply_hook_event",
                        "ado-in",
                        {"event_type": event_type, "rev": rev, **change},
                    )
                ],
                now,
                lane_prefix=f"wi:{connection_id}:{work_item_id}",
            )
            return "recorded"

        return self.db.write_grouped(record)

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
            return self._apply_change(conn, risk_id, change, clock.now())

    def apply_hook_changes(self, changes: list[tuple[Job, WorkItemChange | None]]) -> None:
        """Apply several claimed hook-event jobs and mark them done, all in one transaction.

        A job whose lease was lost meanwhile is left to its new owner; None as the change
        just finishes the job (nothing to apply).
        """
        now_ts = clock.now()
        with self.db.write() as conn:
            for job, change in changes:
                finished = self._finish_job(conn, job, "done", None, now_ts)
                if finished and change is not None and job.risk_id is not None:
                    self._apply_change(conn, job.risk_id, change, now_ts)

    def _apply_change(
        self, conn: sqlite3.Connection, risk_id: int, change: WorkItemChange, now_ts: float
    ) -> bool:
        from webhook.domain.states import decide_ado_state_change

        now = clock.iso(now_ts)
        rev, state, category = change.rev, change.state, change.category
        by, at, deleted = change.by, change.at, change.deleted
        wi = conn.execute("SELECT * FROM work_items WHERE risk_id=?", (risk_id,)).fetchone()
        risk = conn.execute(
            "SELECT r.status, s.callback_url FROM risks r"
            " LEFT JOIN sources s ON s.name = r.source WHERE r.id=?",
            (risk_id,),
        ).fetchone()
        if wi is None or risk is None:
            return False
        stale = rev is not None and (
            rev < wi["rev"] or (rev == wi["rev"] and not change.allow_same_rev)
        )
        if change.check_rev and stale:
            return False
        history: list[tuple[str, dict[str, Any]]] = []
        jobs: list[JobSpec] = []
        if deleted is not None and bool(deleted) != bool(wi["deleted"]):
            if deleted:
                detail: dict[str, Any] = {
                    "id": wi["ado_id"],
                    "by": change.deleted_by,
                    "via": change.origin,
                }
                if change.deleted_at:
                    detail["at"] = change.deleted_at
                history.append(("work_item_deleted", detail))
            else:
                history.append(("work_item_restored", {"id": wi["ado_id"], "via": change.origin}))
                jobs.extend(self._skipped_while_deleted(conn, risk_id))
        new_type = change.work_item_type
        if new_type and new_type != wi["type"]:
            history.append(("work_item_type_changed", {"from": wi["type"], "to": new_type}))
        new_project = change.project
        if new_project and new_project != wi["project"]:
            history.append(("work_item_moved", {"from": wi["project"], "to": new_project}))
        conn.execute(
            "UPDATE work_items SET rev=max(rev, coalesce(?, rev)),"
            " state=coalesce(?, state), state_category=coalesce(?, state_category),"
            " deleted=coalesce(?, deleted), changed_at=coalesce(?, changed_at),"
            " type=coalesce(?, type), project=coalesce(?, project), updated_at=?"
            " WHERE risk_id=?",
            (
                rev,
                state,
                category,
                None if deleted is None else int(deleted),
                at,
                new_type,
                new_project,
                now,
                risk_id,
            ),
        )
        new_status = decide_ado_state_change(risk["status"], category) if category else None
        if new_status is not None:
            if new_status == "open":
                conn.execute(
                    "UPDATE risks SET status='open', resolution_state=NULL, resolution_by=NULL,"
                    " resolution_at=NULL, updated_at=? WHERE id=?",
                    (now, risk_id),
                )
            else:
                conn.execute(
                    "UPDATE risks SET status=?, resolution_state=?, resolution_by=?,"
                    " resolution_at=?, updated_at=? WHERE id=?",
                    (new_status, state, by, at or now, now, risk_id),
                )
            history.append(
                (
                    "status_changed",
                    {
                        "from": risk["status"],
                        "to": new_status,
                        "state": state,
                        "by": by,
                        "via": change.origin,
                    },
                )
            )
            if risk["callback_url"]:
                jobs.append(JobSpec("callback", "callback", {"status": new_status}))
        self._add_history(conn, risk_id, history, now)
        self._add_jobs(conn, risk_id, jobs, now_ts)
        return True

    # ---- work the service could not do while an item was in the recycle bin ---------------

    SKIPPED_EVENT = "work_item_update_skipped"

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
            self._add_history(conn, job.risk_id, [(self.SKIPPED_EVENT, detail)], clock.iso())
        return True

    def _skipped_while_deleted(self, conn: sqlite3.Connection, risk_id: int) -> list[JobSpec]:
        """The jobs to perform now that the risk's item is back, in the order they were skipped.

        Severity changes become one change from the severity the item last showed to the
        risk's current one (none if it is back where it was).
        """
        last_delete = conn.execute(
            "SELECT max(id) FROM risk_history WHERE risk_id=? AND event='work_item_deleted'",
            (risk_id,),
        ).fetchone()[0]
        rows = conn.execute(
            "SELECT detail FROM risk_history WHERE risk_id=? AND event=? AND id>? ORDER BY id",
            (risk_id, self.SKIPPED_EVENT, last_delete or 0),
        ).fetchall()
        severity = conn.execute("SELECT severity FROM risks WHERE id=?", (risk_id,)).fetchone()
        jobs: list[JobSpec] = []
        severity_from: str | None = None
        for row in rows:
            detail = json.loads(row["detail"])
            kind, payload = detail.get("kind"), detail.get("payload") or {}
            if not isinstance(kind, str):
                continue
            if kind == "severity_changed":
                if severity_from is None:
                    severity_from = payload.get("from")
                    if severity_from and severity and severity_from != severity["severity"]:
                        jobs.append(
                            JobSpec(
                                kind,
                                detail.get("lane") or "ado",
                                {"from": severity_from, "to": severity["severity"]},
                            )
                        )
                continue
            jobs.append(JobSpec(kind, detail.get("lane") or "ado", payload))
        return jobs
