"""PgDatabase: the PostgreSQL engine's `SqlDatabase` (webhook.storage.sql.db), on psycopg 3.

Connections come from a psycopg_pool.ConnectionPool per process, opened on first use and opened
anew when the process id changes (gunicorn forks its workers after the app is built: a child
never uses its parent's pool, nor closes the parent's sessions: see the fork guard in this
package's __init__). Every wait is bounded: a free pooled connection within `busy_timeout`
seconds (else PgBusy, an HTTP 503 with Retry-After), a row or table lock within the same
(lock_timeout), a statement within `statement_timeout`.

Transactions are this thread's: `write()` and `unit()` open one on a pooled connection (READ
COMMITTED, commit at the end, roll back on error), `read()` a REPEATABLE READ, READ ONLY
snapshot; while one is open, this thread's `conn`, `read()`, `write()`, `unit()` and
`write_grouped()` join it, the writing ones as a SAVEPOINT whose error rolls back only its part.
Outside any transaction `conn` runs each statement alone (autocommit) on a pooled connection.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg.adapt import AdaptersMap, Buffer, Dumper, Loader
from psycopg.pq import TransactionStatus

from webhook import clock
from webhook.storage.postgres import (
    APPLICATION_NAME,
    INVALID_URL,
    KEEPALIVES,
    PgBusy,
    PgFull,
    PgUnavailable,
    PgUnusable,
    connect_problem,
    conninfo_defaults,
    one_line,
    redact_url,
    track,
    unavailable,
)
from webhook.storage.postgres.migrate import SCHEMA_VERSION, migrate, table_names
from webhook.storage.postgres.notify import Listener, notify
from webhook.storage.postgres.sqltext import to_psycopg
from webhook.storage.sql.db import Connection, Params

__all__ = [
    "JOBS_CHANNEL",
    "SCHEMA_VERSION",
    "BufferedCursor",
    "PgBusy",
    "PgConnection",
    "PgDatabase",
    "PgDialect",
    "PgFull",
    "PgRow",
    "PgUnavailable",
    "PgUnusable",
    "TransactionAborted",
]

log = logging.getLogger("webhook.db")

T = TypeVar("T")

WAIT_SECONDS = 5.0  # as SQLite's: the longest a request waits for the database
STATEMENT_TIMEOUT_SECONDS = 60.0
# A transaction left open and idle this long (a hung process) is ended by the server, so its
# row locks do not hold up every other node.
IDLE_IN_TRANSACTION_SECONDS = 60.0
CLOCK_REFRESH_SECONDS = 1.0  # how often now() measures the server clock again, at most
JOBS_CHANNEL = "ado_webhook_jobs"  # LISTEN/NOTIFY channel that wakes idle workers
# How long an idle worker waits for a notification before it looks anyway: jobs also become
# runnable by merely coming due (a retry's backoff, a delayed job), which nobody announces.
JOB_WAIT_SECONDS = 1.0

_SERVER_EPOCH = "extract(epoch FROM clock_timestamp())::float8"
_IN_TRANSACTION = (TransactionStatus.INTRANS, TransactionStatus.INERROR)


class TransactionAborted(psycopg.errors.InFailedSqlTransaction):
    """A statement of the transaction failed and the block went on regardless: PostgreSQL
    refuses everything after a failed statement, so nothing of the transaction was stored.
    (SQLite undoes only the failed statement; on PostgreSQL wrap a statement whose failure is
    expected in a nested `write()`, which makes it a savepoint.)"""


# ---- rows and cursors ---------------------------------------------------------------------


class PgRow:
    """One result row, like sqlite3.Row: `row[0]`, `row["name"]` (exact, then ignoring case),
    `keys()`, `len(row)`, iteration over the values, `dict(row)`; equal to a row of the same
    columns and values."""

    __slots__ = ("_index", "_keys", "_values")

    def __init__(self, keys: tuple[str, ...], index: Mapping[str, int], values: Sequence[Any]):
        self._keys = keys
        self._index = index
        self._values = values

    def __getitem__(self, key: int | str | slice, /) -> Any:
        if isinstance(key, str):
            position = self._index.get(key)
            if position is None:
                position = self._index.get(key.lower())
                if position is None:
                    raise KeyError(key)
            return self._values[position]
        return self._values[key]

    def keys(self) -> list[str]:
        """The column names, in order."""
        return list(self._keys)

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PgRow):
            return NotImplemented
        return self._keys == other._keys and tuple(self._values) == tuple(other._values)

    def __hash__(self) -> int:
        return hash((self._keys, tuple(self._values)))

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._keys, self._values, strict=True))!r})"


def pg_row_factory(cursor: Any) -> Callable[[Sequence[Any]], PgRow]:
    """psycopg row factory making PgRow objects (one name index per result)."""
    description = cursor.description or ()
    keys = tuple(column.name for column in description)
    index: dict[str, int] = {}
    for position, name in enumerate(keys):
        index.setdefault(name, position)
        index.setdefault(name.lower(), position)

    def make(values: Sequence[Any]) -> PgRow:
        return PgRow(keys, index, values)

    return make


class BufferedCursor:
    """A statement's rows read in full (its connection already given back) and its rowcount."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self._next = 0
        self._rowcount = rowcount

    @property
    def rowcount(self) -> int:
        """Rows changed (or returned), as the driver counted them; -1 when unknown."""
        return self._rowcount

    def fetchone(self) -> Any:
        """The next row, or None."""
        if self._next >= len(self._rows):
            return None
        row = self._rows[self._next]
        self._next += 1
        return row

    def fetchall(self) -> list[Any]:
        """The rows not fetched yet."""
        rows = self._rows[self._next :]
        self._next = len(self._rows)
        return rows

    def __iter__(self) -> Iterator[Any]:
        while (row := self.fetchone()) is not None:
            yield row


# ---- adapters: bool binds as 0/1, numeric loads as int or float ----------------------------


class _BoolAsInt(Dumper):
    """Python bools bind as integers 0/1: flags are INTEGER columns in both engines."""

    oid = psycopg.postgres.types["int4"].oid

    def dump(self, obj: Any) -> Buffer:
        return b"1" if obj else b"0"


class _NumericAsNumber(Loader):
    """NUMERIC results (sum() of BIGINT, avg(), extract()) load as int or float, as SQLite's
    do, instead of Decimal."""

    def load(self, data: Buffer) -> Any:
        text = bytes(data)
        digits = text[1:] if text[:1] == b"-" else text
        return int(text) if digits.isdigit() else float(text)


ADAPTERS = AdaptersMap(psycopg.adapters)
ADAPTERS.register_dumper(bool, _BoolAsInt)
ADAPTERS.register_loader("numeric", _NumericAsNumber)


@contextmanager
def _translated() -> Iterator[None]:
    """Let psycopg errors that mean "cannot take the request now" out as PgUnavailable
    subclasses (chained to the original); other errors pass unchanged."""
    try:
        yield
    except psycopg.Error as exc:
        found = unavailable(exc)
        if found is None:
            raise
        raise found from exc


# ---- connections --------------------------------------------------------------------------


class PgConnection:
    """A pooled connection inside this thread's transaction, speaking the shared SQL.

    `execute` and `executemany` take SQLite-style parameters (`?`, `:name`; translated by
    `sqltext.to_psycopg`) and answer psycopg cursors of PgRow; errors that mean the database
    cannot take the request come out as PgUnavailable subclasses, a statement's own errors
    (e.g. psycopg.errors.IntegrityError) as they are. `raw` is the psycopg connection.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Params = (), /) -> psycopg.Cursor[Any]:
        """Run one statement; its cursor (rows, rowcount)."""
        try:
            return self.raw.execute(to_psycopg(sql), params)
        except psycopg.Error as exc:
            found = unavailable(exc)
            if found is None:
                raise
            raise found from exc

    def executemany(self, sql: str, seq: Sequence[Params], /) -> psycopg.Cursor[Any]:
        """Run one statement once per parameter set (pipelined); rowcount is their total."""
        cursor = self.raw.cursor()
        try:
            cursor.executemany(to_psycopg(sql), seq)
        except psycopg.Error as exc:
            found = unavailable(exc)
            if found is None:
                raise
            raise found from exc
        return cursor


class _AutocommitConnection:
    """`PgDatabase.conn` outside a transaction: each statement borrows a pooled connection,
    runs alone (autocommit), and hands back its rows read in full (BufferedCursor)."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    def execute(self, sql: str, params: Params = (), /) -> BufferedCursor:
        """Run one statement in its own transaction; its rows and rowcount."""
        with self._db._borrow(None) as raw, _translated():
            cursor = raw.execute(to_psycopg(sql), params)
            rows = cursor.fetchall() if cursor.description is not None else []
            return BufferedCursor(rows, cursor.rowcount)

    def executemany(self, sql: str, seq: Sequence[Params], /) -> BufferedCursor:
        """Run one statement per parameter set, all in one transaction; the total rowcount."""
        with self._db._borrow(None) as raw, _translated():
            with raw.transaction():
                cursor = raw.cursor()
                cursor.executemany(to_psycopg(sql), seq)
            return BufferedCursor([], cursor.rowcount)


class _PoolConnection(psycopg.Connection[Any]):
    """The pool's connection class: remembers, per conninfo, how the latest attempt to
    connect went, so that a pool wait that timed out can tell "server unreachable" (and why)
    from "every connection busy"."""

    outcomes: dict[str, tuple[bool, str]] = {}  # conninfo → (connected, problem)

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> _PoolConnection:
        try:
            conn = super().connect(conninfo, **kwargs)
        except psycopg.Error as exc:
            cls.outcomes[conninfo] = (False, connect_problem(exc, conninfo))
            raise
        cls.outcomes[conninfo] = (True, "")
        return conn


class _Transaction:
    """This thread's open transaction: its connection, whether it is read-only, and whether
    idle workers are to be woken when it commits."""

    __slots__ = ("conn", "notify", "pid", "read_only")

    def __init__(self, conn: PgConnection, read_only: bool) -> None:
        self.conn = conn
        self.read_only = read_only
        self.notify = False
        self.pid = os.getpid()


class PgDialect:
    """PostgreSQL's spelling of the fragments the shared SQL leaves to the engine."""

    name = "postgresql"

    def greatest(self, a: str, b: str) -> str:
        """GREATEST(a, b) (NULLs ignored; SQLite's max(a, b) is NULL if either is)."""
        return f"GREATEST({a}, {b})"

    def json_array_length(self, column: str) -> str:
        """json_array_length of the JSON array text in `column`."""
        return f"json_array_length(({column})::json)"

    def json_array_head(self, column: str, n: int) -> str:
        """The first `n` elements of the JSON array text in `column`, as JSON array text."""
        return (
            "(SELECT coalesce(json_agg(head.value ORDER BY head.position), '[]'::json)::text"
            f" FROM (SELECT value, position FROM json_array_elements(({column})::json)"
            f" WITH ORDINALITY AS element(value, position)"
            f" ORDER BY position LIMIT {int(n)}) AS head)"
        )

    def skip_locked(self, alias: str) -> str:
        """` FOR UPDATE OF alias SKIP LOCKED`, with its leading space: a claim takes rows no
        other transaction holds and locks them until it commits, so concurrent workers never
        claim the same job."""
        return f" FOR UPDATE OF {alias} SKIP LOCKED"


class PgDatabase:
    """One PostgreSQL database as the shared repositories use it (see the module docstring).

    `url`: a libpq URL (postgresql://user:password@host:port/dbname?…); parameters it sets win
    over this class's defaults. `busy_timeout` (seconds) bounds the wait for a pooled connection
    and for locks; `min_size`/`max_size` size each process's pool; `statement_timeout` (seconds)
    ends a statement that runs longer. Nothing connects before first use.
    """

    integrity_errors: tuple[type[Exception], ...] = (psycopg.errors.IntegrityError,)
    # The server's clock as float8 unix seconds, for SQL that compares times on the server.
    now_sql = _SERVER_EPOCH

    def __init__(
        self,
        url: str,
        *,
        busy_timeout: float = WAIT_SECONDS,
        min_size: int = 1,
        max_size: int = 10,
        statement_timeout: float = STATEMENT_TIMEOUT_SECONDS,
    ) -> None:
        self._url = url
        self.label = redact_url(url)  # the URL with its password as ***, for messages
        self.busy_timeout = busy_timeout
        self.min_size = min_size
        self.max_size = max(min_size, max_size)
        self.statement_timeout = statement_timeout
        self.dialect = PgDialect()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pool: psycopg_pool.ConnectionPool[Any] | None = None
        self._pool_pid = 0
        self._listener: Listener | None = None
        self._autocommit = _AutocommitConnection(self)
        # Server clock minus this host's (seconds), and when (monotonic) it was measured.
        self._clock_lock = threading.Lock()
        self._measuring = threading.Lock()
        self._offset = 0.0
        self._offset_pid = 0
        self._offset_at = -math.inf
        self.clock_uncertainty = math.inf  # half the round trip of the last measurement (s)

    # ---- the pool ---------------------------------------------------------------------------

    def _pool_for_process(self) -> psycopg_pool.ConnectionPool[Any]:
        """This process's pool, opened now if it has none (first use, or after a fork)."""
        pool = self._pool
        pid = os.getpid()
        if pool is not None and self._pool_pid == pid:
            return pool
        with self._lock:
            if self._pool is not None and self._pool_pid == pid:
                return self._pool
            try:
                params = conninfo_defaults(
                    self._url,
                    connect_timeout=max(1, math.ceil(self.busy_timeout)),
                    application_name=APPLICATION_NAME,
                    **KEEPALIVES,
                )
            except psycopg.Error:
                raise PgUnusable(self.label, INVALID_URL) from None
            pool = psycopg_pool.ConnectionPool(
                self._url,
                connection_class=_PoolConnection,
                kwargs={
                    "autocommit": True,
                    "row_factory": pg_row_factory,
                    "context": ADAPTERS,
                    **params,
                },
                min_size=self.min_size,
                max_size=self.max_size,
                open=False,
                configure=self._configure,
                check=psycopg_pool.ConnectionPool.check_connection,
                name=APPLICATION_NAME,
                timeout=self.busy_timeout,
                reconnect_timeout=30.0,
                num_workers=2,
            )
            track(pool)
            pool.open(wait=False)
            self._pool, self._pool_pid = pool, pid
            self._offset_at = -math.inf  # measure the server clock again on this pool
            return pool

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        """Settings of every new pooled connection (one round trip), and a clock reading."""
        t0 = time.time()
        row = conn.execute(
            "SELECT set_config('lock_timeout', %s, false),"
            " set_config('statement_timeout', %s, false),"
            " set_config('idle_in_transaction_session_timeout', %s, false),"
            " set_config('TimeZone', 'UTC', false),"
            f" {_SERVER_EPOCH}",
            (
                f"{int(self.busy_timeout * 1000)}ms",
                f"{int(self.statement_timeout * 1000)}ms",
                f"{int(IDLE_IN_TRANSACTION_SECONDS * 1000)}ms",
            ),
        ).fetchone()
        t1 = time.time()
        if row is not None:
            self._set_offset(float(row[4]), t0, t1)

    @contextmanager
    def _borrow(self, deadline: float | None) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection until the block ends; PgBusy or PgUnavailable when none is had
        by `deadline` (monotonic; default busy_timeout from now)."""
        pool = self._pool_for_process()
        timeout = self.busy_timeout if deadline is None else deadline - time.monotonic()
        try:
            raw = pool.getconn(timeout=max(0.001, timeout))
        except psycopg_pool.PoolTimeout as exc:
            raise self._wait_failed(max(0.0, timeout)) from exc
        try:
            yield raw
        finally:
            pool.putconn(raw)

    def _wait_failed(self, waited: float) -> PgUnavailable:
        """Why no pooled connection came: the server unreachable, or all in use."""
        connected, problem = _PoolConnection.outcomes.get(self._url, (True, ""))
        if not connected:
            return PgUnavailable(f"cannot reach the database server {self.label}: {problem}")
        return PgBusy(
            f"no database connection became free within {waited:g} s "
            f"(all {self.max_size} of this process's connections in use)"
        )

    # ---- transactions -----------------------------------------------------------------------

    def _current(self) -> _Transaction | None:
        """This thread's open transaction in this process, if any."""
        tx: _Transaction | None = getattr(self._local, "tx", None)
        if tx is None or tx.pid != os.getpid():
            return None
        return tx

    @property
    def conn(self) -> Connection:
        """Inside a transaction of this thread, its connection; else a connection that runs
        each statement alone (autocommit) on a pooled connection, rows read in full."""
        tx = self._current()
        if tx is not None:
            return tx.conn
        return self._autocommit

    @contextmanager
    def _transaction(
        self, begin: str, deadline: float | None, *, read_only: bool
    ) -> Iterator[PgConnection]:
        with self._borrow(deadline) as raw:
            with _translated():
                raw.execute(begin)
            conn = PgConnection(raw)
            tx = self._local.tx = _Transaction(conn, read_only)
            try:
                yield conn
            except BaseException as exc:
                self._local.tx = None
                self._rollback(raw)
                found = unavailable(exc)
                if found is not None and found is not exc:
                    raise found from exc
                raise
            self._local.tx = None
            if raw.info.transaction_status == TransactionStatus.INERROR:
                self._rollback(raw)
                raise TransactionAborted(
                    "a statement of this transaction failed earlier; it was rolled back and "
                    "nothing of it was stored"
                )
            try:
                with _translated():
                    # One NOTIFY per transaction however many jobs it recorded, sent with the
                    # COMMIT in one round trip (delivered when it commits); a part rolled back
                    # since costs only a spurious wake-up.
                    raw.execute(f"NOTIFY {JOBS_CHANNEL}; COMMIT" if tx.notify else "COMMIT")
            except BaseException:
                self._rollback(raw)
                raise

    @staticmethod
    def _rollback(raw: psycopg.Connection[Any]) -> None:
        """Roll back if a transaction is open; a connection that cannot is closed (the pool
        then replaces it)."""
        if raw.closed or raw.info.transaction_status == TransactionStatus.IDLE:
            return
        try:
            raw.execute("ROLLBACK")
        except psycopg.Error:
            raw.close()

    @staticmethod
    @contextmanager
    def _part(tx: _Transaction) -> Iterator[PgConnection]:
        """A SAVEPOINT of this thread's transaction: an error rolls back only this part."""
        if tx.read_only:
            raise RuntimeError("write() inside read(): open the write transaction first")
        raw = tx.conn.raw
        with _translated():
            raw.execute("SAVEPOINT unit_part")
        try:
            yield tx.conn
        except BaseException:
            if raw.info.transaction_status in (
                TransactionStatus.INTRANS,
                TransactionStatus.INERROR,
            ):
                with suppress(psycopg.Error):
                    raw.execute("ROLLBACK TO SAVEPOINT unit_part")
                    raw.execute("RELEASE SAVEPOINT unit_part")
            raise
        with _translated():
            raw.execute("RELEASE SAVEPOINT unit_part")

    @contextmanager
    def write(self, *, deadline: float | None = None) -> Iterator[PgConnection]:
        """One write transaction (READ COMMITTED): commit when the block ends, roll back on an
        error. Inside this thread's transaction, a SAVEPOINT of it instead.

        Raises PgBusy when no pooled connection is free by `deadline` (time.monotonic(); default
        `busy_timeout` seconds from now), or a lock or statement timeout, serialization failure
        or deadlock ends it; PgFull when the server's disk is full; PgUnavailable when the
        server cannot be reached or the connection is lost (then whether a COMMIT in flight
        landed is unknown); TransactionAborted when a statement failed and the block went on.
        The block's own exceptions pass through after the rollback. RuntimeError inside read().
        """
        tx = self._current()
        if tx is not None:
            with self._part(tx) as conn:
                yield conn
            return
        with self._transaction(
            "BEGIN ISOLATION LEVEL READ COMMITTED", deadline, read_only=False
        ) as conn:
            yield conn

    @contextmanager
    def unit(self, *, deadline: float | None = None) -> Iterator[PgConnection]:
        """One write transaction that this thread's `conn`, `read`, `write`, `write_grouped`
        and nested `unit` join until it ends (each writing one as a SAVEPOINT). Commit when the
        block ends, roll back everything on an error. Errors as for `write`."""
        with self.write(deadline=deadline) as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[PgConnection]:
        """A consistent snapshot (REPEATABLE READ, READ ONLY) on a pooled connection; inside
        this thread's transaction, that transaction (which sees its own writes). Errors as for
        `write`; writing in it fails (psycopg.errors.ReadOnlySqlTransaction)."""
        tx = self._current()
        if tx is not None:
            yield tx.conn
            return
        with self._transaction(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", None, read_only=True
        ) as conn:
            yield conn

    def write_grouped(self, work: Callable[[Connection], T]) -> T:
        """Run `work(conn)` in `write()` and return its result (or raise its error).

        SQLite shares one transaction among concurrent callers because it has one writer and
        one fsync per commit; PostgreSQL commits concurrent transactions in parallel and
        groups their WAL flushes itself, so each caller simply gets its own transaction.
        Inside this thread's transaction, `work` runs in a SAVEPOINT of it.
        """
        with self.write() as conn:
            return work(conn)

    # ---- the server's clock -----------------------------------------------------------------

    def _set_offset(self, server: float, t0: float, t1: float) -> None:
        with self._clock_lock:
            self._offset = server - (t0 + t1) / 2
            self._offset_pid = os.getpid()
            self._offset_at = time.monotonic()
            self.clock_uncertainty = (t1 - t0) / 2

    def now(self) -> float:
        """The database server's clock, in seconds since the epoch, so that every node agrees.

        This host's clock (webhook.clock.now(): time.time() unless a test replaced it) plus
        the server's offset from this host's wall clock, measured (one query) with each new
        pooled connection and again at most once per CLOCK_REFRESH_SECONDS when called. The
        error is at most half the measuring query's round trip (`clock_uncertainty`) plus
        this host's clock drift or steps since (at most a second ago). When it cannot be
        measured again, the last offset is used; when it never was, raises PgUnavailable or
        PgBusy.
        """
        return clock.now() + self.clock_offset()

    # now() is the server's clock: a host's wall-clock step moves no stored time.
    server_clock = True

    def clock_offset(self) -> float:
        """now() minus this host's clock (seconds): the server's clock offset, measured as
        `now()` says."""
        stale = (
            self._offset_pid != os.getpid()
            or time.monotonic() - self._offset_at >= CLOCK_REFRESH_SECONDS
        )
        if stale:
            self._measure_clock()
        return self._offset

    def _measure_clock(self) -> None:
        never = self._offset_pid != os.getpid()
        if not self._measuring.acquire(blocking=never):
            return  # another thread is measuring: the current offset will do meanwhile
        try:
            if not never and time.monotonic() - self._offset_at < CLOCK_REFRESH_SECONDS:
                return  # measured by another thread while this one waited

            tx = self._current()
            if tx is not None and tx.conn.raw.info.transaction_status == TransactionStatus.INTRANS:
                with _translated():
                    self._read_clock(tx.conn.raw)
            else:
                with self._borrow(None) as raw, _translated():
                    self._read_clock(raw)
        except PgUnavailable:
            if self._offset_pid != os.getpid():
                raise
            log.debug("could not measure the database server's clock; using the last offset")
        finally:
            self._measuring.release()

    def _read_clock(self, raw: psycopg.Connection[Any]) -> None:
        t0 = time.time()
        row = raw.execute(f"SELECT {_SERVER_EPOCH}").fetchone()
        t1 = time.time()
        if row is not None:
            self._set_offset(float(row[0]), t0, t1)

    # ---- upkeep -----------------------------------------------------------------------------

    def check_room(self, conn: Connection, nbytes: int) -> None:
        """Raise PgFull unless the database can take about `nbytes` more now.

        A real write: `nbytes` of incompressible text upserted into `meta` inside a savepoint of
        `conn`'s open write transaction, then rolled back (nothing stays). The server fails it
        with disk_full when it cannot extend the table or its WAL. Raises PgUnavailable when it
        refuses writes (a standby, default_transaction_read_only), other PgUnavailable
        subclasses as `write` does.
        """
        if not isinstance(conn, PgConnection):
            raise TypeError("check_room needs the connection of an open write transaction")
        raw = conn.raw
        with _translated():
            raw.execute("SAVEPOINT room")
        try:
            with _translated():
                raw.execute(
                    "INSERT INTO meta(key, value) VALUES ('room_probe',"
                    " (SELECT string_agg(md5(random()::text || n::text), '')"
                    " FROM generate_series(1, %s) AS n))"
                    " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (max(1, math.ceil(nbytes / 32)),),
                )
        except BaseException as exc:
            with suppress(psycopg.Error):
                raw.execute("ROLLBACK TO SAVEPOINT room")
                raw.execute("RELEASE SAVEPOINT room")
            if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
                raise PgUnavailable(f"the database refuses writes: {one_line(str(exc))}") from exc
            raise
        with _translated():
            raw.execute("ROLLBACK TO SAVEPOINT room")
            raw.execute("RELEASE SAVEPOINT room")

    def checkpoint(self) -> tuple[int, int]:
        """Nothing to do: PostgreSQL checkpoints on its own. Always (0, 0)."""
        return (0, 0)

    # ---- notifications ----------------------------------------------------------------------

    def reserve_ids(self, conn: Connection, table: str, n: int) -> list[int]:
        """`n` values of the table's identity sequence, in one round trip (nextval never
        hands the same value twice, whichever node asks)."""
        if n <= 0:
            return []
        rows = conn.execute(
            "SELECT nextval(pg_get_serial_sequence(?, 'id')) FROM generate_series(1, ?)",
            (table, n),
        ).fetchall()
        return [int(row[0]) for row in rows]

    def notify_jobs(self, conn: Connection) -> None:
        """Wake idle workers when `conn`'s transaction commits: noted on this thread's
        transaction and sent once, just before its COMMIT (at once outside a transaction)."""
        tx = self._current()
        if tx is not None and tx.conn is conn:
            tx.notify = True
        else:
            notify(conn, JOBS_CHANNEL)

    def wait_for_jobs(self, poll: float) -> bool:
        """Block an idle worker thread until a commit on any node called `notify_jobs` (True)
        or JOB_WAIT_SECONDS passed (False), so that jobs that merely came due are found too.
        True also right after the listening connection was (re)opened, since a notification
        may have been missed. `poll` (SQLite's polling interval) is not used: nothing polls."""
        listener = self._listener
        if listener is None:
            with self._lock:
                if self._listener is None:
                    self._listener = Listener(self._url, JOBS_CHANNEL)
                listener = self._listener
        return listener.wait(JOB_WAIT_SECONDS)

    # ---- life cycle -------------------------------------------------------------------------

    def migrate(self) -> int:
        """Create or migrate the database; return its schema version (see migrate.migrate).

        Raises PgUnusable, one line naming the database (password redacted) and the problem.
        """
        return migrate(self._url, connect_timeout=max(2.0, self.busy_timeout))

    def truncate_all(self) -> None:
        """Empty every table of the schema but schema_version and restart its identities (for
        tests that share one database between cases)."""
        tables = [name for name in table_names() if name != "schema_version"]
        self.conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")

    def close(self) -> None:
        """Close this process's pool and listening connection (a parent's are left alone)."""
        with self._lock:
            pool, self._pool = self._pool, None
            listener, self._listener = self._listener, None
            mine = self._pool_pid == os.getpid()
        if pool is not None and mine:
            pool.close()
        if listener is not None:
            listener.close()
