"""Job leases under wall-clock steps and failed writes; bounded retries.

Every test runs on an injected clock (tests.fake_clock.FakeClock): the wall clock is stepped and
time advanced by the test, never by the machine. Azure DevOps is a fake client that can hold a
create in flight while the test steps the clock and lets another worker try to claim.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from webhook import clock, create_app
from webhook.ado import AdoRateLimited
from webhook.domain.models import Risk
from webhook.domain.sync_plan import JobSpec
from webhook.gateway import OrganizationPaused
from webhook.services import Services
from webhook.storage.constants import JOB_LEASE_SECONDS
from webhook.storage.sqlite.database import DatabaseBusy
from webhook.storage.sqlite.storage import SqliteStorage
from webhook.storage.types import Job, Lease
from webhook.sync import SyncHandlers
from webhook.worker import MAX_ATTEMPTS, RetryLater, RetryPolicy, Worker

from .conftest import ADMIN_TOKEN, make_services, make_settings
from .fake_clock import FakeClock
from .fakes import FakeGateway


class FakeAdo:
    """Work items in memory; a create can be held in flight, before or after it lands."""

    def __init__(self) -> None:
        self.items: dict[int, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.hold: str | None = None  # "before" or "after": hold the next create there
        self.in_flight = threading.Event()
        self.release = threading.Event()

    def _wait_if_held(self, where: str) -> None:
        if self.hold == where:
            self.hold = None
            self.in_flight.set()
            assert self.release.wait(30)

    def create_work_item(
        self, project: str, type_name: str, patch: list[dict[str, Any]]
    ) -> dict[str, Any]:
        self._wait_if_held("before")  # the request has not reached Azure DevOps yet
        fields = {
            op["path"].removeprefix("/fields/"): op["value"]
            for op in patch
            if op["path"].startswith("/fields/")
        }
        # What Azure DevOps sets on every new item (AZURE_DEVOPS.md: create work item).
        fields.update({"System.State": "New", "System.TeamProject": project})
        fields["System.WorkItemType"] = type_name
        with self.lock:
            item_id = len(self.items) + 1
            item = {
                "id": item_id,
                "rev": 1,
                "fields": fields,
                "_links": {"html": {"href": f"https://ado.example/{item_id}"}},
            }
            self.items[item_id] = item
        self._wait_if_held("after")  # created; the answer has not come back yet
        return item

    def find_by_tag(self, project: str, tag: str) -> list[int]:
        with self.lock:
            return [
                i
                for i, item in self.items.items()
                if tag in [t.strip() for t in item["fields"].get("System.Tags", "").split(";")]
            ]

    def get_work_item(self, project: str, work_item_id: int, **_: Any) -> dict[str, Any]:
        return self.items[work_item_id]

    def get_work_items_batch(self, project: str, ids: list[int], **_: Any) -> list[dict[str, Any]]:
        with self.lock:
            return [self.items[i] for i in ids if i in self.items]


@pytest.fixture
def fake(fake_clock: FakeClock) -> FakeClock:
    return fake_clock


@pytest.fixture
def services(tmp_path: Path, fake: FakeClock) -> Services:
    return make_services(tmp_path)


@pytest.fixture
def store(services: Services) -> SqliteStorage:
    return services.store


def job_row(store: SqliteStorage, job_id: int) -> dict[str, Any]:
    row = store.db.conn.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
    return dict(row)


def add_job(store: SqliteStorage, lane: str, kind: str = "callback", **payload: Any) -> int:
    (job_id,) = store.jobs.enqueue([JobSpec(kind, "x", payload)], lane=lane)
    return job_id


# ---- one work item per risk while the wall clock steps -------------------------------------


def risk_awaiting_its_work_item(services: Services) -> int:
    """A high risk under an auto-create template: a create_work_item job is recorded."""
    store = services.store
    conn_id = store.create_connection(
        "org", "https://dev.azure.com/example", {"type": "pat", "token": "p" * 20}
    ).id
    store.create_template(
        {
            "name": "bugs",
            "connection_id": conn_id,
            "project": "AppSec",
            "work_item_type": "Bug",
            "auto_create": True,
            "severity_threshold": "low",
        }
    )
    store.create_source("sast", None)
    source = store.find_source("sast")
    assert source is not None
    store.record_risks(source, "msg-1", [Risk(None, "sast", "R-1", "SQL injection", "high")])
    (job_id,) = [r[0] for r in store.db.conn.execute("SELECT id FROM jobs")]
    return int(job_id)


def sync_worker(services: Services, ado: FakeAdo, name: str) -> Worker:
    gateway = FakeGateway(ado)  # type: ignore[arg-type]
    handlers = SyncHandlers(services.store, gateway, services.callbacks).handlers()  # type: ignore[arg-type]
    return Worker(store=services.store, handlers=handlers, worker_id=name)


def linked_ids(store: SqliteStorage) -> list[int]:
    return [r[0] for r in store.db.conn.execute("SELECT ado_id FROM work_items")]


def test_a_forward_wall_step_during_a_create_gives_one_work_item(
    services: Services, fake: FakeClock
) -> None:
    ado = FakeAdo()
    job_id = risk_awaiting_its_work_item(services)
    a, b = sync_worker(services, ado, "a"), sync_worker(services, ado, "b")
    a.beat()
    b.beat()
    ado.hold = "before"  # a's create is on its way to Azure DevOps
    thread = threading.Thread(target=a.run_once)
    thread.start()
    assert ado.in_flight.wait(10)

    fake.step(+120)  # the wall clock jumps past the lease's expiry time
    b.beat()
    assert b.run_once() is False, "another worker took over a live claim"
    for _ in range(4):  # a minute passes; a keeps renewing, b keeps watching
        fake.advance(15)
        a.beat()
        b.beat()
        assert b.run_once() is False

    ado.release.set()
    thread.join(10)
    assert len(ado.items) == 1
    assert linked_ids(services.store) == [1]
    assert job_row(services.store, job_id)["state"] == "done"


def test_a_dead_workers_create_is_taken_over_within_a_minute_and_adopted(
    services: Services, fake: FakeClock
) -> None:
    store = services.store
    ado = FakeAdo()
    job_id = risk_awaiting_its_work_item(services)
    a, b = sync_worker(services, ado, "a"), sync_worker(services, ado, "b")
    a.beat()
    b.beat()
    ado.hold = "after"  # a's item exists in Azure DevOps; a hangs before hearing so
    thread = threading.Thread(target=a.run_once)
    thread.start()
    assert ado.in_flight.wait(10)

    # a never renews again (killed, stopped). b takes the job over once it has watched the
    # lease stand still for a whole lease, well within SPEC's 60 s.
    b.beat()
    fake.advance(JOB_LEASE_SECONDS + 1)
    b.beat()
    assert JOB_LEASE_SECONDS + 1 < 60
    assert b.run_once() is True
    assert len(ado.items) == 1, "the new holder looked the tracking tag up and adopted"
    assert job_row(store, job_id)["state"] == "done"
    assert job_row(store, job_id)["claim_token"] == 2

    ado.release.set()  # a wakes up: its link and its outcome are refused
    thread.join(10)
    assert len(ado.items) == 1 and linked_ids(store) == [1]
    events = [r[0] for r in store.db.conn.execute("SELECT event FROM risk_history ORDER BY id")]
    assert events.count("work_item_adopted") == 1 and "work_item_created" not in events
    assert job_row(store, job_id)["state"] == "done"


def test_a_create_retried_after_a_pause_looks_its_tag_up_first(
    services: Services, fake: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The item is created, then recording it meets a locked database: a pause, which does not
    # count as an attempt. The next claim must still treat the create as "outcome unknown".
    store = services.store
    ado = FakeAdo()
    job_id = risk_awaiting_its_work_item(services)
    w = sync_worker(services, ado, "w")
    real_link = store.link_work_item
    calls = []

    def busy_once(*args: Any, **kwargs: Any) -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise DatabaseBusy("database is locked")
        return real_link(*args, **kwargs)

    monkeypatch.setattr(store, "link_work_item", busy_once)
    assert w.run_once() is True
    assert job_row(store, job_id)["state"] == "pending"
    fake.advance(2)
    assert w.run_once() is True
    assert len(ado.items) == 1 and linked_ids(store) == [1]
    assert job_row(store, job_id)["state"] == "done"


def test_a_claim_that_was_taken_over_cannot_record_its_outcome(
    store: SqliteStorage, fake: FakeClock
) -> None:
    first_id = add_job(store, "risk:1")
    first = store.claim_job("w")
    assert first is not None and first.token == 1 and not first.taken_over
    # The same worker id claims it again after its lease was seen standing still.
    second = store.claim_job("w", stale=(Lease(first_id, 1, 0),))
    assert second is not None and second.token == 2 and second.taken_over
    assert second.outcome_unknown
    assert store.fail_job(first, "late failure") is False
    assert store.retry_job_later(first, "late retry", clock.now()) is False
    assert store.complete_job(first) is False
    assert store.renew_leases("w", [first]) == {first_id}
    assert job_row(store, first_id)["state"] == "running"
    assert store.complete_job(second) is True
    assert job_row(store, first_id)["state"] == "done"


def test_a_lease_renewed_by_its_holder_is_never_taken_over(
    store: SqliteStorage, fake: FakeClock
) -> None:
    job_id = add_job(store, "risk:1")
    job = store.claim_job("a")
    assert job is not None
    # Seen once, renewed since: the observer's old view no longer matches.
    seen = store.running_leases()
    assert store.renew_leases("a", [job]) == set()
    assert store.claim_job("b", stale=tuple(seen)) is None
    assert job_row(store, job_id)["lease_owner"] == "a"


# ---- due times across a backward wall step ------------------------------------------------


def recording_worker(store: SqliteStorage, name: str, done: list[int]) -> Worker:
    def handle(job: Job) -> None:
        if job.payload.get("retry_in") and job.attempts == 1:
            raise RetryLater("not yet", delay=job.payload["retry_in"])
        done.append(job.id)

    return Worker(store=store, handlers={"callback": handle}, worker_id=name)


def test_a_backward_wall_step_does_not_delay_due_jobs(
    store: SqliteStorage, fake: FakeClock
) -> None:
    done: list[int] = []
    w = recording_worker(store, "w", done)
    w.beat()
    retried = add_job(store, "risk:1", retry_in=5)
    assert w.run_once() is True  # now due in 5 s
    assert job_row(store, retried)["state"] == "pending"
    fresh = add_job(store, "risk:2")  # due now, just before the step

    fake.step(-600)
    w.beat()
    age = store.job_counts()["pending"].oldest_age_seconds
    assert age is not None and age >= 0
    assert w.run_once() is True and done == [fresh]
    fake.advance(4)
    assert w.run_once() is False  # moved back once, not early
    fake.advance(1)
    assert w.run_once() is True and done == [fresh, retried]


def test_a_backward_step_while_no_worker_ran_is_repaired_once(
    store: SqliteStorage, fake: FakeClock
) -> None:
    done: list[int] = []
    before = recording_worker(store, "old", done)
    before.beat()
    job_id = add_job(store, "risk:1", retry_in=30)
    assert before.run_once() is True  # due in 30 s; then this worker stops

    fake.step(-3600)
    fake.advance(10)
    one, two = recording_worker(store, "one", done), recording_worker(store, "two", done)
    one.beat()
    two.beat()  # both notice the step; only one repair happens
    fake.advance(19)
    assert one.run_once() is False
    fake.advance(1)
    assert two.run_once() is True and done == [job_id]


def test_a_forward_step_runs_waiting_jobs_early_and_nothing_else(
    store: SqliteStorage, fake: FakeClock
) -> None:
    done: list[int] = []
    w = recording_worker(store, "w", done)
    w.beat()
    job_id = add_job(store, "risk:1", retry_in=300)
    assert w.run_once() is True
    fake.step(+300)
    w.beat()
    assert w.run_once() is True and done == [job_id]


# ---- failed outcome writes -------------------------------------------------------------------


def disk_full(*args: Any, **kwargs: Any) -> bool:
    raise sqlite3.OperationalError("database or disk is full")


def test_a_job_whose_outcome_cannot_be_written_is_taken_up_again(
    store: SqliteStorage, fake: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    done: list[int] = []
    w = recording_worker(store, "w", done)
    w.beat()
    job_id = add_job(store, "risk:1", retry_in=1)
    monkeypatch.setattr(store, "retry_job_later", disk_full)

    assert w.run_once() is True  # never raises out of the job thread
    assert job_row(store, job_id)["state"] == "running"
    assert w.held() == []  # given up: no longer renewed
    renewals = job_row(store, job_id)["lease_renewals"]
    fake.advance(10)
    w.beat()
    assert job_row(store, job_id)["lease_renewals"] == renewals

    monkeypatch.undo()  # the disk has room again
    fake.advance(JOB_LEASE_SECONDS)
    w.beat()
    assert w.run_once() is True
    row = job_row(store, job_id)
    assert row["state"] == "done" and done == [job_id] and row["attempts"] == 2


def test_an_outcome_write_that_fails_for_a_moment_is_retried(
    store: SqliteStorage, fake: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = Worker(
        store=store,
        handlers={"callback": lambda job: (_ for _ in ()).throw(RuntimeError("boom"))},
        worker_id="w",
    )
    job_id = add_job(store, "risk:1")
    real = store.retry_job_later
    failures = iter([DatabaseBusy("locked"), sqlite3.OperationalError("disk I/O error")])

    def flaky(*args: Any, **kwargs: Any) -> bool:
        error = next(failures, None)
        if error is not None:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "retry_job_later", flaky)
    assert w.run_once() is True
    row = job_row(store, job_id)
    assert row["state"] == "pending" and "boom" in row["last_error"]


def test_a_completion_that_fails_for_a_moment_still_completes(
    store: SqliteStorage, fake: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    done: list[int] = []
    w = recording_worker(store, "w", done)
    job_id = add_job(store, "risk:1")
    real = store.complete_job
    calls: list[int] = []

    def once(job: Job) -> bool:
        calls.append(job.id)
        if len(calls) == 1:
            raise sqlite3.OperationalError("database or disk is full")
        return real(job)

    monkeypatch.setattr(store, "complete_job", once)
    assert w.run_once() is True
    assert job_row(store, job_id)["state"] == "done" and len(calls) == 2


# ---- bounded retries -------------------------------------------------------------------------


def test_an_item_that_cannot_be_applied_fails_after_the_bound_and_holds_only_its_lane(
    tmp_path: Path, fake: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path)
    app = create_app(settings)
    store: SqliteStorage = app.extensions["adowh"].store
    client: FlaskClient = app.test_client()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    known = {"value": False}
    pauses = [
        OrganizationPaused(0.0),
        AdoRateLimited("slow down", retry_after=1.0),
        DatabaseBusy("database is locked"),
        sqlite3.OperationalError("database or disk is full"),
        RetryLater("waiting for the organization", delay=1.0, count_attempt=False),
    ]
    paused: list[int] = []
    done: list[int] = []

    def apply(job: Job) -> None:
        if job.payload["what"] == "odd" and not known["value"]:
            raise RetryLater("state 'Triage' of Bug has no known category yet")
        if job.payload["what"] == "paused" and len(paused) < 3 * MAX_ATTEMPTS:
            paused.append(job.id)
            error = pauses[len(paused) % len(pauses)]
            if isinstance(error, OrganizationPaused):
                error.until_ts = clock.now() + 1
            raise error
        done.append(job.id)

    w = Worker(
        store=store,
        handlers={"apply": apply},
        worker_id="w",
        policy=RetryPolicy(base=1.0, cap=10.0),
    )
    odd = add_job(store, "risk:1", "apply", what="odd")
    after_odd = add_job(store, "risk:1", "apply", what="after")
    waiting = add_job(store, "risk:2", "apply", what="paused")
    others: list[int] = []
    for _ in range(6 * MAX_ATTEMPTS):
        others.append(add_job(store, "risk:3", "apply", what="other"))
        while w.run_once():
            pass
        fake.advance(11)
        if job_row(store, odd)["state"] == "failed" and job_row(store, waiting)["state"] == "done":
            break

    odd_row = job_row(store, odd)
    assert odd_row["state"] == "failed" and odd_row["attempts"] == MAX_ATTEMPTS
    assert "no known category" in odd_row["last_error"]
    assert job_row(store, after_odd)["state"] == "pending"  # its risk's later work waits
    assert set(others) <= set(done)  # other risks went on meanwhile
    assert job_row(store, waiting)["state"] == "done" and len(paused) == 3 * MAX_ATTEMPTS

    listed = client.get("/admin/jobs", query_string={"state": "failed"}, headers=admin)
    assert [j["id"] for j in listed.get_json()["items"]] == [odd]
    assert "no known category" in listed.get_json()["items"][0]["last_error"]

    known["value"] = True  # the type's states can be read now; a person retries
    retried = client.post(f"/admin/jobs/{odd}/retry", headers=admin)
    assert retried.status_code == 200 and retried.get_json()["state"] == "pending"
    while w.run_once():
        pass
    assert done[-2:] == [odd, after_odd]  # in order
    app.extensions["adowh"].store.db.close()


def test_a_failing_batch_job_also_fails_after_the_bound(
    store: SqliteStorage, fake: FakeClock
) -> None:
    def batch(jobs: list[Job]) -> dict[int, Exception]:
        store.apply_hook_changes([(j, None) for j in jobs if j.payload["what"] != "odd"])
        return {
            j.id: RetryLater("state 'Triage' has no known category yet", delay=60)
            for j in jobs
            if j.payload["what"] == "odd"
        }

    w = Worker(store=store, handlers={}, batch_handlers={"apply_hook_event": batch})
    odd = add_job(store, "wi:1:1", "apply_hook_event", what="odd")
    fine = add_job(store, "wi:1:2", "apply_hook_event", what="fine")
    for _ in range(3 * MAX_ATTEMPTS):
        w.run_once()
        fake.advance(61)
    assert job_row(store, fine)["state"] == "done"
    row = job_row(store, odd)
    assert row["state"] == "failed" and "no known category" in row["last_error"]


# ---- schema ------------------------------------------------------------------------------


def test_an_older_database_gains_fencing_tokens(tmp_path: Path, fake: FakeClock) -> None:
    services = make_services(tmp_path)
    db = services.store.db
    conn = db.conn
    conn.executescript(
        "DROP INDEX jobs_lane_held;"
        "ALTER TABLE jobs DROP COLUMN claim_token;"
        "ALTER TABLE jobs DROP COLUMN lease_renewals;"
        "CREATE INDEX jobs_lane_open ON jobs(lane, id) WHERE state IN ('pending','running');"
        # Migration 4's columns go too: this database is at version 2.
        "ALTER TABLE risks DROP COLUMN item_hash;"
        "ALTER TABLE work_items DROP COLUMN title;"
        "ALTER TABLE work_items DROP COLUMN body_hash;"
        "ALTER TABLE risks DROP COLUMN resolution_reason;"
        "INSERT INTO jobs(kind, lane, state, attempts, next_attempt_ts, created_ts, updated_ts)"
        " VALUES ('callback', 'risk:1:x', 'pending', 3, 0, 0, 0);"
        "PRAGMA user_version=2;"
    )
    assert db.migrate() >= 3
    row = conn.execute("SELECT claim_token, lease_renewals FROM jobs").fetchone()
    assert tuple(row) == (3, 0)
    indexes = {r[1] for r in conn.execute("PRAGMA index_list(jobs)")}
    assert "jobs_lane_held" in indexes and "jobs_lane_open" not in indexes
    job = services.store.claim_job("w")
    assert job is not None and job.token == 4 and job.outcome_unknown


def test_work_waiting_on_an_outside_party_is_never_given_up(
    store: SqliteStorage, fake: FakeClock
) -> None:
    """A scanner down for hours: its callback keeps retrying (SPEC 4, "until acknowledged"),
    while a fault of the job itself still fails after MAX_ATTEMPTS."""
    down = {"value": True}

    def apply(job: Job) -> None:
        if down["value"]:
            raise RetryLater("callback answered HTTP 502", bounded=False)

    w = Worker(store=store, handlers={"apply": apply}, worker_id="w", policy=RetryPolicy(1.0, 10.0))
    job_id = add_job(store, "risk:1", "apply", what="callback")
    for _ in range(3 * MAX_ATTEMPTS):
        while w.run_once():
            pass
        fake.advance(11)
    row = job_row(store, job_id)
    assert row["state"] == "pending" and row["attempts"] >= 3 * MAX_ATTEMPTS - 1
    down["value"] = False  # the scanner is back
    fake.advance(11)
    while w.run_once():
        pass
    assert job_row(store, job_id)["state"] == "done"


def test_a_job_finished_during_a_renewal_is_not_reported_as_lost(
    store: SqliteStorage, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The renewal reads the held jobs, then renews them; a job its thread finishes in between
    is no longer renewable but was not taken over: no "lease lost" warning (PostgreSQL's wider
    window made operators see dozens). A job another worker did take over still warns."""
    w = recording_worker(store, "a", [])
    add_job(store, "risk:7")
    finished = store.claim_job("a")
    assert finished is not None
    real_renew = store.renew_leases

    def renew_while_the_thread_finishes(owner: str, held: Any, **kw: Any) -> set[int]:
        assert store.complete_job(finished)
        w._held.pop(finished.id, None)  # what _holding does when the handler returns
        return real_renew(owner, held, **kw)

    monkeypatch.setattr(store, "renew_leases", renew_while_the_thread_finishes)
    w._held[finished.id] = finished
    with caplog.at_level("WARNING", logger="webhook.worker"):
        w._renew()
    assert "lease lost" not in caplog.text

    monkeypatch.setattr(store, "renew_leases", real_renew)
    add_job(store, "risk:8")
    taken = store.claim_job("a")
    assert taken is not None
    w._held[taken.id] = taken
    seen = store.running_leases()
    clock.sleep(JOB_LEASE_SECONDS + 1)  # the fake clock: b saw the lease unchanged that long
    assert store.claim_job("b", stale=tuple(seen)) is not None  # b takes it over
    with caplog.at_level("WARNING", logger="webhook.worker"):
        w._renew()
    assert f"job {taken.id} (callback): lease lost to another claim" in caplog.text
