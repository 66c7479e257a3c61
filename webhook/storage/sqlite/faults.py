"""What SQLite failures mean to callers: the DatabaseUnavailable family (retry later) and
DatabaseUnusable (cannot start), mapped from SQLite result codes, and registered as the engine's
faults with `webhook.storage.errors`."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from webhook.storage.errors import StorageBusy, StorageUnusable, register_engine

# The longest any caller waits for the database: the writers' lock and SQLite's busy handler
# together. A scanner or Azure DevOps retries a 503 later; a request held for 20-30 s behind a
# stuck writer ties up a web thread and the sender's connection for nothing.
WAIT_SECONDS = 5.0


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
        return DatabaseUnavailable(f"{exc} ({exc.sqlite_errorname})")
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
