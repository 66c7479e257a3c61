"""SQLite connections per process and thread, opened after fork, with the SPEC 5 pragmas."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from webhook.migrations import MIGRATIONS

T = TypeVar("T")

BUSY_TIMEOUT_SECONDS = 5.0
# SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold, while that
# writer still holds the writers' lock: it copies the WAL into the database file and fsyncs it
# (20-30 ms under load), and every request that writes waits behind it. The worker checkpoints
# twice a second instead (Database.checkpoint); this threshold is the safety net for when no
# worker runs.
AUTOCHECKPOINT_PAGES = 16384


class DatabaseBusy(Exception):
    """The database stayed locked longer than the busy timeout."""


def schema_sql() -> str:
    """Return schema.sql from the installed package, or from the checkout root."""
    packaged = resources.files("webhook").joinpath("schema.sql")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parent.parent / "schema.sql"
    return checkout.read_text(encoding="utf-8")


@dataclass(eq=False)
class _GroupedWrite:
    """One caller's part of a shared transaction, and how it ended."""

    work: Callable[[sqlite3.Connection], Any]
    finished: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # handed the next transaction to run, instead of a result
    result: Any = None
    error: BaseException | None = None


class _CommitGroup:
    """Callers of one process waiting to write; the leader runs them in one transaction."""

    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.waiting: list[_GroupedWrite] = []
        self.leader_busy = False
        self.pid = os.getpid()


class Database:
    """Hands out one connection per (process, thread); never shares one across a fork."""

    def __init__(self, path: Path, *, busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._group = _CommitGroup()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # An acknowledged risk must survive a power cut: fsync the WAL on every commit.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection in this process (reopened after a fork)."""
        pid = os.getpid()
        if getattr(self._local, "pid", None) != pid:
            self._local.conn = self._open()
            self._local.pid = pid
        return self._local.conn

    @property
    def utils(self) -> sqlite_utils.Database:
        """sqlite-utils view over this thread's connection."""
        pid = os.getpid()
        if getattr(self._local, "utils_pid", None) != pid:
            self._local.utils = sqlite_utils.Database(self.conn)
            self._local.utils_pid = pid
        return self._local.utils

    @property
    def _lock_fd(self) -> int:
        """This thread's descriptor of the writers' lock file (flock is per descriptor)."""
        pid = os.getpid()
        if getattr(self._local, "lock_pid", None) != pid:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._local.lock_fd = os.open(
                str(self.path) + ".writer-lock", os.O_RDWR | os.O_CREAT, 0o600
            )
            self._local.lock_pid = pid
        return int(self._local.lock_fd)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE, commit on success, roll back on error.

        Writers first queue on an flock: SQLite's own busy handler sleeps in steps of up to
        100 ms, which collapses throughput when several processes write; the kernel wakes the
        next flock waiter as soon as the lock is released.
        """
        conn = self.conn
        fd = self._lock_fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise DatabaseBusy(str(exc)) from exc
                raise
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def write_grouped(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(conn)` in a write transaction shared with this process's concurrent callers.

        With synchronous=FULL every commit waits for an fsync while holding SQLite's single
        write lock, which caps commits per second. Callers that arrive while a transaction is
        being written queue up, and the next leader runs all of them in one transaction (one
        fsync), each inside its own SAVEPOINT: a caller whose work raises is rolled back alone
        and gets its exception; the others commit. Nobody returns before the commit holding
        their work is durable. `work` may run on another thread's connection, so it must use
        only the connection it is given.
        """
        group = self._group
        if group.pid != os.getpid():  # forked: the parent's queue and leader are not ours
            self._group = group = _CommitGroup()
        mine = _GroupedWrite(work)
        with group.mutex:
            group.waiting.append(mine)
            lead = not group.leader_busy
            group.leader_busy = True
        if not lead:
            # A leader always wakes every caller it took, and then the next leader, even when
            # its transaction fails; its own wait is the writers' lock, as for write().
            mine.finished.wait()
            lead = mine.lead
        if lead:
            self._lead_group(group)
        if mine.error is not None:
            raise mine.error
        return mine.result  # type: ignore[no-any-return]

    def _lead_group(self, group: _CommitGroup) -> None:
        with group.mutex:
            batch, group.waiting = group.waiting, []
        try:
            with self.write() as conn:
                if len(batch) == 1:
                    # Alone in its transaction, a caller needs no savepoint: its error rolls
                    # back the whole transaction, which holds nothing else.
                    batch[0].result = batch[0].work(conn)
                else:
                    for item in batch:
                        conn.execute("SAVEPOINT grouped")
                        try:
                            item.result = item.work(conn)
                        except Exception as exc:
                            conn.execute("ROLLBACK TO grouped")
                            item.error = exc
                        conn.execute("RELEASE grouped")
        except BaseException as exc:  # the work of a lone caller, BEGIN or COMMIT failed
            for item in batch:
                item.result, item.error = None, item.error or exc
        finally:
            with group.mutex:
                successor = group.waiting[0] if group.waiting else None
                group.leader_busy = successor is not None
            for item in batch:
                item.finished.set()
            if successor is not None:
                successor.lead = True
                successor.finished.set()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent read snapshot."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def checkpoint(self) -> tuple[int, int]:
        """Copy the WAL into the database file, holding up writers for as little as possible.

        The bulk is copied by a PASSIVE checkpoint, which blocks no reader or writer. Writers
        keep appending meanwhile, so the WAL would never be fully copied at the moment a writer
        starts (only then does SQLite start the WAL over; otherwise it grows without end): a
        second pass under the writers' lock copies just what was appended. Returns (pages in
        the WAL, pages copied) of that second pass.
        """
        conn = self.conn
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        fd = self._lock_fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            _busy, wal_pages, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        return int(wal_pages), int(copied)

    def migrate(self) -> int:
        """Apply schema.sql and any pending migrations; return the schema version."""
        conn = self.conn
        with self.write():
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            conn.executescript(schema_sql())
            with self.write():
                conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
            return len(MIGRATIONS) + 1
        for number, statements in enumerate(MIGRATIONS, start=2):
            if version < number:
                with self.write():
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version={number}")
        return max(version, len(MIGRATIONS) + 1)

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.close()
        if getattr(self._local, "lock_pid", None) == os.getpid():
            os.close(self._local.lock_fd)
        self._local = threading.local()
