"""The PostgreSQL engine: `database.PgDatabase` (psycopg 3 with a connection pool per process),
`migrate` (baseline `schema.sql` and the `postgres` statements of `webhook.migrations`, under an
advisory lock), `notify` (LISTEN/NOTIFY wake-ups for idle workers) and `sqltext` (the shared
SQL's parameters in psycopg's style).

This module holds what those share: the engine's faults (the StorageBusy family a request may
meet, PgUnusable at start) and how to read psycopg's exceptions as them (registered with
`webhook.storage.errors` at import), URL redaction for messages, and the fork guard for pools
inherited by a forked child.
"""

from __future__ import annotations

import os
import re
import threading
import weakref
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool

from webhook.domain.database_url import hide_password
from webhook.domain.database_url import redact_url as redact_url  # for this package
from webhook.storage.errors import StorageBusy, StorageUnusable, register_engine

# ---- faults -------------------------------------------------------------------------------


class PgUnavailable(StorageBusy):
    """The database cannot take this request now and nothing of it was stored; retry later.

    The PostgreSQL face of `webhook.storage.errors.StorageBusy` (an HTTP 503 with Retry-After):
    the server cannot be reached, went away mid-request, or refuses writes (check_room).
    """

    reason = "database server unavailable"
    retry_after = 5


class PgBusy(PgUnavailable):
    """A wait outlasted its budget: no pooled connection free, a row or table lock held too
    long (lock_timeout), a statement cancelled (statement_timeout), a serialization failure
    or deadlock (the transaction was rolled back), or the server's connection limit."""

    reason = "busy"
    retry_after = 1


class PgFull(PgUnavailable):
    """The server's disk is full (SQLSTATE 53100)."""

    reason = "disk full"
    retry_after = 30


class PgUnusable(StorageUnusable):
    """The database cannot be used at start: one line naming it (password redacted) and the
    problem. `location` is the redacted URL; `path` is kept for StorageUnusable's readers."""

    def __init__(self, location: str, problem: str) -> None:
        super().__init__(Path(location), problem)
        self.args = (f"database {location}: {problem}",)
        self.location = location


# SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_BUSY_STATES = frozenset(
    {
        "55P03",  # lock_not_available (lock_timeout)
        "57014",  # query_canceled (statement_timeout)
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "53300",  # too_many_connections
    }
)
_DISK_FULL = "53100"
# connection_exception, insufficient_resources, operator_intervention (shutdown, database
# dropped), system_error (I/O). Not read_only_sql_transaction: a write inside read() is a bug
# to see; a database that refuses writes is found at start (migrate) and by check_room.
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")


def unavailable(exc: BaseException) -> PgUnavailable | None:
    """The PgUnavailable an exception stands for, or None if it is no such condition.

    psycopg errors map by SQLSTATE: lock and statement timeouts, serialization failures,
    deadlocks and too many connections → PgBusy; disk full → PgFull; connection failures,
    other resource shortages, shutdowns and I/O errors → PgUnavailable. A pool wait that
    timed out → PgBusy; an OperationalError without SQLSTATE (the connection was lost or
    closed) → PgUnavailable.
    """
    if isinstance(exc, PgUnavailable):
        return exc
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return PgBusy("no database connection became free within the wait budget")
    if not isinstance(exc, psycopg.Error):
        return None
    state = exc.sqlstate or ""
    detail = one_line(str(exc))
    if state in _BUSY_STATES:
        return PgBusy(detail)
    if state == _DISK_FULL:
        return PgFull(detail)
    if state[:2] in _UNAVAILABLE_CLASSES:
        return PgUnavailable(detail)
    if not state and isinstance(exc, psycopg.OperationalError):
        return PgUnavailable(f"database connection lost: {detail}")
    return None


def _operational(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.OperationalError)


register_engine(unavailable=unavailable, operational=_operational)


# libpq's own complaint about a URL quotes the text around the fault, which may be the
# password: it is never shown.
INVALID_URL = (
    "is not a valid PostgreSQL URL (check its form, postgresql://user:password@host:port/dbname,"
    " and that @ / : % in the user name or password are percent-encoded)"
)


def one_line(text: str) -> str:
    """`text` on one line (PostgreSQL messages carry DETAIL and HINT lines)."""
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def connect_problem(exc: BaseException, url: str) -> str:
    """Why a connection to `url` failed, in one line without the password.

    libpq's text ('connection failed: connection to server at "h", port 5432 failed: FATAL:
    database "x" does not exist') is cut to its last reason, with a hint for the usual ones.
    """
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    reason = first.rsplit("failed: ", 1)[-1].strip()
    reason = re.sub(r"^(FATAL|ERROR):\s+", "", reason)
    if not reason:
        reason = type(exc).__name__
    lowered = reason.lower()
    if "connection refused" in lowered:
        reason = "connection refused (is PostgreSQL running there and accepting TCP connections?)"
    elif "timeout expired" in lowered:
        reason = "no answer from the server (timeout expired)"
    elif "does not exist" in lowered and lowered.startswith("database"):
        reason = f"{reason} (create it first, e.g. with createdb)"
    return hide_password(reason, url)


# ---- URLs and connection parameters -------------------------------------------------------

APPLICATION_NAME = "ado-webhook"  # shown in pg_stat_activity
# TCP keepalives, so that a connection silently cut (no reset from the other side) is noticed
# within about a minute instead of the kernel's retransmission timeout (~15 minutes).
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def conninfo_defaults(url: str, **defaults: Any) -> dict[str, Any]:
    """The libpq parameters of `defaults` that `url` does not set itself (the URL wins).

    Raises psycopg.ProgrammingError when `url` is not a valid libpq URL or conninfo string.
    """
    given = psycopg.conninfo.conninfo_to_dict(url)
    return {key: value for key, value in defaults.items() if key not in given}


# ---- fork guard ---------------------------------------------------------------------------
#
# A forked child inherits its parent's sockets; closing a connection there would send the
# server a Terminate message that ends the PARENT's session. psycopg itself never finishes a
# connection that another process opened when it is garbage-collected, and this package never
# closes one explicitly outside the process that opened it (each checks os.getpid()). What is
# left is the parent's pool object: its finalizer signals worker threads that do not exist in
# the child (and could block on a queue lock held at the fork), so the child marks it closed.

_pools: weakref.WeakKeyDictionary[psycopg_pool.ConnectionPool[Any], int] = (
    weakref.WeakKeyDictionary()
)
_pools_lock = threading.Lock()


def track(pool: psycopg_pool.ConnectionPool[Any]) -> None:
    """Remember that this process opened `pool`, so that a forked child lets go of it
    without running its finalizer."""
    with _pools_lock:
        _pools[pool] = os.getpid()


def _let_go_of_inherited() -> None:
    global _pools_lock
    _pools_lock = threading.Lock()  # another thread of the parent may have held it
    pid = os.getpid()
    for pool, owner in list(_pools.items()):
        if owner != pid:
            del _pools[pool]
            pool._closed = True  # its finalizer then does nothing; its connections stay unused


os.register_at_fork(after_in_child=_let_go_of_inherited)
