"""The background worker: claims recorded jobs, performs them outside any transaction, records
the outcome; retries with capped exponential backoff and full jitter; runs periodic tasks.

Leases. A claim leases the job and carries a fencing token (Job.token). While one of this
worker's threads performs a job, the lease thread renews it every `heartbeat_every` seconds;
only those jobs are renewed, so a job whose outcome could not be recorded is no longer renewed
and is taken over. Another worker takes over a running job once it has seen that job's lease
(token, renewal count) unchanged for `lease_seconds` of its own monotonic clock: a step of the
wall clock never makes a live lease look expired. The outcome of a claim that was taken over is
refused by the store (the token no longer matches) and discarded here; the new holder's job
says `outcome_unknown`, so a create looks its tracking tag up before creating.

Residual assumptions: a holder that cannot renew for a whole lease (process stopped, database
unwritable for 40 s) is treated as gone; if one of its creates was still in flight and lands
after the new holder looked for the tag, two items exist (the late holder's link is refused and
logged). Observers must run for a lease before they take a job over: a worker restarted after
its predecessor died takes that one's jobs over one lease after it starts. Due times stay on
the wall clock, since several processes compare them: a forward step makes waiting jobs run
early (harmless), a backward step is repaired by moving pending due times back by the step
(OperationsRepository.note_clock_offset).

Bounded retries. Every retry that is about the job itself counts as an attempt: a job still
failing after MAX_ATTEMPTS attempts (an unexpected exception: MAX_UNEXPECTED_ATTEMPTS) becomes
`failed` with its last reason and waits for POST /admin/jobs/<id>/retry. Pauses (organization
paused, 429, database busy or full, RetryLater(count_attempt=False)) never count. Azure DevOps
being unavailable (5xx, connection errors) is not bounded either: SPEC 4 says work waits while
Azure DevOps is down and resumes by itself, so such a job keeps retrying with the capped backoff
(one call per job every RetryPolicy.cap seconds at most) instead of needing a person after a long
outage. With the default backoff (base 2 s, cap 600 s, full jitter) 20 attempts take about an
hour. A failed job holds its own lane (SqlJobs._LANE_FREE), never another risk's.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from webhook import clock, metrics
from webhook.ado import (
    AdoAuthError,
    AdoConflict,
    AdoError,
    AdoNotFound,
    AdoRateLimited,
    AdoRuleError,
    AdoTransient,
)
from webhook.gateway import OrganizationPaused
from webhook.jobs import BatchHandler, Handler, PeriodicTask, PermanentFailure, RetryLater
from webhook.logs import request_context
from webhook.settings import Settings
from webhook.storage.constants import JOB_LEASE_SECONDS
from webhook.storage.errors import StorageBusy, storage_operational
from webhook.storage.interfaces import Storage
from webhook.storage.types import Job, Lease

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 20
MAX_UNEXPECTED_ATTEMPTS = 10
DEFAULT_RATE_LIMIT_PAUSE = 30.0
DATABASE_PAUSE = 1.0
# Recording an outcome is retried this many times, waiting 0.5, 1, 2, 4 s (well within a
# lease); then the claim is left to run out.
RECORD_TRIES = 5
RECORD_BACKOFF = 0.5


def database_unavailable(exc: BaseException) -> bool:
    """A database that is locked, busy, full or gone: a pause, not a fault of the job."""
    if isinstance(exc, StorageBusy):
        return True
    if storage_operational(exc):
        text = str(exc).lower()
        return any(word in text for word in ("locked", "busy", "full", "disk i/o"))
    return False


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 2.0
    cap: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """WEBHOOK_RETRY_BASE_SECONDS / _CAP_SECONDS (tests shorten them)."""
        return cls(base=max(settings.retry_base_seconds, 0.01), cap=settings.retry_cap_seconds)

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Full jitter: uniform(0, min(cap, base·2^(attempts-1))) seconds."""
        ceiling = min(self.cap, self.base * (2 ** max(attempts - 1, 0)))
        return rng.uniform(0, ceiling)


class LeaseWatch:
    """Running jobs' leases as this process saw them, timed by the monotonic clock.

    A lease is stale once it was seen with the same token and renewal count for `lease_seconds`:
    its holder stopped renewing it (died, or gave the job up). Thread-safe.
    """

    def __init__(self) -> None:
        self._seen: dict[int, tuple[Lease, float]] = {}
        self._lock = threading.Lock()

    def observe(self, leases: Iterable[Lease], at: float) -> None:
        """Record the running jobs' leases read at monotonic time `at`."""
        with self._lock:
            seen: dict[int, tuple[Lease, float]] = {}
            for lease in leases:
                before = self._seen.get(lease.id)
                seen[lease.id] = (
                    before if before is not None and before[0] == lease else (lease, at)
                )
            self._seen = seen

    def stale(
        self, at: float, lease_seconds: float, exclude: Iterable[int] = ()
    ) -> tuple[Lease, ...]:
        """Leases unchanged since at least `lease_seconds` before `at`, except `exclude`."""
        skip = set(exclude)
        with self._lock:
            return tuple(
                lease
                for lease, since in self._seen.values()
                if at - since >= lease_seconds and lease.id not in skip
            )


@dataclass
class Worker:
    store: Storage
    handlers: Mapping[str, Handler]
    periodic: list[PeriodicTask] = field(default_factory=list)
    batch_handlers: Mapping[str, BatchHandler] = field(default_factory=dict)
    batch_size: int = 50
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
    )
    idle_poll: float = 0.05
    heartbeat_every: float = 5.0  # heartbeat and lease renewal cadence, monotonic seconds
    lease_seconds: float = JOB_LEASE_SECONDS
    checkpoint_every: float = 0.5
    rng: random.Random = field(default_factory=random.Random)
    _batch_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _last_beat: float = field(default=float("-inf"), init=False, repr=False)
    _held: dict[int, Job] = field(default_factory=dict, init=False, repr=False)
    _held_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _watch: LeaseWatch = field(default_factory=LeaseWatch, init=False, repr=False)

    # ---- leases ------------------------------------------------------------------------

    @contextmanager
    def _holding(self, jobs: list[Job]) -> Iterator[None]:
        """Renew these jobs' leases while the calling thread works on them."""
        with self._held_lock:
            self._held.update((job.id, job) for job in jobs)
        try:
            yield
        finally:
            with self._held_lock:
                for job in jobs:
                    if self._held.get(job.id) is job:
                        del self._held[job.id]

    def held(self) -> list[Job]:
        """The claims this worker's threads are working on now."""
        with self._held_lock:
            return list(self._held.values())

    def _stale(self) -> tuple[Lease, ...]:
        with self._held_lock:
            mine = list(self._held)
        return self._watch.stale(clock.monotonic(), self.lease_seconds, exclude=mine)

    def beat(self) -> None:
        """One round of the lease thread (each second); never raises.

        Renews the leases of the jobs being worked on and writes the heartbeat every
        `heartbeat_every` seconds (each second again after a failed renewal); repairs due times
        after a backward wall-clock step; reads the running jobs' leases so that one left
        unrenewed for a whole lease can be taken over. A failing step does not skip the others.
        """
        if clock.monotonic() - self._last_beat >= self.heartbeat_every:
            if self._beat_step("lease renewal", self._renew):
                self._last_beat = clock.monotonic()
            self._beat_step(
                "heartbeat",
                lambda: self.store.operations.heartbeat(
                    self.worker_id, os.getpid(), socket.gethostname()
                ),
            )
        self._beat_step("clock step check", self._check_clock)
        self._beat_step(
            "lease watch",
            lambda: self._watch.observe(self.store.jobs.running_leases(), clock.monotonic()),
        )

    @staticmethod
    def _beat_step(name: str, step: Callable[[], None]) -> bool:
        try:
            step()
        except StorageBusy as exc:  # busy, full, file gone: /readyz says which; no traceback
            log.warning("%s failed: %s", name, exc)
            return False
        except Exception:
            log.exception("%s failed", name)
            return False
        return True

    def _renew(self) -> None:
        held = self.held()
        if not held:
            return
        lost = self.store.jobs.renew_leases(self.worker_id, held, lease_seconds=self.lease_seconds)
        if not lost:
            return
        # A job its thread finished while the renewal ran is no longer renewable, not lost:
        # only one that a thread still works on was taken over.
        still = {(job.id, job.token) for job in self.held()}
        for job in held:
            if job.id in lost and (job.id, job.token) in still:
                log.warning("job %s (%s): lease lost to another claim", job.id, job.kind)

    def _check_clock(self) -> None:
        current = clock.current()
        step = self.store.operations.note_clock_offset(
            current.boot, current.now() - current.monotonic()
        )
        if step:
            log.warning("wall clock went back %.1fs; pending due times moved back as much", step)

    # ---- jobs ----------------------------------------------------------------------------

    def run_once(self) -> bool:
        """Perform one job, or one batch of a batchable kind; False when nothing was runnable."""
        did_batch = False
        # One thread at a time takes batches, so they grow instead of being split up.
        if self.batch_handlers and self._batch_lock.acquire(blocking=False):
            try:
                did_batch = self._run_batches()
            finally:
                self._batch_lock.release()
        skip = tuple(self.batch_handlers)
        stale = self._stale()
        # A plain read first: idle threads must not queue for the writers' lock.
        if not self.store.jobs.has_runnable_job(skip_kinds=skip, stale=stale):
            return did_batch
        job = self.store.jobs.claim_job(
            self.worker_id, skip_kinds=skip, lease_seconds=self.lease_seconds, stale=stale
        )
        if job is None:
            return did_batch
        self.perform(job)
        return True

    def _run_batches(self) -> bool:
        """Claim and perform up to `batch_size` jobs of each batchable kind at once."""
        did = False
        for kind, handler in self.batch_handlers.items():
            stale = self._stale()
            if not self.store.jobs.has_runnable_job(kinds=(kind,), stale=stale):
                continue
            jobs = self.store.jobs.claim_jobs(
                self.worker_id,
                kinds=(kind,),
                limit=self.batch_size,
                lease_seconds=self.lease_seconds,
                stale=stale,
            )
            if not jobs:
                continue
            did = True
            with self._holding(jobs):
                try:
                    failures = handler(jobs)
                except Exception as exc:  # the batch's own transaction failed: none was done
                    failures = {job.id: exc for job in jobs}
                for job in jobs:
                    with request_context(job_id=job.id):
                        if job.id in failures:
                            self._settle_failure(job, failures[job.id])
                        else:
                            metrics.JOBS_COMPLETED.labels(job.kind, "done").inc()
        return did

    def perform(self, job: Job) -> None:
        """Run a claimed job and record its outcome; never raises."""
        with self._holding([job]), request_context(job_id=job.id):
            if job.taken_over:
                log.warning(
                    "job %s (%s) taken over from a claim whose lease ran out; outcome unknown",
                    job.id,
                    job.kind,
                )
            handler = self.handlers.get(job.kind)
            if handler is None:
                self._fail(job, f"no handler for job kind {job.kind!r}")
                return
            try:
                handler(job)
            except Exception as exc:
                self._settle_failure(job, exc)
            else:
                if self._record(job, "done", lambda: self.store.jobs.complete_job(job)) is not None:
                    metrics.JOBS_COMPLETED.labels(job.kind, "done").inc()

    def _record(self, job: Job, outcome: str, write: Callable[[], bool]) -> bool | None:
        """Record a job's outcome, retrying while the database fails.

        Returns what `write` returned (False: the claim was taken over or already finished),
        or None when the database kept failing: then the claim is given up (no longer renewed,
        so it is taken over once its lease runs out).
        """
        for attempt in range(RECORD_TRIES):
            try:
                recorded = write()
            except Exception as exc:
                if attempt + 1 >= RECORD_TRIES:
                    log.error(
                        "job %s (%s): could not record %s (%s: %s); leaving it to its lease",
                        job.id,
                        job.kind,
                        outcome,
                        type(exc).__name__,
                        exc,
                    )
                    return None
                clock.sleep(RECORD_BACKOFF * 2**attempt)
            else:
                if not recorded and outcome != "done":
                    log.warning(
                        "job %s (%s) was taken over meanwhile; this claim's outcome (%s)"
                        " is discarded",
                        job.id,
                        job.kind,
                        outcome,
                    )
                return recorded
        return None

    def _settle_failure(self, job: Job, exc: Exception) -> None:
        """Record what a job's exception means: wait for a pause, retry later, or fail."""
        if isinstance(exc, OrganizationPaused):
            self._pause(job, str(exc), exc.until_ts)
        elif isinstance(exc, AdoRateLimited):
            metrics.RATE_LIMIT_PAUSES.inc()
            wait = exc.retry_after if exc.retry_after is not None else DEFAULT_RATE_LIMIT_PAUSE
            self._pause(job, f"rate limited by Azure DevOps: {exc.message}", clock.now() + wait)
        elif isinstance(exc, AdoTransient):
            self._later(job, f"Azure DevOps unavailable: {exc.message}", limit=None)
        elif isinstance(exc, AdoRuleError | AdoNotFound | AdoAuthError | AdoConflict):
            self._fail(job, f"{exc.message}")
        elif isinstance(exc, AdoError):
            self._fail(job, f"Azure DevOps error: {exc.message}")
        elif isinstance(exc, RetryLater):
            if exc.count_attempt:
                limit = MAX_ATTEMPTS if exc.bounded else None
                self._later(job, str(exc), delay=exc.delay, limit=limit)
            else:
                wait = exc.delay if exc.delay is not None else self.policy.delay(1, self.rng)
                self._pause(job, str(exc), clock.now() + wait)
        elif isinstance(exc, PermanentFailure):
            self._fail(job, str(exc))
        elif database_unavailable(exc):
            self._pause(job, f"database unavailable: {exc}", clock.now() + DATABASE_PAUSE)
        else:
            log.error("job %s (%s) raised", job.id, job.kind, exc_info=exc)
            message = f"unexpected error: {type(exc).__name__}: {exc}"
            self._later(job, message, limit=MAX_UNEXPECTED_ATTEMPTS)

    def _pause(self, job: Job, message: str, until_ts: float) -> None:
        """Put the job back until wall time `until_ts` without counting an attempt."""
        self._record(
            job,
            "pause",
            lambda: self.store.jobs.retry_job_later(job, message, until_ts, count_attempt=False),
        )

    def _later(
        self,
        job: Job,
        message: str,
        *,
        delay: float | None = None,
        limit: int | None = MAX_ATTEMPTS,
    ) -> None:
        """Retry after `delay` (default: backoff) unless the job has used `limit` attempts
        (None: no limit)."""
        if limit is not None and job.attempts >= limit:
            self._fail(job, f"gave up after {job.attempts} attempts: {message}")
            return
        wait = self.policy.delay(job.attempts, self.rng) if delay is None else delay
        log.info("job %s (%s) retry in %.1fs: %s", job.id, job.kind, wait, message)
        at_ts = clock.now() + wait
        if self._record(job, "retry", lambda: self.store.jobs.retry_job_later(job, message, at_ts)):
            metrics.JOBS_COMPLETED.labels(job.kind, "retry").inc()

    def _fail(self, job: Job, message: str) -> None:
        log.warning("job %s (%s) failed: %s", job.id, job.kind, message)
        if self._record(job, "failure", lambda: self.store.jobs.fail_job(job, message)):
            metrics.JOBS_COMPLETED.labels(job.kind, "failed").inc()

    # ---- periodic tasks and threads -------------------------------------------------------

    def run_periodic_once(self) -> None:
        """Run every due periodic task whose lease this worker gets."""
        for task in self.periodic:
            if not self.store.operations.start_periodic(
                task.name, task.interval, self.worker_id, task.lease
            ):
                continue
            ok, result = True, {}
            try:
                result = task.run()
            except Exception as exc:
                log.exception("periodic task %s failed", task.name)
                ok, result = False, {"error": f"{type(exc).__name__}: {exc}"}
            self.store.operations.finish_periodic(task.name, self.worker_id, ok, result)

    def _job_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                if not self.run_once() and not stop.is_set():
                    # SQLite: a 50 ms poll; PostgreSQL: until a commit records jobs (NOTIFY).
                    self.store.jobs.wait_for_jobs(self.idle_poll)
            except StorageBusy:  # busy, full, file gone: readyz says which
                stop.wait(0.2)
            except Exception:
                log.exception("worker loop error")
                stop.wait(1.0)

    def _lease_loop(self, stop: threading.Event) -> None:
        # Its own thread: periodic tasks may wait on Azure DevOps for longer than a lease.
        while not stop.is_set():
            self.beat()
            stop.wait(1.0)

    def _housekeeping_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_periodic_once()
            except StorageBusy as exc:
                log.warning("housekeeping skipped: %s", exc)
            except Exception:
                log.exception("housekeeping error")
            stop.wait(1.0)

    def _checkpoint_loop(self, stop: threading.Event) -> None:
        # Its own thread: periodic tasks may wait on Azure DevOps for a long time.
        while not stop.wait(self.checkpoint_every):
            try:
                self.store.operations.checkpoint()
            except StorageBusy as exc:
                log.warning("WAL checkpoint skipped: %s", exc)
            except Exception:
                log.exception("WAL checkpoint failed")

    def run(self, stop: threading.Event, threads: int = 8) -> None:
        """Run job threads and housekeeping until `stop` is set; bounded join on exit."""
        workers = [
            threading.Thread(target=self._job_loop, args=(stop,), name=f"job-{i}", daemon=True)
            for i in range(max(1, threads))
        ]
        house = threading.Thread(
            target=self._housekeeping_loop, args=(stop,), name="housekeeping", daemon=True
        )
        checkpointer = threading.Thread(
            target=self._checkpoint_loop, args=(stop,), name="checkpoint", daemon=True
        )
        leases = threading.Thread(target=self._lease_loop, args=(stop,), name="leases", daemon=True)
        for t in (*workers, house, checkpointer, leases):
            t.start()
        log.info("worker %s started with %d threads", self.worker_id, len(workers))
        while not stop.is_set():
            stop.wait(0.5)
        deadline = time.monotonic() + 30
        for t in (*workers, house, checkpointer, leases):
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        log.info("worker %s stopped", self.worker_id)
