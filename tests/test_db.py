"""Group commit: concurrent writers of one process share transactions, each part all or nothing."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from webhook.storage.sqlite.database import Database, DatabaseBusy


class CountingDatabase(Database):
    """Counts write transactions (each one is a commit and an fsync)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.transactions = 0

    @contextmanager
    def write(self, *, deadline: float | None = None) -> Iterator[sqlite3.Connection]:
        with super().write(deadline=deadline) as conn:
            self.transactions += 1
            yield conn


@pytest.fixture
def db(tmp_path: Path) -> CountingDatabase:
    database = CountingDatabase(tmp_path / "g.db")
    database.migrate()
    database.transactions = 0
    return database


def insert(key: str, *, fail: bool = False) -> Callable[[sqlite3.Connection], str]:
    def work(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO meta(key, value) VALUES (?, 'v')", (key,))
        if fail:
            raise ValueError(f"rejected {key}")
        return key

    return work


def keys(db: Database) -> set[str]:
    return {r[0] for r in db.conn.execute("SELECT key FROM meta WHERE key LIKE 'g%'")}


def wait_until(check: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_writers_queued_behind_a_commit_share_the_next_transaction(db: CountingDatabase) -> None:
    outcomes: dict[str, Any] = {}

    def call(key: str, fail: bool = False) -> None:
        try:
            outcomes[key] = db.write_grouped(insert(key, fail=fail))
        except ValueError as exc:
            outcomes[key] = exc

    # Hold the writers' lock as another process would, so the first caller's transaction waits.
    lock_fd = os.open(str(db.path) + ".writer-lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    first = threading.Thread(target=call, args=("g1",))
    first.start()
    wait_until(lambda: db._group.leader_busy and not db._group.waiting)  # g1 took its batch
    later = [
        threading.Thread(target=call, args=("g2",)),
        threading.Thread(target=call, args=("g3", True)),
        threading.Thread(target=call, args=("g4",)),
    ]
    for t in later:
        t.start()
        wait_until(lambda t=t: len(db._group.waiting) == later.index(t) + 1)
    fcntl.flock(lock_fd, fcntl.LOCK_UN)
    os.close(lock_fd)
    for t in (first, *later):
        t.join(timeout=30)

    assert db.transactions == 2  # g1 alone, then g2-g4 together: 2 commits for 4 writers
    assert outcomes["g1"] == "g1" and outcomes["g2"] == "g2" and outcomes["g4"] == "g4"
    assert isinstance(outcomes["g3"], ValueError)  # its own error, and only its part undone
    assert keys(db) == {"g1", "g2", "g4"}


def test_many_concurrent_writers_all_commit_in_fewer_transactions(db: CountingDatabase) -> None:
    def slow_insert(key: str) -> Callable[[sqlite3.Connection], str]:
        def work(conn: sqlite3.Connection) -> str:
            time.sleep(0.001)  # keeps the transaction open long enough for others to queue
            return insert(key)(conn)

        return work

    def writer(n: int) -> None:
        for i in range(40):
            db.write_grouped(slow_insert(f"g{n}-{i}"))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert len(keys(db)) == 320
    assert db.transactions < 320 / 2


def test_a_transaction_that_cannot_start_fails_its_writers_and_nothing_sticks(
    tmp_path: Path,
) -> None:
    db = Database(tmp_path / "busy.db", busy_timeout=0.05)
    db.migrate()
    other = sqlite3.connect(db.path, isolation_level=None)  # a writer that ignores our lock
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(DatabaseBusy):
        db.write_grouped(insert("g-busy"))
    other.execute("ROLLBACK")
    other.close()
    assert db.write_grouped(insert("g-after")) == "g-after"  # the group is free again
    assert keys(db) == {"g-after"}
