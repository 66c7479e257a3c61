"""SQLite connections per process and thread, opened after fork, with the SPEC 5 pragmas.

Every wait for the database is bounded (`WAIT_SECONDS`): the writers' lock and SQLite's busy
timeout share one deadline, and when it passes the caller gets DatabaseBusy (an HTTP 503 with
Retry-After). The database file is remembered by (device, inode) when first opened; once its
path names another file or none (deleted or replaced while running), writes are refused with
DatabaseGone instead of being acknowledged into a file nobody will open again.

Faults live in `faults`, files and schema text in `files`, the writers' lock and group commit
in `locks`, migrations in `migrate`, room checks and checkpoints in `upkeep`; their public names
are re-exported here.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path

import sqlite_utils

from webhook import clock
from webhook.storage.sql.db import Connection
from webhook.storage.sqlite.dialect import SqliteDialect
from webhook.storage.sqlite.faults import (
    WAIT_SECONDS,
    DatabaseBusy,
    DatabaseFull,
    DatabaseGone,
    DatabaseUnavailable,
    DatabaseUnusable,
    unavailable,
)
from webhook.storage.sqlite.files import (
    PRIVATE_DIR,
    PRIVATE_FILE,
    _create_private_file,
    _make_private,
    ensure_private_dir,
    schema_sql,
)
from webhook.storage.sqlite.locks import GroupCommit, _CommitGroup, _LockWaiter
from webhook.storage.sqlite.migrate import SCHEMA_VERSION, migrate
from webhook.storage.sqlite.upkeep import Upkeep

__all__ = [
    "AUTOCHECKPOINT_PAGES",
    "BUSY_TIMEOUT_SECONDS",
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "SCHEMA_VERSION",
    "WAIT_SECONDS",
    "Database",
    "DatabaseBusy",
    "DatabaseFull",
    "DatabaseGone",
    "DatabaseUnavailable",
    "DatabaseUnusable",
    "ensure_private_dir",
    "schema_sql",
    "unavailable",
]

log = logging.getLogger("webhook.db")  # the name its log lines have always carried

BUSY_TIMEOUT_SECONDS = WAIT_SECONDS  # kept for callers that name it
# SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold, while that
# writer still holds the writers' lock: it copies the WAL into the database file and fsyncs it
# (20-30 ms under load), and every request that writes waits behind it. The worker checkpoints
# twice a second instead (Database.checkpoint); this threshold is the safety net for when no
# worker runs.
AUTOCHECKPOINT_PAGES = 16384


class Database(GroupCommit, Upkeep):
    """Hands out one connection per (process, thread); never shares one across a fork.

    `busy_timeout` (seconds) bounds every wait for the database: a write waits at most that
    long for the writers' lock and SQLite's write lock together, a read at most that long for
    SQLite. The first connection creates the database (0600, folders 0700) and remembers which
    file it is; later connections (other threads, forked processes) only open that same file.
    """

    dialect = SqliteDialect()
    integrity_errors: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)

    def __init__(self, path: Path, *, busy_timeout: float = WAIT_SECONDS) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._absolute = self.path.absolute()
        self._local = threading.local()
        self._group = _CommitGroup()
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file opened
        self._gone = False
        self._state_lock = threading.Lock()
        self._lock_waiter: _LockWaiter | None = None

    def now(self) -> float:
        """The store's clock: this host's wall clock (webhook.clock), the only host SQLite has."""
        return clock.now()

    server_clock = False  # the store's clock is this host's wall clock

    def clock_offset(self) -> float:
        """0.0: the store's clock is this host's."""
        return 0.0

    def wait_for_jobs(self, poll: float) -> bool:
        """Sleep `poll` seconds (SQLite has no notifications; a poll is one cheap read)."""
        time.sleep(poll)
        return False

    def reserve_ids(self, conn: Connection, table: str, n: int) -> list[int]:
        """`n` ids past the table's largest (what SQLite would give the next inserts; the
        write transaction holds the writers' lock, so nobody else takes them)."""
        if n <= 0:
            return []
        top = int(conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0])
        return list(range(top + 1, top + 1 + n))

    def notify_jobs(self, conn: Connection) -> None:
        """Nothing: SQLite's workers poll."""

    # ---- the file -----------------------------------------------------------------------

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self._absolute)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def _refuse_if_gone(self) -> None:
        if self._gone:
            raise DatabaseGone()

    def _mark_gone(self) -> None:
        """Refuse writes from now on (the path no longer names our file); log it once."""
        with self._state_lock:
            first = not self._gone
            self._gone = True
        if first:
            log.error(
                "database file %s was removed or replaced while open: refusing writes "
                "(503) until the service is restarted",
                self.path,
            )
        raise DatabaseGone()

    def check_same_file(self) -> None:
        """Raise DatabaseGone unless the path still names the file first opened (one stat)."""
        self._refuse_if_gone()
        if self._identity is not None and self._file_identity() != self._identity:
            self._mark_gone()

    # ---- connections --------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        self._refuse_if_gone()
        first = self._identity is None
        if first:
            ensure_private_dir(self.path.parent)
            _create_private_file(self.path)
            target, uri = str(self.path), False
        else:
            # Never create: a missing file means it was deleted, not that it is new.
            self.check_same_file()
            target, uri = self._absolute.as_uri() + "?mode=rw", True
        try:
            conn = sqlite3.connect(
                target,
                uri=uri,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error:
            self.check_same_file()
            raise
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # An acknowledged risk must survive a power cut: fsync the WAL on every commit.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        except BaseException:
            conn.close()
            raise
        identity = self._file_identity()
        if first:
            self._identity = identity
            for suffix in ("", "-wal", "-shm"):  # files made by an older version, or by hand
                _make_private(Path(f"{self.path}{suffix}"))
        elif identity != self._identity:
            conn.close()
            self._mark_gone()
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection in this process (reopened after a fork).

        Raises DatabaseGone when a new connection would open another file than the first one.
        """
        pid = os.getpid()
        if getattr(self._local, "pid", None) != pid:
            self._local.conn = self._open()
            self._local.pid = pid
        conn: sqlite3.Connection = self._local.conn
        return conn

    @property
    def utils(self) -> sqlite_utils.Database:
        """sqlite-utils view over this thread's connection."""
        pid = os.getpid()
        if getattr(self._local, "utils_pid", None) != pid:
            self._local.utils = sqlite_utils.Database(self.conn)
            self._local.utils_pid = pid
        utils: sqlite_utils.Database = self._local.utils
        return utils

    def _discard_connection(self) -> None:
        """Drop this thread's connection (closing rolls back); the next use opens a new one."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            with suppress(sqlite3.Error):
                conn.close()
        self._local.pid = None
        self._local.utils_pid = None

    @property
    def _lock_fd(self) -> int:
        """This thread's descriptor of the writers' lock file (flock is per descriptor)."""
        pid = os.getpid()
        if getattr(self._local, "lock_pid", None) != pid:
            try:
                self._local.lock_fd = os.open(
                    str(self.path) + ".writer-lock", os.O_RDWR | os.O_CREAT, PRIVATE_FILE
                )
            except FileNotFoundError:  # its folder is gone with the database
                self._mark_gone()
            self._local.lock_pid = pid
        return int(self._local.lock_fd)

    def _acquire(self, deadline: float) -> tuple[Callable[[], None], bool]:
        """Take the writers' lock by `deadline` (monotonic) or raise DatabaseBusy.

        Returns its release and whether it had to wait. Uncontended it is one non-blocking
        flock on this thread's descriptor; otherwise this process's _LockWaiter waits for it.
        """
        fd = self._lock_fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return self._waiter().acquire(deadline), True
        return partial(fcntl.flock, fd, fcntl.LOCK_UN), False

    def _waiter(self) -> _LockWaiter:
        with self._state_lock:
            waiter = self._lock_waiter
            if waiter is None or waiter.pid != os.getpid():
                try:
                    waiter = self._lock_waiter = _LockWaiter(str(self.path) + ".writer-lock")
                except FileNotFoundError:  # its folder is gone with the database
                    waiter = None
        if waiter is None:
            self._mark_gone()
        return waiter  # type: ignore[return-value]

    def _begin(self, conn: sqlite3.Connection, deadline: float | None) -> None:
        """BEGIN IMMEDIATE; after a wait for the writers' lock, SQLite gets only what is left."""
        try:
            if deadline is None:
                conn.execute("BEGIN IMMEDIATE")
                return
            left_ms = max(1, int((deadline - time.monotonic()) * 1000))
            conn.execute(f"PRAGMA busy_timeout={left_ms}")
            try:
                conn.execute("BEGIN IMMEDIATE")
            finally:
                conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        except sqlite3.OperationalError as exc:
            found = unavailable(exc)
            if found is not None:
                raise found from exc
            raise

    def _rollback(self, conn: sqlite3.Connection) -> None:
        """Roll back if a transaction is still open (SQLite may have rolled it back itself)."""
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            self._discard_connection()

    # ---- transactions -------------------------------------------------------------------

    @contextmanager
    def write(self, *, deadline: float | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE, commit on success, roll back on error.

        Writers first queue on an flock: SQLite's own busy handler sleeps in steps of up to
        100 ms, which collapses throughput when several processes write. Raises DatabaseBusy
        when the lock is not had within `busy_timeout` seconds, DatabaseFull when the disk is
        full, DatabaseGone when the database file was removed or replaced (checked before the
        commit, which is then rolled back, and after it, so such a write is never reported as
        stored; one stat each, about a microsecond), DatabaseUnavailable for other
        I/O failures; the body's own exceptions pass through after the rollback. `deadline`
        (time.monotonic()) replaces `busy_timeout` seconds from now as the end of the wait.
        """
        joined = self._unit_conn()
        if joined is not None:  # inside a unit of work: a part of its transaction
            with self._part(joined):
                yield joined
            return
        if deadline is None:
            deadline = time.monotonic() + self.busy_timeout
        self._refuse_if_gone()
        conn = self.conn
        release, waited = self._acquire(deadline)
        try:
            self._begin(conn, deadline if waited else None)
            try:
                yield conn
            except BaseException as exc:
                self._rollback(conn)
                found = unavailable(exc)
                if found is not None and found is not exc:
                    raise found from exc
                raise
            try:
                # The path must still name our file: else roll back, so nothing lands in a
                # WAL that SQLite would pair with whatever file now has the name.
                self.check_same_file()
                conn.execute("COMMIT")
            except DatabaseGone:
                self._rollback(conn)
                raise
            except sqlite3.Error as exc:
                self._rollback(conn)
                found = unavailable(exc)
                if found is not None:
                    raise found from exc
                raise
        finally:
            release()
        self.check_same_file()  # removed during the commit: the write may be lost; say so

    @contextmanager
    def unit(self, *, deadline: float | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction that every `write`, `write_grouped` and `read` of this thread
        joins until it ends: commit when the block ends, roll back everything on an error.

        Each joined `write` is a SAVEPOINT: its own error rolls back only its part, and the
        block may catch it and go on. A nested `unit` is such a part. Errors as for `write`.
        """
        joined = self._unit_conn()
        if joined is not None:
            with self._part(joined):
                yield joined
            return
        with self.write(deadline=deadline) as conn:
            self._local.unit_pid = os.getpid()
            try:
                yield conn
            finally:
                self._local.unit_pid = None

    def _unit_conn(self) -> sqlite3.Connection | None:
        """This thread's connection while it holds a unit of work open, else None."""
        if getattr(self._local, "unit_pid", None) != os.getpid():
            return None
        return self.conn

    @staticmethod
    @contextmanager
    def _part(conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("SAVEPOINT unit_part")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO unit_part")
                conn.execute("RELEASE unit_part")
            raise
        conn.execute("RELEASE unit_part")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent read snapshot (SQLite's busy timeout bounds any wait); inside a unit of
        work, its transaction (which sees the unit's own writes)."""
        joined = self._unit_conn()
        if joined is not None:
            yield joined
            return
        self.check_same_file()  # never answer from a file that was removed or replaced
        conn = self.conn
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def migrate(self) -> int:
        """Apply schema.sql and any pending migrations; return the schema version.

        Raises DatabaseUnusable, with one line naming the file and the problem, when the
        database cannot be opened or written (a folder, not an SQLite file, corrupt, read-only,
        disk full, locked for longer than the wait budget) or has a newer schema version than
        this code knows (SCHEMA_VERSION).
        """
        return migrate(self)

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.close()
        if getattr(self._local, "lock_pid", None) == os.getpid():
            os.close(self._local.lock_fd)
        self._local = threading.local()
