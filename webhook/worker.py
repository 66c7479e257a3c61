"""The background worker: claims recorded jobs, performs them outside any transaction, records
the outcome; retries with capped exponential backoff and full jitter; runs periodic tasks."""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

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
from webhook.db import DatabaseBusy, DatabaseUnavailable
from webhook.gateway import OrganizationPaused
from webhook.logs import request_context
from webhook.store import Job, Store

log = logging.getLogger(__name__)

MAX_UNEXPECTED_ATTEMPTS = 10
DEFAULT_RATE_LIMIT_PAUSE = 30.0


class RetryLater(Exception):
    """The job cannot finish now; try again later (counts as an attempt unless told otherwise)."""

    def __init__(self, message: str, *, delay: float | None = None, count_attempt: bool = True):
        super().__init__(message)
        self.delay = delay
        self.count_attempt = count_attempt


class PermanentFailure(Exception):
    """The job cannot succeed without a person changing something."""


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 2.0
    cap: float = 600.0

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """Tuning knobs (tests shorten them): WEBHOOK_RETRY_BASE_SECONDS / _CAP_SECONDS."""
        base = float(os.environ.get("WEBHOOK_RETRY_BASE_SECONDS", "2") or 2)
        cap = float(os.environ.get("WEBHOOK_RETRY_CAP_SECONDS", "600") or 600)
        return cls(base=max(base, 0.01), cap=max(cap, base))

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Full jitter: uniform(0, min(cap, base·2^(attempts-1)))."""
        ceiling = min(self.cap, self.base * (2 ** max(attempts - 1, 0)))
        return rng.uniform(0, ceiling)


Handler = Callable[[Job], None]
# Performs several claimed jobs of one kind at once; returns the exceptions of those that did
# not finish, by job id (the others are done).
BatchHandler = Callable[[list[Job]], Mapping[int, Exception]]


@dataclass
class PeriodicTask:
    name: str
    interval: float
    run: Callable[[], dict[str, Any]]
    lease: float = 600.0


@dataclass
class Worker:
    store: Store
    handlers: Mapping[str, Handler]
    periodic: list[PeriodicTask] = field(default_factory=list)
    batch_handlers: Mapping[str, BatchHandler] = field(default_factory=dict)
    batch_size: int = 50
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
    )
    idle_poll: float = 0.05
    heartbeat_every: float = 5.0
    checkpoint_every: float = 0.5
    rng: random.Random = field(default_factory=random.Random)
    _batch_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

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
        # A plain read first: idle threads must not queue for the writers' lock.
        if not self.store.has_runnable_job(skip_kinds=skip):
            return did_batch
        job = self.store.claim_job(self.worker_id, skip_kinds=skip)
        if job is None:
            return did_batch
        self.perform(job)
        return True

    def _run_batches(self) -> bool:
        """Claim and perform up to `batch_size` jobs of each batchable kind at once."""
        did = False
        for kind, handler in self.batch_handlers.items():
            if not self.store.has_runnable_job(kinds=(kind,)):
                continue
            jobs = self.store.claim_jobs(self.worker_id, kinds=(kind,), limit=self.batch_size)
            if not jobs:
                continue
            did = True
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
        """Run a claimed job and record its outcome."""
        handler = self.handlers.get(job.kind)
        with request_context(job_id=job.id):
            if handler is None:
                self.store.fail_job(job, f"no handler for job kind {job.kind!r}")
                return
            try:
                handler(job)
            except Exception as exc:
                self._settle_failure(job, exc)
            else:
                self.store.complete_job(job)
                metrics.JOBS_COMPLETED.labels(job.kind, "done").inc()

    def _settle_failure(self, job: Job, exc: Exception) -> None:
        """Record what a job's exception means: wait for a pause, retry later, or fail."""
        if isinstance(exc, OrganizationPaused):
            self.store.retry_job_later(job, str(exc), exc.until_ts, count_attempt=False)
        elif isinstance(exc, AdoRateLimited):
            metrics.RATE_LIMIT_PAUSES.inc()
            wait = exc.retry_after if exc.retry_after is not None else DEFAULT_RATE_LIMIT_PAUSE
            self.store.retry_job_later(
                job,
                f"rate limited by Azure DevOps: {exc.message}",
                clock.now() + wait,
                count_attempt=False,
            )
        elif isinstance(exc, AdoTransient):
            self._later(job, f"Azure DevOps unavailable: {exc.message}")
        elif isinstance(exc, AdoRuleError | AdoNotFound | AdoAuthError | AdoConflict):
            self._fail(job, f"{exc.message}")
        elif isinstance(exc, AdoError):
            self._fail(job, f"Azure DevOps error: {exc.message}")
        elif isinstance(exc, RetryLater):
            if exc.delay is None:
                self._later(job, str(exc))
            else:
                self.store.retry_job_later(
                    job, str(exc), clock.now() + exc.delay, count_attempt=exc.count_attempt
                )
        elif isinstance(exc, PermanentFailure):
            self._fail(job, str(exc))
        elif isinstance(exc, DatabaseBusy):
            self.store.retry_job_later(
                job, f"database busy: {exc}", clock.now() + 1.0, count_attempt=False
            )
        else:
            log.error("job %s (%s) raised", job.id, job.kind, exc_info=exc)
            message = f"unexpected error: {type(exc).__name__}: {exc}"
            if job.attempts >= MAX_UNEXPECTED_ATTEMPTS:
                self._fail(job, message)
            else:
                self._later(job, message)

    def _later(self, job: Job, message: str) -> None:
        delay = self.policy.delay(job.attempts, self.rng)
        log.info("job %s (%s) retry in %.1fs: %s", job.id, job.kind, delay, message)
        self.store.retry_job_later(job, message, clock.now() + delay)
        metrics.JOBS_COMPLETED.labels(job.kind, "retry").inc()

    def _fail(self, job: Job, message: str) -> None:
        log.warning("job %s (%s) failed: %s", job.id, job.kind, message)
        self.store.fail_job(job, message)
        metrics.JOBS_COMPLETED.labels(job.kind, "failed").inc()

    def run_periodic_once(self) -> None:
        """Run every due periodic task whose lease this worker gets."""
        for task in self.periodic:
            if not self.store.start_periodic(task.name, task.interval, self.worker_id, task.lease):
                continue
            ok, result = True, {}
            try:
                result = task.run()
            except Exception as exc:
                log.exception("periodic task %s failed", task.name)
                ok, result = False, {"error": f"{type(exc).__name__}: {exc}"}
            self.store.finish_periodic(task.name, self.worker_id, ok, result)

    def _job_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                if not self.run_once():
                    stop.wait(self.idle_poll)
            except DatabaseUnavailable:  # busy, full, file gone: readyz says which
                stop.wait(0.2)
            except Exception:
                log.exception("worker loop error")
                stop.wait(1.0)

    def _housekeeping_loop(self, stop: threading.Event) -> None:
        host = socket.gethostname()
        last_beat = 0.0
        while not stop.is_set():
            try:
                # Heartbeat and lease renewal are fsync'd writes: every few seconds is enough
                # (readiness allows 30 s, leases last 50 s); periodic tasks are checked each
                # second with a plain read.
                if time.monotonic() - last_beat >= self.heartbeat_every:
                    self.store.heartbeat(self.worker_id, os.getpid(), host)
                    self.store.renew_leases(self.worker_id)
                    last_beat = time.monotonic()
                self.run_periodic_once()
            except Exception:
                log.exception("housekeeping error")
            stop.wait(1.0)

    def _checkpoint_loop(self, stop: threading.Event) -> None:
        # Its own thread: periodic tasks may wait on Azure DevOps for a long time.
        while not stop.wait(self.checkpoint_every):
            try:
                self.store.db.checkpoint()
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
        for t in (*workers, house, checkpointer):
            t.start()
        log.info("worker %s started with %d threads", self.worker_id, len(workers))
        while not stop.is_set():
            stop.wait(0.5)
        deadline = time.monotonic() + 30
        for t in (*workers, house, checkpointer):
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        log.info("worker %s stopped", self.worker_id)


def run_worker(settings: Any, stop: threading.Event, *, threads: int = 8) -> None:
    """Build the worker from settings and run it."""
    from webhook.gunicorn_app import tune_thread_switching
    from webhook.services import Services
    from webhook.sync import build_batch_handlers, build_handlers, build_periodic_tasks

    tune_thread_switching()
    services = Services.from_settings(settings)
    services.store.db.migrate()
    worker = Worker(
        store=services.store,
        handlers=build_handlers(services),
        batch_handlers=build_batch_handlers(services),
        periodic=build_periodic_tasks(services),
        policy=RetryPolicy.from_env(),
    )
    worker.run(stop, threads=threads)
