"""The database never lies and never makes a request wait without bound.

A locked database answers 503 with Retry-After within the wait budget, on every route that
writes; a full disk is 503 (nothing stored, retry), not 500; a database file removed or replaced
while the service runs stops acknowledging writes; /readyz tests what it reports with a real
write; the files are owner-only.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Scanner, hook_record, risk, signed_headers
from tests.test_scanner_webhook import _chunked
from webhook import create_app
from webhook.crypto import hash_password
from webhook.settings import Settings
from webhook.storage.sqlite.database import Database

WAIT = 0.3  # the wait budget of these tests' database, in seconds
HOOK_USER, HOOK_PASSWORD = "adowh-guard", "guard-password-0123456789"


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    application = create_app(settings)
    db = application.extensions["adowh"].store.db
    db.busy_timeout = WAIT
    db.close()  # this thread's next connection gets the short SQLite busy timeout too
    yield application
    db.close()


@dataclass
class Ctx:
    app: Flask
    client: FlaskClient
    admin: dict[str, str]
    scanner: Scanner
    db: Database

    def readyz(self) -> Any:
        return self.client.get("/readyz")


@pytest.fixture
def ctx(app: Flask, client: FlaskClient, admin: dict[str, str], scanner: Scanner) -> Ctx:
    store = app.extensions["adowh"].store
    connection = store.create_connection(
        "guard", "https://dev.azure.com/guard", {"type": "pat", "token": "p" * 52}
    )
    store.save_hook(
        **hook_record(
            connection.id,
            project="P",
            project_id="p-1",
            subscription_id="sub-1",
            username=HOOK_USER,
            password_hash=hash_password(HOOK_PASSWORD),
        )
    )
    store.heartbeat("guard-worker", os.getpid(), "test")  # so /readyz depends on the database
    return Ctx(app, client, admin, scanner, store.db)


@dataclass(frozen=True)
class Route:
    """A route that writes: how to send `key` to it, and whether `key` was stored."""

    name: str
    send: Callable[[Ctx, str], Any]
    stored: Callable[[Ctx, str], bool]
    accepted: int


def _scanner_body(key: str) -> bytes:
    # Large enough that a few deliveries need a new database page.
    return json.dumps({"risk": risk(key, evidence="e" * 3000)}).encode()


def _send_fast(ctx: Ctx, key: str) -> Any:
    body = _scanner_body(key)
    headers = signed_headers(ctx.scanner.secret, body, msg_id=f"msg-{key}")
    return ctx.client.post("/webhooks/risks/sast", data=body, headers=headers)


def _send_flask(ctx: Ctx, key: str) -> Any:
    body = _scanner_body(key)
    headers = signed_headers(ctx.scanner.secret, body, msg_id=f"msg-{key}")
    return _chunked(ctx.client, "/webhooks/risks/sast", body, headers)


def _risk_stored(ctx: Ctx, key: str) -> bool:
    with sqlite3.connect(ctx.db.path) as conn:
        return conn.execute("SELECT 1 FROM risks WHERE key=?", (key,)).fetchone() is not None


def _send_source(ctx: Ctx, key: str) -> Any:
    return ctx.client.post("/admin/sources", json={"name": f"src-{key}"}, headers=ctx.admin)


def _source_stored(ctx: Ctx, key: str) -> bool:
    with sqlite3.connect(ctx.db.path) as conn:
        found = conn.execute("SELECT 1 FROM sources WHERE name=?", (f"src-{key}",)).fetchone()
        return found is not None


def _send_hook(ctx: Ctx, key: str) -> Any:
    delivery = {
        "id": f"evt-{key}",
        "eventType": "workitem.updated",
        "publisherId": "tfs",
        "subscriptionId": "sub-1",
        "resource": {
            "workItemId": 7,
            "rev": 2,
            "revision": {"id": 7, "rev": 2, "fields": {"System.TeamProject": "P"}},
        },
    }
    return ctx.client.post("/hooks/ado", json=delivery, auth=(HOOK_USER, HOOK_PASSWORD))


def _hook_stored(ctx: Ctx, key: str) -> bool:
    with sqlite3.connect(ctx.db.path) as conn:
        found = conn.execute("SELECT 1 FROM hook_events WHERE event_id=?", (f"evt-{key}",))
        return found.fetchone() is not None


ROUTES = [
    Route("scanner-fast-door", _send_fast, _risk_stored, 202),
    Route("scanner-flask-door", _send_flask, _risk_stored, 202),
    Route("admin", _send_source, _source_stored, 201),
    Route("ado-hooks", _send_hook, _hook_stored, 200),
]


def assert_try_later(resp: Any, reason: str) -> None:
    assert resp.status_code == 503, resp.get_data(as_text=True)
    assert int(resp.headers["Retry-After"]) > 0
    assert resp.get_json()["error"]["code"] == "unavailable"
    if "reason" in resp.get_json()["error"]["details"]:  # /hooks/ado says less
        assert resp.get_json()["error"]["details"]["reason"] == reason


@contextmanager
def writer_lock_held(db: Database, holder: str) -> Iterator[None]:
    """The database locked by someone else: the writers' flock (as another process of ours
    holds it, here through a second descriptor) or SQLite's own lock (a writer ignoring ours)."""
    if holder == "flock":
        fd = os.open(str(db.path) + ".writer-lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
    else:
        other = sqlite3.connect(db.path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()


def answer_while_locked(db: Database, holder: str, call: Callable[[], Any]) -> Any:
    """`call()`'s answer, made in another thread while the database is locked; fails if it is
    still waiting long after the wait budget (rather than hanging the test)."""
    answer: list[Any] = []
    thread = threading.Thread(target=lambda: answer.append(call()), daemon=True)
    with writer_lock_held(db, holder):
        thread.start()
        thread.join(timeout=WAIT * 30)
        still_waiting = thread.is_alive()
    thread.join(timeout=30)
    assert not still_waiting, "the request kept waiting for the locked database"
    return answer[0]


@pytest.mark.parametrize("holder", ["flock", "sqlite"])
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_a_locked_database_is_503_with_retry_after_and_nothing_stored(
    ctx: Ctx, route: Route, holder: str
) -> None:
    resp = answer_while_locked(ctx.db, holder, lambda: route.send(ctx, "L-1"))
    assert_try_later(resp, "busy")
    assert not route.stored(ctx, "L-1")
    again = route.send(ctx, "L-1")  # the sender's retry, once the lock is free
    assert again.status_code == route.accepted
    assert again.headers.get("X-Replayed") is None
    assert route.stored(ctx, "L-1")


@pytest.mark.parametrize("holder", ["flock", "sqlite"])
def test_readyz_answers_503_busy_while_the_database_is_locked(ctx: Ctx, holder: str) -> None:
    assert ctx.readyz().status_code == 200
    resp = answer_while_locked(ctx.db, holder, ctx.readyz)
    assert resp.status_code == 503
    assert resp.get_json()["checks"]["database"] == "error: busy"
    assert ctx.client.get("/healthz").status_code == 200


def test_callers_queued_behind_a_locked_database_all_get_busy(ctx: Ctx) -> None:
    """Group commit: the leader and the callers queued behind it each give up in time."""
    answers: list[Any] = []
    threads = [
        threading.Thread(target=lambda n=n: answers.append(_send_fast(ctx, f"Q-{n}")), daemon=True)
        for n in range(4)
    ]
    with writer_lock_held(ctx.db, "flock"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=WAIT * 30)
        still_waiting = [t for t in threads if t.is_alive()]
    for thread in threads:
        thread.join(timeout=30)
    assert not still_waiting
    assert [a.status_code for a in answers] == [503] * 4
    assert not any(_risk_stored(ctx, f"Q-{n}") for n in range(4))


def _fill(ctx: Ctx) -> None:
    """Cap the database at its current size, as a full disk would (SQLITE_FULL)."""
    conn = ctx.db.conn  # the test client runs requests on this thread's connection
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")


def _unfill(ctx: Ctx) -> None:
    ctx.db.conn.execute("PRAGMA max_page_count=1073741823")


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_a_full_disk_is_503_with_retry_after_and_nothing_stored(ctx: Ctx, route: Route) -> None:
    assert ctx.readyz().status_code == 200
    _fill(ctx)
    accepted = 0
    for n in range(1000):  # write until the database has no room left
        resp = route.send(ctx, f"F-{n}")
        if resp.status_code != route.accepted:
            break
        accepted += 1
    assert_try_later(resp, "disk full")
    assert not route.stored(ctx, f"F-{accepted}")
    assert all(route.stored(ctx, f"F-{n}") for n in range(accepted))
    ready = ctx.readyz()
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["database"] == "error: disk full"

    _unfill(ctx)  # space freed: the sender's retry is stored, as new
    again = route.send(ctx, f"F-{accepted}")
    assert again.status_code == route.accepted
    assert again.headers.get("X-Replayed") is None
    assert ctx.readyz().status_code == 200


def test_readyz_reports_a_full_disk_before_any_request_fails(ctx: Ctx) -> None:
    """The readiness check writes for real; opening a transaction alone would pass."""
    assert ctx.readyz().status_code == 200
    _fill(ctx)
    resp = ctx.readyz()
    assert resp.status_code == 503
    assert resp.get_json()["checks"]["database"] == "error: disk full"


def _replace_with_copy(path: Path) -> None:
    copy = path.with_name("copy.db")
    with sqlite3.connect(path) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    os.replace(copy, path)


def _remove(path: Path, *suffixes: str) -> None:
    for suffix in ("", *suffixes):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


GONE = {
    "unlinked": lambda path: _remove(path),
    "unlinked-with-wal-and-shm": lambda path: _remove(path, "-wal", "-shm"),
    "replaced": _replace_with_copy,
}
GONE_REASON = "database file removed or replaced; restart the service"


@pytest.mark.parametrize("how", list(GONE))
def test_a_database_file_removed_while_running_acknowledges_nothing(
    ctx: Ctx, settings: Settings, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert _send_fast(ctx, "G-1").status_code == 202
    GONE[how](settings.db_path)
    with caplog.at_level(logging.ERROR, logger="webhook.db"):
        fast, flask, source, hook = (r.send(ctx, "G-2") for r in ROUTES)
        ready = ctx.readyz()
    for resp in (fast, flask, source):
        assert_try_later(resp, GONE_REASON)
    assert hook.status_code == 503 and hook.headers["Retry-After"]
    # The same answer however often a monitor asks (it read `checks`, then got an envelope).
    for again in (ready, ctx.readyz(), ctx.readyz()):
        assert again.status_code == 503 and again.headers["Retry-After"] == "30"
        assert again.get_json()["checks"]["database"] == f"error: {GONE_REASON}"
    logged = [r for r in caplog.records if "removed or replaced" in r.getMessage()]
    assert len(logged) == 1  # once, not per request
    if how.startswith("unlinked"):
        assert not settings.db_path.exists()  # no new empty database in its place
    else:
        with sqlite3.connect(settings.db_path) as conn:
            keys = {k for (k,) in conn.execute("SELECT key FROM risks")}
        assert keys == {"G-1"}  # what a restarted service will see: G-2 was never acknowledged


@pytest.mark.parametrize("how", list(GONE))
def test_reads_stop_answering_from_a_removed_database(
    ctx: Ctx, settings: Settings, how: str
) -> None:
    """Admin lists read on the thread that already has a connection: no stale answers."""
    assert ctx.client.get("/admin/risks", headers=ctx.admin).status_code == 200
    GONE[how](settings.db_path)
    for path in ("/admin/risks", "/admin/jobs", "/admin/sources"):
        assert_try_later(ctx.client.get(path, headers=ctx.admin), GONE_REASON)


def test_a_new_thread_does_not_open_the_file_that_replaced_the_database(
    ctx: Ctx, settings: Settings
) -> None:
    _replace_with_copy(settings.db_path)
    # The first request after the swap comes on a thread with no connection yet: a read.
    answer: list[Any] = []
    thread = threading.Thread(
        target=lambda: answer.append(ctx.client.get("/admin/sources", headers=ctx.admin))
    )
    thread.start()
    thread.join(timeout=30)
    assert_try_later(answer[0], GONE_REASON)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_database_files_and_new_folders_are_owner_only(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        db = Database(tmp_path / "var" / "data" / "webhook.db")
        db.migrate()
        with db.write() as conn:
            conn.execute("INSERT INTO meta(key, value) VALUES ('k', 'v')")
        files = [db.path, Path(f"{db.path}-wal"), Path(f"{db.path}-shm")]
        files.append(Path(f"{db.path}.writer-lock"))
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert _mode(tmp_path / "var") == 0o700
        assert _mode(tmp_path / "var" / "data") == 0o700
        db.close()
    finally:
        os.umask(previous)


def test_an_existing_world_readable_database_is_made_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    sqlite3.connect(path).close()
    os.chmod(path, 0o644)
    db = Database(path)
    db.migrate()
    assert _mode(path) == 0o600
    assert _mode(tmp_path) == stat.S_IMODE(os.stat(tmp_path).st_mode)  # folders left alone
    db.close()
