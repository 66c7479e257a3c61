"""The worker's batch path and the WAL checkpoint, in-process against a real SQLite file."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import pytest

from webhook.domain.sync_plan import JobSpec
from webhook.storage.sqlite.storage import SqliteStorage
from webhook.storage.types import Job
from webhook.worker import RetryLater, RetryPolicy, Worker

from .conftest import make_services

BATCHED = "apply_hook_event"


@pytest.fixture
def store(tmp_path: Path) -> SqliteStorage:
    return make_services(tmp_path).store


def add_jobs(store: SqliteStorage, lane: str, kinds: list[str]) -> None:
    store.jobs.enqueue([JobSpec(k, "in", {"n": i}) for i, k in enumerate(kinds)], lane=lane, at=0.0)


def job_rows(store: SqliteStorage) -> list[dict]:
    rows = store.db.conn.execute(
        "SELECT id, kind, lane, state, attempts, last_error FROM jobs ORDER BY id"
    )
    return [dict(r) for r in rows]


class Recorder:
    """A batch handler that finishes every job except those told to retry."""

    def __init__(self, store: SqliteStorage, retry: set[int] | None = None) -> None:
        self.store = store
        self.retry = retry or set()
        self.batches: list[list[int]] = []

    def __call__(self, jobs: list[Job]) -> Mapping[int, Exception]:
        self.batches.append([j.id for j in jobs])
        self.store.apply_hook_changes([(j, None) for j in jobs if j.id not in self.retry])
        return {
            j.id: RetryLater("category not known yet", delay=60) for j in jobs if j.id in self.retry
        }


def worker(store: SqliteStorage, batch: Recorder, single: list[int] | None = None) -> Worker:
    done = single if single is not None else []

    def perform_single(job: Job) -> None:
        done.append(job.id)

    return Worker(
        store=store,
        handlers={"callback": perform_single},
        batch_handlers={BATCHED: batch},
        policy=RetryPolicy(base=0.01, cap=0.01),
    )


def test_one_batch_takes_the_head_of_every_lane_in_id_order(store: SqliteStorage) -> None:
    add_jobs(store, "wi:1:1", [BATCHED, BATCHED])  # ids 1, 2
    add_jobs(store, "wi:1:2", [BATCHED])  # id 3
    add_jobs(store, "wi:1:3", [BATCHED, BATCHED])  # ids 4, 5
    batch = Recorder(store)
    w = worker(store, batch)

    assert w.run_once() is True
    assert batch.batches == [[1, 3, 4]]  # never two of one lane at once: events apply in order
    assert w.run_once() is True
    assert batch.batches[1] == [2, 5]
    assert w.run_once() is False
    assert {r["state"] for r in job_rows(store)} == {"done"}


def test_a_job_that_fails_in_a_batch_retries_alone_and_holds_its_lane(store: SqliteStorage) -> None:
    add_jobs(store, "wi:1:1", [BATCHED, BATCHED])  # 1 (will retry), 2
    add_jobs(store, "wi:1:2", [BATCHED])  # 3
    batch = Recorder(store, retry={1})
    w = worker(store, batch)

    w.run_once()
    rows = {r["id"]: r for r in job_rows(store)}
    assert rows[1]["state"] == "pending" and rows[1]["last_error"] == "category not known yet"
    assert rows[3]["state"] == "done"
    # Job 2 waits behind job 1 in its lane, so nothing else is runnable now.
    assert w.run_once() is False
    assert rows[2]["state"] == "pending" and batch.batches == [[1, 3]]


def test_other_kinds_go_one_at_a_time_beside_batches(store: SqliteStorage) -> None:
    add_jobs(store, "risk:1", ["callback"])  # 1
    add_jobs(store, "wi:1:1", [BATCHED])  # 2
    single: list[int] = []
    batch = Recorder(store)
    w = worker(store, batch, single)

    assert w.run_once() is True
    assert batch.batches == [[2]] and single == [1]
    assert {r["state"] for r in job_rows(store)} == {"done"}
    # A second worker thread never claims batched kinds one by one.
    add_jobs(store, "wi:1:9", [BATCHED])
    assert store.claim_job("other", skip_kinds=(BATCHED,)) is None
    assert [j.kind for j in store.claim_jobs("other", kinds=(BATCHED,), limit=10)] == [BATCHED]


def test_a_failing_batch_transaction_leaves_every_job_to_retry(store: SqliteStorage) -> None:
    add_jobs(store, "wi:1:1", [BATCHED])
    add_jobs(store, "wi:1:2", [BATCHED])

    def broken(jobs: list[Job]) -> Mapping[int, Exception]:
        raise RuntimeError("disk full")

    w = Worker(store=store, handlers={}, batch_handlers={BATCHED: broken})
    w.run_once()
    rows = job_rows(store)
    assert [r["state"] for r in rows] == ["pending", "pending"]
    assert all("disk full" in r["last_error"] for r in rows)


def wal_pages(store: SqliteStorage) -> int:
    """Frames in the WAL now (a PASSIVE checkpoint only reports when nothing else runs)."""
    return int(store.db.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


def test_checkpoint_lets_the_wal_start_over_while_writers_keep_writing(
    store: SqliteStorage,
) -> None:
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        while not stop.is_set() and written[0] < 20000:
            with store.db.write() as conn:
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES (?, ?)", (f"k{written[0]}", "x" * 3000)
                )
            written[0] += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(20):
            before = written[0]
            while written[0] < before + 50 and thread.is_alive():
                threading.Event().wait(0.002)
            store.db.checkpoint()
    finally:
        stop.set()
        thread.join(timeout=30)
    # After the last checkpoint only the writes since then are in the WAL: it started over.
    with store.db.write() as conn:
        conn.execute("INSERT INTO meta(key, value) VALUES ('last', 'x')")
    assert wal_pages(store) < 50
    count = store.db.conn.execute("SELECT count(*) FROM meta WHERE key LIKE 'k%'").fetchone()[0]
    assert count == written[0] > 1000
    assert store.db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
