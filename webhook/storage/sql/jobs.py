"""Recorded jobs: claims with leases and fencing tokens, lanes, outcomes (both engines)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from webhook.domain.sync_plan import JobSpec
from webhook.storage.errors import InUse, Missing
from webhook.storage.sql.common import (
    JOB_LEASE_SECONDS,
    SqlRepo,
    page_rows,
)
from webhook.storage.types import (
    Job,
    JobRecord,
    Lease,
)


class SqlJobs(SqlRepo):
    """The job queue the worker drains."""

    def list_jobs(self, state: str | None, page: int, per_page: int) -> tuple[list[JobRecord], int]:
        """Jobs, optionally by state (without a state: everything not done)."""
        if state:
            sql, params = "SELECT * FROM jobs WHERE state = ?", [state]
        else:
            sql, params = "SELECT * FROM jobs WHERE state != 'done'", []
        with self.db.read() as conn:
            rows, total = page_rows(conn, sql, params, page, per_page, "id")
        return [self._job_record(r) for r in rows], total

    def retry_job(self, job_id: int) -> JobRecord:
        """Requeue a failed job now, with a fresh budget of attempts (Missing, InUse)."""
        now = self.db.now()
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
            self.db.notify_jobs(conn)
        return self._job_record(row)

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
        taken, args = [], {}
        for n, lease in enumerate(stale):
            taken.append(
                f"(j.id = :s{n}i AND j.claim_token = :s{n}t AND j.lease_renewals = :s{n}r)"
            )
            args.update({f"s{n}i": lease.id, f"s{n}t": lease.token, f"s{n}r": lease.renewals})
        return f"({due} OR (j.state='running' AND ({' OR '.join(taken)})))", args

    @staticmethod
    def _kind_filter(kinds: tuple[str, ...], *, skip: bool) -> tuple[str, dict[str, str]]:
        if not kinds:
            return "", {}
        names = {f"k{i}": kind for i, kind in enumerate(kinds)}
        placeholders = ",".join(f":{name}" for name in names)
        return f" AND j.kind {'NOT IN' if skip else 'IN'} ({placeholders})", names

    def enqueue(
        self,
        jobs: Iterable[JobSpec],
        *,
        risk_id: int | None = None,
        lane: str | None = None,
        at: float | None = None,
    ) -> list[int]:
        """Record `jobs` and return their ids (see JobRepository.enqueue)."""
        now = self.db.now()
        start = now if at is None else self._store_time(at)
        prefix = lane or f"risk:{risk_id}"
        ids = []
        with self.db.write() as conn:
            for spec in jobs:
                row = conn.execute(
                    "INSERT INTO jobs(kind, risk_id, lane, payload, next_attempt_ts, created_ts,"
                    " updated_ts) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (
                        spec.kind,
                        risk_id,
                        f"{prefix}:{spec.lane}",
                        json.dumps(spec.payload),
                        start + spec.delay,
                        now,
                        now,
                    ),
                ).fetchone()
                ids.append(int(row[0]))
            if ids:
                self.db.notify_jobs(conn)
        return ids

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
        now = self.db.now()
        runnable, stale_args = self._runnable(stale)
        only, only_args = self._kind_filter(kinds, skip=False)
        skip, skip_args = self._kind_filter(skip_kinds, skip=True)
        with self.db.write() as conn:
            # PostgreSQL: rows another worker is claiming right now are skipped, not waited for
            # (FOR UPDATE SKIP LOCKED); a lane's later job stays blocked by the earlier one,
            # which is pending or running in every snapshot until it is done.
            picked = conn.execute(
                f"SELECT j.id, j.state FROM jobs j WHERE {runnable}{only}{skip}"
                f" AND {self._LANE_FREE} ORDER BY j.next_attempt_ts, j.id LIMIT :limit"
                f"{self.db.dialect.skip_locked('j')}",
                {"now": now, "limit": max(1, limit), **stale_args, **only_args, **skip_args},
            ).fetchall()
            if not picked:
                return []
            was_running = {row["id"] for row in picked if row["state"] == "running"}
            ids = {f"i{n}": row["id"] for n, row in enumerate(picked)}
            rows = conn.execute(
                "UPDATE jobs SET state='running', lease_owner=:owner, lease_expires_ts=:lease,"
                " attempts=attempts+1, claim_token=claim_token+1, lease_renewals=0,"
                f" updated_ts=:now WHERE id IN ({', '.join(':' + k for k in ids)}) RETURNING *",
                {"owner": owner, "lease": now + lease_seconds, "now": now, **ids},
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
            {"now": self.db.now(), **stale_args, **only_args, **skip_args},
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
        now = self.db.now()
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

    def record_job_payload(self, job: Job, payload: dict[str, Any]) -> bool:
        """Replace the payload of a job this worker holds, e.g. to note what a call is about to
        send so that a retry looks for exactly that. False when the lease was lost meanwhile."""
        with self.db.write() as conn:
            cur = conn.execute(
                "UPDATE jobs SET payload=?, updated_ts=? WHERE id=? AND claim_token=?"
                " AND state='running'",
                (json.dumps(payload), self.db.now(), job.id, job.token),
            )
            return cur.rowcount == 1

    def complete_job(self, job: Job) -> bool:
        """Mark a job done (False if it was taken over meanwhile or is already finished)."""
        if not self._holds(self.db.conn, job):
            return False  # e.g. finished inside the handler's own transaction; no lock needed
        with self.db.write() as conn:
            return self._finish_job(conn, job, "done", None, self.db.now())

    def fail_job(self, job: Job, error: str) -> bool:
        """Mark a job failed; it waits for a manual retry (False: the claim was lost)."""
        with self.db.write() as conn:
            return self._finish_job(conn, job, "failed", error[:2000], self.db.now())

    def wait_for_jobs(self, poll: float) -> bool:
        """Block an idle worker until new jobs may be runnable (SqlDatabase.wait_for_jobs)."""
        return self.db.wait_for_jobs(poll)

    def retry_job_later(
        self, job: Job, error: str | None, at_ts: float, *, count_attempt: bool = True
    ) -> bool:
        """Put a job back to pending until wall time `at_ts` (False: the claim was lost).

        With count_attempt=False the claim does not count as an attempt (a pause).
        """
        with self.db.write() as conn:
            due = self._store_time(at_ts)
            ok = self._finish_job(conn, job, "pending", error[:2000] if error else None, due)
            if ok and not count_attempt:
                conn.execute(
                    "UPDATE jobs SET attempts=CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END"
                    " WHERE id=?",
                    (job.id,),
                )
            return ok
