"""Upkeep of the SQLite file: room checks before writes and WAL checkpoints (mixed into
Database)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from webhook.storage.sql.db import Connection
from webhook.storage.sqlite.faults import DatabaseFull, unavailable


class Upkeep:
    """Room checks and checkpoints (mixed into Database, which provides the attributes)."""

    busy_timeout: float
    _absolute: Path

    if TYPE_CHECKING:

        @property
        def conn(self) -> sqlite3.Connection: ...

        def _acquire(self, deadline: float) -> tuple[Callable[[], None], bool]: ...

    def check_room(self, conn: Connection, nbytes: int) -> None:
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
        assert isinstance(conn, sqlite3.Connection)  # this engine's own
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
