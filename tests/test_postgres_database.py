"""The PostgreSQL engine's database layer: parameter translation, transactions and savepoints,
the pool across fork, migrations under concurrency, errors that name the database without its
password, the server clock, LISTEN/NOTIFY wake-ups.

Needs a server: WEBHOOK_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres (the
sqltext tests run without one).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from contextlib import suppress

import psycopg
import pytest

from tests.pg import fresh_database, fresh_database_fixture, require_postgres
from webhook.migrations import MIGRATIONS, SCHEMA_VERSION
from webhook.storage.errors import StorageBusy, StorageUnusable, storage_unavailable
from webhook.storage.postgres.database import (
    PgBusy,
    PgDatabase,
    PgUnavailable,
    PgUnusable,
    TransactionAborted,
)
from webhook.storage.postgres.migrate import migrate, table_names
from webhook.storage.postgres.notify import Listener
from webhook.storage.postgres.sqltext import to_psycopg

pg_url = fresh_database_fixture("webhook_pgdb")


@pytest.fixture(scope="module")
def migrated(pg_url: str) -> str:
    assert migrate(pg_url) == SCHEMA_VERSION
    return pg_url


@pytest.fixture
def db(migrated: str) -> Iterator[PgDatabase]:
    database = PgDatabase(migrated, busy_timeout=2.0)
    database.conn.execute("DELETE FROM meta WHERE key LIKE 't:%'")
    yield database
    database.close()


def meta(db: PgDatabase, key: str) -> str | None:
    row = db.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return None if row is None else str(row["value"])


# ---- sqltext ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shared", "psycopg_style"),
    [
        (
            "SELECT * FROM jobs WHERE id=? AND state=?",
            "SELECT * FROM jobs WHERE id=%s AND state=%s",
        ),
        (
            "UPDATE jobs SET lease_owner=:owner WHERE id=:id",
            "UPDATE jobs SET lease_owner=%(owner)s WHERE id=%(id)s",
        ),
        # Quoted text keeps its ? and :name; only % is doubled, everywhere.
        ("SELECT 'a?b :c 50%' || ?", "SELECT 'a?b :c 50%%' || %s"),
        ("SELECT 'it''s ?', ?", "SELECT 'it''s ?', %s"),
        ('SELECT "odd?name" FROM t WHERE x = ?', 'SELECT "odd?name" FROM t WHERE x = %s'),
        ("SELECT x % 2, y::text, z::float8 FROM t", "SELECT x %% 2, y::text, z::float8 FROM t"),
        ("SELECT 1 -- why? :no\nWHERE a=?", "SELECT 1 -- why? :no\nWHERE a=%s"),
        ("SELECT /* ? :x */ ?", "SELECT /* ? :x */ %s"),
        ("SELECT '{}'::json, ?::int", "SELECT '{}'::json, %s::int"),
    ],
)
def test_sqltext_translates_the_shared_parameter_style(shared: str, psycopg_style: str) -> None:
    assert to_psycopg(shared) == psycopg_style


def test_sqltext_refuses_mixed_styles_and_caches() -> None:
    with pytest.raises(ValueError, match="mixes"):
        to_psycopg("SELECT ?, :name")
    text = "SELECT ? AS cached_probe"
    assert to_psycopg(text) is to_psycopg(text)


def test_translated_sql_runs_on_the_server(db: PgDatabase) -> None:
    row = db.conn.execute(
        "SELECT :a::int + 1 AS n, '50%' AS pct, 7 % 4 AS m, ':b?' AS lit", {"a": 41}
    ).fetchone()
    assert dict(row) == {"n": 42, "pct": "50%", "m": 3, "lit": ":b?"}


# ---- rows and types -----------------------------------------------------------------------


def test_rows_read_like_sqlite_rows_and_bools_bind_as_integers(db: PgDatabase) -> None:
    row = db.conn.execute(
        "SELECT ? AS yes, ? AS no, sum(x) AS total, avg(x) AS mean"
        " FROM (VALUES (1::bigint), (2)) AS v(x)",
        (True, False),
    ).fetchone()
    assert row[0] == 1 and row["no"] == 0 and row["TOTAL"] == 3
    assert isinstance(row["total"], int) and row["mean"] == 1.5
    assert row.keys() == ["yes", "no", "total", "mean"]
    assert dict(row) == {"yes": 1, "no": 0, "total": 3, "mean": 1.5}
    assert list(row) == [1, 0, 3, 1.5] and len(row) == 4
    cursor = db.conn.execute("SELECT n FROM generate_series(1, 3) AS n")
    assert cursor.fetchone()["n"] == 1
    assert [r[0] for r in cursor] == [2, 3]
    assert cursor.fetchone() is None


# ---- transactions -------------------------------------------------------------------------


def test_write_commits_and_rolls_back_on_error(db: PgDatabase) -> None:
    with db.write() as conn:
        conn.execute("INSERT INTO meta(key, value) VALUES ('t:kept', 'yes')")
    with pytest.raises(RuntimeError, match="boom"), db.write() as conn:
        conn.execute("INSERT INTO meta(key, value) VALUES ('t:lost', 'no')")
        raise RuntimeError("boom")
    assert meta(db, "t:kept") == "yes"
    assert meta(db, "t:lost") is None


def test_executemany_counts_rows_in_and_out_of_transactions(db: PgDatabase) -> None:
    rows = [(f"t:many{i}", str(i)) for i in range(5)]
    with db.write() as conn:
        cursor = conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", rows[:3])
        assert cursor.rowcount == 3
    assert db.conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", rows[3:]).rowcount == 2
    assert db.conn.execute("SELECT count(*) FROM meta WHERE key LIKE 't:many%'").fetchone()[0] == 5


def test_uncommitted_writes_are_seen_only_by_their_own_thread(db: PgDatabase) -> None:
    seen: list[str | None] = []
    with db.write() as conn:
        conn.execute("INSERT INTO meta(key, value) VALUES ('t:pending', 'x')")
        assert meta(db, "t:pending") == "x"  # db.conn joins this thread's transaction
        other = threading.Thread(target=lambda: seen.append(meta(db, "t:pending")))
        other.start()
        other.join()
    assert seen == [None]
    assert meta(db, "t:pending") == "x"


def test_unit_savepoint_error_rolls_back_only_its_part(db: PgDatabase) -> None:
    with db.unit() as conn:
        conn.execute("INSERT INTO meta(key, value) VALUES ('t:outer', '1')")
        with pytest.raises(db.integrity_errors), db.write() as part:
            part.execute("INSERT INTO meta(key, value) VALUES ('t:inner', '2')")
            part.execute("INSERT INTO meta(key, value) VALUES ('t:outer', 'duplicate')")
        with db.write() as part:  # the unit goes on after its part failed
            part.execute("INSERT INTO meta(key, value) VALUES ('t:after', '3')")
        with db.unit() as nested, db.read() as reader:
            assert nested is conn and reader is conn
            assert meta(db, "t:after") == "3"
    assert (meta(db, "t:outer"), meta(db, "t:inner"), meta(db, "t:after")) == ("1", None, "3")


def test_unit_error_rolls_back_every_part(db: PgDatabase) -> None:
    with pytest.raises(KeyError), db.unit():
        with db.write() as conn:
            conn.execute("INSERT INTO meta(key, value) VALUES ('t:part', '1')")
        db.write_grouped(
            lambda c: c.execute("INSERT INTO meta(key, value) VALUES ('t:grouped', '2')")
        )
        raise KeyError("late")
    assert meta(db, "t:part") is None and meta(db, "t:grouped") is None


def test_a_failed_statement_cannot_be_committed_silently(db: PgDatabase) -> None:
    db.conn.execute("INSERT INTO meta(key, value) VALUES ('t:dup', '0')")
    with pytest.raises(TransactionAborted), db.write() as conn:
        conn.execute("INSERT INTO meta(key, value) VALUES ('t:before', '1')")
        # SQLite would go on after this; PostgreSQL has aborted the whole transaction.
        with suppress(*db.integrity_errors):
            conn.execute("INSERT INTO meta(key, value) VALUES ('t:dup', '1')")
    assert meta(db, "t:before") is None


def test_integrity_errors_come_out_as_integrity_errors(db: PgDatabase) -> None:
    db.conn.execute("INSERT INTO meta(key, value) VALUES ('t:unique', '1')")
    with pytest.raises(db.integrity_errors):
        db.conn.execute("INSERT INTO meta(key, value) VALUES ('t:unique', '2')")
    with pytest.raises(db.integrity_errors), db.write() as conn:
        conn.execute("INSERT INTO meta(key, value) VALUES ('t:unique', '3')")
    assert meta(db, "t:unique") == "1"
    assert storage_unavailable(psycopg.errors.UniqueViolation()) is None


def test_read_is_a_snapshot_and_refuses_writes(db: PgDatabase) -> None:
    with db.read() as conn:
        before = conn.execute("SELECT count(*) FROM meta").fetchone()[0]
        threading.Thread(
            target=lambda: db.conn.execute("INSERT INTO meta(key, value) VALUES ('t:new', '1')")
        ).start()
        time.sleep(0.3)
        assert conn.execute("SELECT count(*) FROM meta").fetchone()[0] == before
        with pytest.raises(RuntimeError, match=r"write\(\) inside read\(\)"), db.write():
            pass
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), db.read() as conn:
        conn.execute("DELETE FROM meta")
    assert meta(db, "t:new") == "1"


def test_check_room_writes_for_real_and_leaves_nothing(db: PgDatabase) -> None:
    with db.write() as conn:
        db.check_room(conn, 64 * 1024)
        conn.execute("INSERT INTO meta(key, value) VALUES ('t:room', 'after the probe')")
    assert meta(db, "room_probe") is None
    assert meta(db, "t:room") == "after the probe"
    assert db.checkpoint() == (0, 0)


# ---- waits --------------------------------------------------------------------------------


def test_an_exhausted_pool_answers_busy_within_the_budget(migrated: str) -> None:
    small = PgDatabase(migrated, busy_timeout=0.3, max_size=1)
    errors: list[BaseException] = []

    def other() -> None:
        try:
            small.conn.execute("SELECT 1")
        except BaseException as exc:
            errors.append(exc)

    try:
        with small.write():
            started = time.monotonic()
            thread = threading.Thread(target=other)
            thread.start()
            thread.join()
            waited = time.monotonic() - started
    finally:
        small.close()
    assert len(errors) == 1 and isinstance(errors[0], PgBusy)
    assert isinstance(errors[0], StorageBusy) and errors[0].retry_after == 1
    assert 0.25 <= waited < 2.0


def test_a_lock_held_past_the_budget_answers_busy(db: PgDatabase, migrated: str) -> None:
    db.conn.execute("INSERT INTO meta(key, value) VALUES ('t:locked', '0')")
    impatient = PgDatabase(migrated, busy_timeout=0.3)
    try:
        with db.write() as conn:
            conn.execute("UPDATE meta SET value='1' WHERE key='t:locked'")
            with pytest.raises(PgBusy), impatient.write() as other:
                other.execute("UPDATE meta SET value='2' WHERE key='t:locked'")
    finally:
        impatient.close()
    assert meta(db, "t:locked") == "1"


# ---- fork ---------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_opens_its_own_pool_and_leaves_the_parents_alone(db: PgDatabase) -> None:
    sessions = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'ado-webhook'"
    )
    with db.write() as conn:  # every pooled connection of the parent, busy or not
        parent_sessions = {r[0] for r in conn.execute(sessions)}
        conn.execute("INSERT INTO meta(key, value) VALUES ('t:parent', 'before the fork')")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(read)
            backend = db.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            with db.write() as conn:
                conn.execute("INSERT INTO meta(key, value) VALUES ('t:child', ?)", (str(backend),))
            db.close()
            gc.collect()  # frees what the child inherited: must not end the parent's sessions
            os.write(write, str(backend).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child_backend = int(os.read(read, 100) or b"0")
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_backend not in {0, *parent_sessions}
    assert meta(db, "t:child") == str(child_backend)
    # The parent's sessions all outlived the child, which freed its copies of them.
    assert parent_sessions <= {r[0] for r in db.conn.execute(sessions)}
    assert meta(db, "t:parent") == "before the fork"


# ---- migrations ---------------------------------------------------------------------------


def _schema_snapshot(url: str) -> list[tuple[str, ...]]:
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema='public' ORDER BY 1, 2"
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname='public' ORDER BY 1"
        ).fetchall()
    return [*columns, *indexes]


def test_migrate_creates_the_newest_schema_and_is_idempotent() -> None:
    with fresh_database("webhook_pgmig") as url:
        assert migrate(url) == SCHEMA_VERSION
        first = _schema_snapshot(url)
        assert migrate(url) == SCHEMA_VERSION
        assert _schema_snapshot(url) == first
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT version FROM schema_version").fetchall() == [
                (SCHEMA_VERSION,)
            ]
            opened = conn.execute("SELECT value FROM meta WHERE key='opened_at'").fetchone()
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables")}
    assert opened is not None
    assert set(table_names()) <= tables
    # No float4 anywhere: REAL would lose the seconds of a unix time.
    assert not [c for c in first if len(c) == 3 and c[2] == "real"]
    assert ("jobs", "next_attempt_ts", "double precision") in first
    partial = [c for c in first if c[0] == "jobs_lane_held"]
    assert partial and "WHERE" in partial[0][1]


def _migrate_in_child(url: str, start: threading.Event) -> int:
    start.wait(10)
    return migrate(url)


def test_nodes_starting_at_once_migrate_once() -> None:
    with fresh_database("webhook_pgrace") as url:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Manager() as manager:
            start = manager.Event()
            with ctx.Pool(4) as workers:
                pending = [workers.apply_async(_migrate_in_child, (url, start)) for _ in range(4)]
                time.sleep(0.5)
                start.set()
                versions = [p.get(timeout=60) for p in pending]
        assert versions == [SCHEMA_VERSION] * 4
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT version FROM schema_version").fetchall() == [
                (SCHEMA_VERSION,)
            ]
            counted = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname='public'"
            ).fetchone()
        assert counted == (len(table_names()),)


def test_pending_postgres_migrations_apply_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from webhook import migrations
    from webhook.storage.postgres import migrate as pg_migrate

    with fresh_database("webhook_pgstep") as url:
        assert migrate(url) == SCHEMA_VERSION
        extra = migrations.Migration(
            SCHEMA_VERSION + 1,
            "test: a column added later",
            sqlite=(),
            postgres=("ALTER TABLE meta ADD COLUMN note TEXT",),
        )
        monkeypatch.setattr(pg_migrate, "MIGRATIONS", (*MIGRATIONS, extra))
        monkeypatch.setattr(pg_migrate, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
        assert migrate(url) == SCHEMA_VERSION + 1
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT version FROM schema_version").fetchone() == (
                SCHEMA_VERSION + 1,
            )
            assert conn.execute("SELECT note FROM meta LIMIT 1").description is not None


def test_a_newer_schema_is_refused_with_one_line_without_the_password() -> None:
    with fresh_database("webhook_pgnewer") as url:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 5,))
        # trust authentication ignores the password: it must still never be shown
        secret_url = url.replace("postgres@", "postgres:hunter2secret@", 1)
        with pytest.raises(StorageUnusable) as caught:
            migrate(secret_url)
    message = str(caught.value)
    assert "\n" not in message and "hunter2secret" not in message
    assert f"schema version {SCHEMA_VERSION + 5} is newer" in message
    assert f"({SCHEMA_VERSION})" in message and "postgres:***@" in message


def test_foreign_tables_are_not_taken_over() -> None:
    with fresh_database("webhook_pgforeign") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE jobs (id int)")
        with pytest.raises(PgUnusable, match=r"did not create \(jobs\)"):
            migrate(url)


def test_an_unreachable_server_gives_one_clear_line_without_the_password() -> None:
    url = "postgresql://someone:hunter2secret@127.0.0.1:1/nowhere"
    with pytest.raises(StorageUnusable) as caught:
        migrate(url)
    message = str(caught.value)
    assert message == (
        "database postgresql://someone:***@127.0.0.1:1/nowhere: cannot connect: connection "
        "refused (is PostgreSQL running there and accepting TCP connections?)"
    )
    db = PgDatabase(url, busy_timeout=1.0)
    try:
        with pytest.raises(PgUnavailable) as during:
            db.conn.execute("SELECT 1")
    finally:
        db.close()
    found = storage_unavailable(during.value)
    assert found is during.value and not isinstance(found, PgBusy)
    assert "connection refused" in str(found) and "hunter2secret" not in str(found)


def test_a_missing_database_is_named() -> None:
    server = require_postgres()
    url = server.rsplit("/", 1)[0] + "/webhook_pg_no_such_db"
    with pytest.raises(PgUnusable, match=r'database "webhook_pg_no_such_db" does not exist'):
        migrate(url)


# ---- clock and notifications --------------------------------------------------------------


def test_now_is_the_servers_clock(db: PgDatabase) -> None:
    for _ in range(3):
        mine = db.now()
        t0 = time.monotonic()
        server = db.conn.execute(f"SELECT {db.now_sql} AS now").fetchone()["now"]
        elapsed = time.monotonic() - t0
        assert abs(server - mine) < 0.05 + elapsed
    assert db.clock_uncertainty < 0.05


def test_listener_wakes_after_commit_and_not_before(db: PgDatabase, migrated: str) -> None:
    listener = Listener(migrated, "webhook_test_jobs")
    try:
        assert listener.wait(0.1) is True  # just connected: the caller must look once
        assert listener.wait(0.2) is False
        commit: list[float] = []  # when the COMMIT was sent, and when it returned

        def writer() -> None:
            with db.write() as conn:
                conn.execute("SELECT pg_notify('webhook_test_jobs', '')")
                time.sleep(0.6)  # sent but not committed: nothing may arrive yet
                commit.append(time.monotonic())
            commit.append(time.monotonic())

        thread = threading.Thread(target=writer)
        thread.start()
        woke = listener.wait(5.0)
        at = time.monotonic()
        thread.join()
        assert woke and len(commit) == 2
        assert commit[0] <= at < commit[1] + 1.0
        # a rolled-back notification is never delivered
        with pytest.raises(ZeroDivisionError), db.write() as conn:
            conn.execute("SELECT pg_notify('webhook_test_jobs', '')")
            _ = 1 / 0
        assert listener.wait(0.5) is False
    finally:
        listener.close()


def test_wait_for_jobs_wakes_on_notify_jobs(db: PgDatabase, migrated: str) -> None:
    other = PgDatabase(migrated)
    try:
        db.wait_for_jobs(0.1)  # connects
        started = time.monotonic()
        timer = threading.Timer(0.2, lambda: other.notify_jobs(other.conn))
        timer.start()
        assert db.wait_for_jobs(5.0) is True
        assert time.monotonic() - started < 1.2
        timer.join()
    finally:
        other.close()


def test_listener_reconnects_after_its_connection_is_dropped(migrated: str) -> None:
    listener = Listener(migrated, "webhook_test_drop")
    try:
        listener.wait(0.1)
        with psycopg.connect(migrated, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query LIKE 'LISTEN%webhook_test_drop%' AND pid <> pg_backend_pid()"
            )
        assert listener.wait(2.0) is True  # lost: maybe missed one, so the caller looks
        with psycopg.connect(migrated, autocommit=True) as admin:
            admin.execute("SELECT pg_notify('webhook_test_drop', '')")
        assert listener.wait(2.0) is True
    finally:
        listener.close()


def test_each_notification_wakes_one_waiting_thread(db: PgDatabase, migrated: str) -> None:
    """A worker's idle threads must not all query the database for every commit that
    recorded a job: one notification wakes one of them, two wake two; the rest sleep on."""
    listener = Listener(migrated, "webhook_test_herd")
    try:
        assert listener.wait(0.1) is True  # just connected
        results: list[bool] = []
        mutex = threading.Lock()

        def wait() -> None:
            woke = listener.wait(1.5)
            with mutex:
                results.append(woke)

        threads = [threading.Thread(target=wait) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.3)  # all six waiting
        for _ in range(2):  # two commits, two notifications
            with db.write() as conn:
                conn.execute("SELECT pg_notify('webhook_test_herd', '')")
        for t in threads:
            t.join(timeout=5)
        assert sorted(results) == [False] * 4 + [True] * 2
    finally:
        listener.close()
