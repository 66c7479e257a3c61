"""SQLite connections per process and thread, opened after fork, with the SPEC 5 pragmas.

Every wait for the database is bounded (`WAIT_SECONDS`): the writers' lock and SQLite's busy
timeout share one deadline, and when it passes the caller gets DatabaseBusy (an HTTP 503 with
Retry-After). The database file is remembered by (device, inode) when first opened; once its
path names another file or none (deleted or replaced while running), writes are refused with
DatabaseGone instead of being acknowledged into a file nobody will open again.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from webhook.migrations import MIGRATIONS
from webhook.storage.errors import StorageBusy, StorageUnusable, register_engine

T = TypeVar("T")
log = logging.getLogger("webhook.db")  # the name its log lines have always carried

# The longest any caller waits for the database: the writers' lock and SQLite's busy handler
# together. A scanner or Azure DevOps retries a 503 later; a request held for 20-30 s behind a
# stuck writer ties up a web thread and the sender's connection for nothing.
WAIT_SECONDS = 5.0
BUSY_TIMEOUT_SECONDS = WAIT_SECONDS  # kept for callers that name it
# SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold, while that
# writer still holds the writers' lock: it copies the WAL into the database file and fsyncs it
# (20-30 ms under load), and every request that writes waits behind it. The worker checkpoints
# twice a second instead (Database.checkpoint); this threshold is the safety net for when no
# worker runs.
AUTOCHECKPOINT_PAGES = 16384
SCHEMA_VERSION = len(MIGRATIONS) + 1
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


class DatabaseUnavailable(StorageBusy):
    """The database cannot take this request now and nothing of it was stored; retry later.

    The SQLite face of `webhook.storage.errors.StorageBusy` (which callers outside this package
    catch): `reason` is a short phrase for people (/readyz, error messages); `retry_after` the
    seconds an HTTP client is asked to wait (the Retry-After header of the 503).
    """


class DatabaseBusy(DatabaseUnavailable):
    """Another writer held the database for longer than the wait budget (WAIT_SECONDS)."""

    reason = "busy"
    retry_after = 1


class DatabaseFull(DatabaseUnavailable):
    """The disk (or SQLite's page limit) is full: SQLITE_FULL."""

    reason = "disk full"
    retry_after = 30


class DatabaseGone(DatabaseUnavailable):
    """The database file was deleted or replaced while open; writes stop until a restart."""

    reason = "database file removed or replaced; restart the service"
    retry_after = 30


class DatabaseUnusable(StorageUnusable):
    """The database cannot be used at start: one line naming the file and the problem."""


def unavailable(exc: BaseException) -> DatabaseUnavailable | None:
    """The DatabaseUnavailable an exception stands for, or None if it is no such condition.

    sqlite3 errors map by primary result code (https://sqlite.org/rescode.html): BUSY and
    LOCKED → DatabaseBusy, FULL → DatabaseFull, READONLY_DBMOVED → DatabaseGone, other
    READONLY, IOERR and CANTOPEN → DatabaseUnavailable.
    """
    if isinstance(exc, DatabaseUnavailable):
        return exc
    if not isinstance(exc, sqlite3.OperationalError):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    if code == sqlite3.SQLITE_READONLY_DBMOVED:
        return DatabaseGone()
    primary = code & 0xFF
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return DatabaseBusy(str(exc))
    if primary == sqlite3.SQLITE_FULL:
        return DatabaseFull()
    if primary in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN):
        return DatabaseUnavailable(f"{exc} ({exc.sqlite_errorname})")  # type: ignore[attr-defined]
    return None


def _operational(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError)


register_engine(unavailable=unavailable, operational=_operational)


def _problem(exc: BaseException, path: Path) -> str:
    """One line saying why the database at `path` cannot be used at start."""
    if isinstance(exc, DatabaseUnavailable) and isinstance(exc.__cause__, sqlite3.Error):
        exc = exc.__cause__
    if isinstance(exc, sqlite3.Error):
        primary = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        if primary == sqlite3.SQLITE_NOTADB:
            return "is not an SQLite database (corrupt, or another kind of file)"
        if primary == sqlite3.SQLITE_CORRUPT:
            return "is corrupt (database disk image is malformed)"
        if primary == sqlite3.SQLITE_READONLY:
            return "is read-only: the service needs to write it (check its permissions and mount)"
        if primary == sqlite3.SQLITE_FULL:
            return "the disk is full"
        if primary == sqlite3.SQLITE_CANTOPEN:
            if path.is_dir():
                return "is a folder, not a database file"
            return "cannot be opened (check that its folder exists and is writable)"
        return str(exc).replace("\n", " ")
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        if exc.errno == errno.EISDIR:
            return "is a folder, not a database file"
        return f"{exc.strerror or exc}{where}"
    if isinstance(exc, DatabaseBusy):
        return f"stayed locked by another process for {WAIT_SECONDS:g} s; try again"
    return str(exc).replace("\n", " ")


def ensure_private_dir(folder: Path) -> None:
    """Create `folder` and any missing parents owner-only (0700, whatever the umask).

    Folders that already exist are left as they are (the database may live in a shared one).
    Raises OSError when a folder cannot be created.
    """
    missing: list[Path] = []
    current = Path(folder)
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            continue
        os.chmod(path, PRIVATE_DIR)


def _create_private_file(path: Path) -> None:
    """Create `path` empty and 0600 unless it exists (SQLite gives its WAL and SHM its mode)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)


def _make_private(path: Path) -> None:
    """Best effort: take group and other permissions off an existing file we own."""
    try:
        st = os.stat(path)
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            os.chmod(path, st.st_mode & 0o700)
    except OSError:
        pass


def schema_sql() -> str:
    """Return schema.sql from the installed package, or from the checkout root."""
    packaged = resources.files("webhook").joinpath("schema.sql")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parents[3] / "schema.sql"
    return checkout.read_text(encoding="utf-8")


@dataclass(eq=False)
class _GroupedWrite:
    """One caller's part of a shared transaction, and how it ended."""

    work: Callable[[sqlite3.Connection], Any]
    deadline: float  # time.monotonic() by which it gives up waiting for the database
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


class _LockWaiter:
    """Waits for the writers' lock in a blocking flock on behalf of callers with a deadline.

    A blocking flock cannot time out, and polling with LOCK_NB loses the kernel's wake-up the
    moment the lock is free (measured: p99 commit latency 2-6x worse with four writing
    processes). So one thread per process blocks in flock on its own descriptor, serving
    requests in arrival order; the caller waits for the grant until its deadline, and a request
    given up before the grant is released at once when the lock comes.
    """

    def __init__(self, lock_path: str) -> None:
        self.fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
        self.pid = os.getpid()
        self._mutex = threading.Lock()
        self._queued = threading.Condition(self._mutex)
        self._requests: deque[_LockRequest] = deque()
        threading.Thread(target=self._serve, name="db-writer-lock", daemon=True).start()

    def acquire(self, deadline: float) -> Callable[[], None]:
        """Wait for the lock until `deadline` (monotonic); return its release, or raise
        DatabaseBusy."""
        request = _LockRequest(self.fd)
        with self._mutex:
            self._requests.append(request)
            self._queued.notify()
        if not request.grant.acquire(timeout=max(0.0, deadline - time.monotonic())):
            with self._mutex:
                if not request.granted:
                    request.abandoned = True
                    raise DatabaseBusy("another writer held the database past the wait budget")
        return request.release

    def _serve(self) -> None:
        while True:
            with self._mutex:
                while not self._requests:
                    self._queued.wait()
                request = self._requests.popleft()
                if request.abandoned:
                    continue
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            with self._mutex:
                if request.abandoned:
                    fcntl.flock(self.fd, fcntl.LOCK_UN)
                    continue
                request.granted = True
            request.grant.release()
            request.done.acquire()  # the lock is the caller's until it releases it


class _LockRequest:
    """One caller's wait in a _LockWaiter; `grant` and `done` are locks used as signals."""

    __slots__ = ("abandoned", "done", "fd", "grant", "granted")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.grant = threading.Lock()
        self.grant.acquire()
        self.done = threading.Lock()
        self.done.acquire()
        self.granted = False
        self.abandoned = False

    def release(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.done.release()


class Database:
    """Hands out one connection per (process, thread); never shares one across a fork.

    `busy_timeout` (seconds) bounds every wait for the database: a write waits at most that
    long for the writers' lock and SQLite's write lock together, a read at most that long for
    SQLite. The first connection creates the database (0600, folders 0700) and remembers which
    file it is; later connections (other threads, forked processes) only open that same file.
    """

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
        return self._local.conn

    @property
    def utils(self) -> sqlite_utils.Database:
        """sqlite-utils view over this thread's connection."""
        pid = os.getpid()
        if getattr(self._local, "utils_pid", None) != pid:
            self._local.utils = sqlite_utils.Database(self.conn)
            self._local.utils_pid = pid
        return self._local.utils

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

    def write_grouped(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(conn)` in a write transaction shared with this process's concurrent callers.

        With synchronous=FULL every commit waits for an fsync while holding SQLite's single
        write lock, which caps commits per second. Callers that arrive while a transaction is
        being written queue up, and the next leader runs all of them in one transaction (one
        fsync), each inside its own SAVEPOINT: a caller whose work raises is rolled back alone
        and gets its exception; the others commit. Nobody returns before the commit holding
        their work is durable. `work` may run on another thread's connection, so it must use
        only the connection it is given. The errors of `write` apply, and no caller waits
        longer than `busy_timeout` seconds for the database: one still queued then leaves the
        queue with DatabaseBusy, and a leader waits only until its own deadline.
        """
        group = self._group
        if group.pid != os.getpid():  # forked: the parent's queue and leader are not ours
            self._group = group = _CommitGroup()
        mine = _GroupedWrite(work, time.monotonic() + self.busy_timeout)
        with group.mutex:
            group.waiting.append(mine)
            lead = not group.leader_busy
            group.leader_busy = True
        if not lead:
            # A leader always wakes every caller it took, and then the next leader, even when
            # its transaction fails; its own wait is the writers' lock, bounded as for write().
            if not mine.finished.wait(max(0.0, mine.deadline - time.monotonic())):
                with group.mutex:
                    if not mine.lead and mine in group.waiting:  # no leader took it
                        group.waiting.remove(mine)
                        raise DatabaseBusy(
                            f"the database stayed busy for more than {self.busy_timeout:g} s"
                        )
                mine.finished.wait()
            lead = mine.lead
        if lead:
            self._lead_group(group, mine.deadline)
        if mine.error is not None:
            raise mine.error
        return mine.result  # type: ignore[no-any-return]

    def _lead_group(self, group: _CommitGroup, deadline: float) -> None:
        with group.mutex:
            batch, group.waiting = group.waiting, []
        try:
            with self.write(deadline=deadline) as conn:
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
                            if not conn.in_transaction or unavailable(exc) is not None:
                                raise  # the transaction is lost, or the database refuses
                            conn.execute("ROLLBACK TO grouped")
                            item.error = exc
                        conn.execute("RELEASE grouped")
        except BaseException as exc:  # BEGIN or COMMIT failed, a lone caller's or the db's error
            for item in batch:
                item.result, item.error = None, item.error or exc
        finally:
            with group.mutex:
                successor = group.waiting[0] if group.waiting else None
                group.leader_busy = successor is not None
                if successor is not None:
                    successor.lead = True  # under the mutex: it can no longer give up
            for item in batch:
                item.finished.set()
            if successor is not None:
                successor.finished.set()

    def check_room(self, conn: sqlite3.Connection, nbytes: int) -> None:
        """Raise DatabaseFull unless the database can take `nbytes` more now.

        Two measures: the free space of the file system holding it (statvfs, as the service's
        user may use it) and a real allocation: `nbytes` inserted into `meta` inside a
        savepoint of `conn`'s open write transaction, then rolled back, so nothing stays (not
        even free pages) and the next check allocates again; SQLite fails it with SQLITE_FULL
        when it cannot grow the database (its page limit).
        """
        try:
            fs = os.statvfs(self._absolute.parent)
        except OSError:
            fs = None
        if fs is not None:
            blocks = fs.f_bfree if os.geteuid() == 0 else fs.f_bavail
            if blocks * fs.f_frsize < nbytes:
                raise DatabaseFull()
        conn.execute("SAVEPOINT room")
        try:
            conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('room_probe', zeroblob(?))",
                (nbytes,),
            )
        except sqlite3.Error as exc:
            if conn.in_transaction:  # SQLITE_FULL may have rolled back the whole transaction
                conn.execute("ROLLBACK TO room")
            raise unavailable(exc) or exc from exc
        conn.execute("ROLLBACK TO room")
        conn.execute("RELEASE room")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent read snapshot (SQLite's busy timeout bounds any wait)."""
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
        the WAL, pages copied) of that second pass. Raises DatabaseBusy as `write` does.
        """
        conn = self.conn
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        release, _ = self._acquire(time.monotonic() + self.busy_timeout)
        try:
            _busy, wal_pages, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            release()
        return int(wal_pages), int(copied)

    def migrate(self) -> int:
        """Apply schema.sql and any pending migrations; return the schema version.

        Raises DatabaseUnusable, with one line naming the file and the problem, when the
        database cannot be opened or written (a folder, not an SQLite file, corrupt, read-only,
        disk full, locked for longer than the wait budget) or has a newer schema version than
        this code knows (SCHEMA_VERSION).
        """
        try:
            return self._migrate()
        except (sqlite3.Error, OSError, DatabaseUnavailable) as exc:
            raise DatabaseUnusable(self.path, _problem(exc, self.path)) from exc

    def _migrate(self) -> int:
        conn = self.conn
        with self.write():
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise DatabaseUnusable(
                self.path,
                f"schema version {version} is newer than this ado-webhook knows "
                f"({SCHEMA_VERSION}); run the ado-webhook release that wrote it, or a newer one",
            )
        if version == 0:
            conn.executescript(schema_sql())
            with self.write():
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        for number, statements in enumerate(MIGRATIONS, start=2):
            if 0 < version < number:
                with self.write():
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version={number}")
        # A real write: a database opened read-only (its file's permissions, an immutable
        # file, a read-only mount) otherwise passes everything above when it needs no change.
        with self.write():
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('opened_at', datetime('now'))"
                " ON CONFLICT(key) DO UPDATE SET value=excluded.value"
            )
        return max(version, SCHEMA_VERSION)

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.close()
        if getattr(self._local, "lock_pid", None) == os.getpid():
            os.close(self._local.lock_fd)
        self._local = threading.local()
