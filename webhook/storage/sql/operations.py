"""Heartbeats, periodic leases, organization pauses, the type cache, the metrics
snapshot, pruning, clock repair and installation facts (both engines)."""

from __future__ import annotations

import json
import secrets as pysecrets
from typing import Any

from webhook import clock
from webhook.domain.models import WorkItemState, WorkItemTypeInfo
from webhook.storage.sql.common import (
    SqlRepo,
    loads,
)
from webhook.storage.sql.db import Row
from webhook.storage.types import (
    JobStateCount,
    MetricsSnapshot,
    PeriodicRun,
    PeriodicSummary,
    ReconcileHealth,
    SubscriptionStatus,
)

# A wall clock that went back by more than this (against the monotonic clock) moves pending due
# times back by the same step (Store.note_clock_offset).
CLOCK_STEP_TOLERANCE = 2.0


# /readyz writes this much (and deletes it again) to see the database has room for a delivery.
READY_PROBE_BYTES = 16 * 1024


def _periodic_due(row: Row | None, now: float, interval: float) -> bool:
    """A periodic task is due when nobody holds its lease and its interval has passed."""
    if row is None:
        return True
    if row["lease_owner"] and (row["lease_expires_ts"] or 0) > now:
        return False
    return not (row["last_started_ts"] and now - row["last_started_ts"] < interval)


class SqlOperations(SqlRepo):
    """Operational facts of the service itself (not of risks)."""

    def checkpoint(self) -> tuple[int, int]:
        """Copy the WAL into the database file (Database.checkpoint): (WAL pages, copied)."""
        return self.db.checkpoint()

    def installation_id(self) -> str:
        """A random id for this installation, used in work item tracking tags."""
        row = self.db.conn.execute("SELECT value FROM meta WHERE key='installation_id'").fetchone()
        if row:
            return str(row[0])
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('installation_id', ?)"
                " ON CONFLICT(key) DO NOTHING",
                (pysecrets.token_hex(4),),
            )
            return str(
                conn.execute("SELECT value FROM meta WHERE key='installation_id'").fetchone()[0]
            )

    def tracking_key(self) -> bytes:
        """The installation's random key for tracking tag MACs (32 bytes), made once.

        Kept in meta as `tracking_key_enc`, encrypted with the SecretBox (never in clear). It is
        generated at random, not derived from WEBHOOK_SECRET_KEY: those keys rotate, a tracking
        tag must not. Race-safe across processes: insert unless present, then read what won.
        Raises ValueError when no configured WEBHOOK_SECRET_KEY decrypts it.
        """
        if self._tracking_key is None:
            sql = "SELECT value FROM meta WHERE key='tracking_key_enc'"
            row = self.db.conn.execute(sql).fetchone()
            if row is None:
                with self.db.write() as conn:
                    conn.execute(
                        "INSERT INTO meta(key, value) VALUES ('tracking_key_enc', ?)"
                        " ON CONFLICT(key) DO NOTHING",
                        (self.box.encrypt(pysecrets.token_hex(32)),),
                    )
                    row = conn.execute(sql).fetchone()
            self._tracking_key = bytes.fromhex(self.box.decrypt(str(row[0])))
        return self._tracking_key

    def check_writable(self) -> None:
        """Raise unless a real write commits now, through the same bounded path as any write.

        Upserts a probe row (a WAL append and an fsync) and checks there is room for
        READY_PROBE_BYTES more (Database.check_room). Raises DatabaseUnavailable (busy, disk
        full, file removed or replaced, I/O error) or another error of the engine.
        """
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('ready_probe', ?)"
                " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (clock.iso(self.db.now()),),
            )
            self.db.check_room(conn, READY_PROBE_BYTES)

    def note_clock_offset(self, boot: str, offset: float) -> float:
        """Repair pending due times after the wall clock stepped back.

        `offset` is wall minus monotonic time now, `boot` names the monotonic clock's run (see
        webhook.clock). The last offset is kept in `meta`; when it has fallen by more than
        CLOCK_STEP_TOLERANCE on the same boot, the wall clock went back by that much, and every
        pending job still due in the future is moved back by the same step (a job due in 5 s
        before a -600 s step is then due in 5 s again, not 605 s). Idempotent across processes:
        whoever records the new offset first repairs, the others find nothing to do. Returns
        the step repaired in seconds (0.0 when none). On a store with its own clock
        (`SqlDatabase.server_clock`, PostgreSQL) there is nothing to repair: 0.0, no write.
        """
        if self.db.server_clock:
            return 0.0
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
                        {"step": step, "now": self.db.now()},
                    )
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('clock_offset', ?)"
                " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (json.dumps({"boot": boot, "offset": offset}),),
            )
        return step

    def job_counts(self) -> dict[str, JobStateCount]:
        """Count and oldest age of jobs by state, done ones left out (for /metrics)."""
        now = self.db.now()
        out: dict[str, JobStateCount] = {}
        for row in self.db.conn.execute(
            "SELECT state, count(*) AS n, min(created_ts) AS oldest FROM jobs"
            " WHERE state != 'done' GROUP BY state"
        ):
            age = max(0.0, now - row["oldest"])  # never negative after a backward clock step
            out[row["state"]] = JobStateCount(count=row["n"], oldest_age_seconds=age)
        return out

    def heartbeat(self, worker_id: str, pid: int, host: str) -> None:
        """Record that a worker is alive."""
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO workers(id, pid, host, heartbeat_ts) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET heartbeat_ts=excluded.heartbeat_ts",
                (worker_id, pid, host, self.db.now()),
            )
            conn.execute("DELETE FROM workers WHERE heartbeat_ts < ?", (self.db.now() - 86400,))

    def worker_heartbeat_age(self) -> float | None:
        """Seconds since the freshest worker heartbeat, or None if no worker ever ran."""
        row = self.db.conn.execute("SELECT max(heartbeat_ts) FROM workers").fetchone()
        return None if row[0] is None else self.db.now() - row[0]

    def prune(self, *, deliveries_older_than: float, jobs_done_older_than: float) -> None:
        """Forget answered deliveries and finished jobs past their usefulness."""
        now = self.db.now()
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

    def cached_type_info(
        self, connection_id: int, project: str, type_name: str, *, max_age: float
    ) -> WorkItemTypeInfo | None:
        """Work item type facts fetched less than max_age seconds ago."""
        row = self.db.conn.execute(
            "SELECT info, fetched_ts FROM type_cache"
            " WHERE connection_id=? AND project=? AND type=?",
            (connection_id, project, type_name),
        ).fetchone()
        if row is None or self.db.now() - row["fetched_ts"] > max_age:
            return None
        return _type_info_from_json(json.loads(row["info"]))

    def save_type_info(
        self, connection_id: int, project: str, type_name: str, info: WorkItemTypeInfo
    ) -> None:
        """Cache work item type facts."""
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO type_cache(connection_id, project, type, info, fetched_ts)"
                " VALUES (?,?,?,?,?) ON CONFLICT(connection_id, project, type)"
                " DO UPDATE SET info=excluded.info, fetched_ts=excluded.fetched_ts",
                (connection_id, project, type_name, _type_info_json(info), self.db.now()),
            )

    def pause_organization(self, organization_url: str, until_ts: float) -> None:
        """Pause every call to an organization until the given time (never shortens a pause)."""
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO org_pauses(organization_url, paused_until_ts) VALUES (?, ?)"
                " ON CONFLICT(organization_url) DO UPDATE SET"
                " paused_until_ts="
                + self.db.dialect.greatest(
                    "org_pauses.paused_until_ts", "excluded.paused_until_ts"
                ),
                (organization_url, self._store_time(until_ts)),
            )

    def organization_paused_until(self, organization_url: str) -> float | None:
        """When the organization's pause ends, if it is paused now."""
        row = self.db.conn.execute(
            "SELECT paused_until_ts FROM org_pauses WHERE organization_url=?", (organization_url,)
        ).fetchone()
        if row is None or row[0] <= self.db.now():
            return None
        return self._host_time(float(row[0]))

    def start_periodic(self, name: str, interval: float, owner: str, lease: float) -> bool:
        """Take the lease on a periodic task if it is due and nobody runs it."""
        now = self.db.now()
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
            previous = loads(row["last_result"], None)
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
                (self.db.now(), int(ok), json.dumps(stored), name, owner),
            )

    def request_periodic(self, name: str) -> None:
        """Make a periodic task due now (after its current run, if one is running)."""
        with self.db.write() as conn:
            conn.execute("UPDATE periodic_runs SET last_started_ts=NULL WHERE name=?", (name,))

    def periodic_status(self) -> dict[str, PeriodicRun]:
        """Last run of each periodic task, by task name."""
        out: dict[str, PeriodicRun] = {}
        for row in self.db.conn.execute("SELECT * FROM periodic_runs"):
            result = loads(row["last_result"], None)
            out[row["name"]] = PeriodicRun(
                last_started_ts=row["last_started_ts"],
                last_finished_ts=row["last_finished_ts"],
                last_ok=None if row["last_ok"] is None else bool(row["last_ok"]),
                last_result=result if isinstance(result, dict) else {},
            )
        return out

    def metrics_snapshot(self) -> MetricsSnapshot:
        """Database-derived figures for /metrics (computed at scrape time)."""
        periodic = self.periodic_status()

        def summary(name: str) -> PeriodicSummary | None:
            run = periodic.get(name)
            if not run or not run.last_finished_ts:
                return None
            result = run.last_result
            reconcile = name == "reconcile"
            return PeriodicSummary(
                last_run_at_unix=run.last_finished_ts,
                last_ok=run.last_ok,
                consecutive_failures=result.get("consecutive_failures", 0),
                last_changes=result.get("changes", 0) if reconcile else None,
                item_failures=result.get("item_failures", 0) if reconcile else None,
            )

        subscriptions = tuple(
            SubscriptionStatus(
                id=r["id"], event_type=r["event_type"], project=r["project"], status=r["status"]
            )
            for r in self.db.conn.execute("SELECT id, event_type, project, status FROM hooks")
        )
        return MetricsSnapshot(
            jobs=self.job_counts(),
            subscriptions=subscriptions,
            worker_heartbeat_age_seconds=self.worker_heartbeat_age(),
            reconcile=summary("reconcile"),
            hook_check=summary("hook_check"),
        )

    def reconcile_health(self) -> ReconcileHealth | None:
        """How reconciliation is doing, for /readyz (None before its first run); see
        ReconcileHealth."""
        run = self.periodic_status().get("reconcile")
        if not run or not run.last_finished_ts:
            return None
        result = run.last_result
        return ReconcileHealth(
            last_ok=run.last_ok,
            last_run_at=clock.iso(run.last_finished_ts),
            consecutive_failures=result.get("consecutive_failures", 0),
            last_error=result.get("error"),
            item_failures=result.get("item_failures", 0),
        )


def _type_info_json(info: WorkItemTypeInfo) -> str:
    """The type cache's stored form of a work item type's facts."""
    return json.dumps(
        {
            "name": info.name,
            "states": [[s.name, s.category] for s in info.states],
            "field_names": sorted(info.field_names),
            "required_fields": sorted(info.required_fields),
        }
    )


def _type_info_from_json(data: dict[str, Any]) -> WorkItemTypeInfo:
    """Inverse of _type_info_json."""
    return WorkItemTypeInfo(
        name=data["name"],
        states=tuple(WorkItemState(n, c) for n, c in data["states"]),
        field_names=frozenset(data["field_names"]),
        required_fields=frozenset(data["required_fields"]),
    )
