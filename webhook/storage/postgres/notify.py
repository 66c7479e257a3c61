"""Wake-ups for idle workers over PostgreSQL's LISTEN/NOTIFY (SPEC 6: no polling).

A writer calls `notify(conn, channel)` inside the transaction that makes work ready; PostgreSQL
delivers the notification when that transaction commits (never before, and not at all when it
rolls back), once per channel however often it was sent in the transaction. An idle worker
calls `Listener.wait(timeout)`, which returns as soon as a notification arrives. A notification
carries no payload: the worker rechecks the database, which stays the only source of truth.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import suppress
from typing import Any

import psycopg
from psycopg import sql

from webhook.storage.postgres import (
    APPLICATION_NAME,
    KEEPALIVES,
    conninfo_defaults,
    redact_url,
)
from webhook.storage.sql.db import Connection

log = logging.getLogger("webhook.db")


def notify(conn: Connection, channel: str) -> None:
    """Send an empty notification on `channel` through `conn`.

    Inside a transaction it is delivered when the transaction commits; on an autocommit
    connection at once. Errors are those of `conn.execute`.
    """
    conn.execute("SELECT pg_notify(?, '')", (channel,))


# Wake-ups owed to waiting threads at most; EVERYONE: _read's answer after a (re)connection,
# which wakes every thread waiting then (what was missed while not listening is unknown).
MAX_PERMITS = 64
EVERYONE = -1


class Listener:
    """One dedicated autocommit connection per process that LISTENs on `channel`.

    `wait(timeout)` blocks until a notification arrives (True) or `timeout` seconds pass
    (False). It also returns True right after it (re)connected, since notifications sent while
    it was not listening are lost: the caller rechecks the database whenever it gets True.
    Several threads may wait at once; each notification wakes ONE of them (a worker's idle
    threads would otherwise all query the database for every commit that recorded a job: at
    200 hook deliveries a second, eight threads made 1,600 claims a second). A reconnection
    wakes them all, since what they missed is unknown. The others find jobs that are already
    queued by their own one-second recheck, or the next notification. After a fork the child
    opens its own connection (the parent's is left alone). `url` is a libpq URL; it never
    appears in messages except redacted.
    """

    def __init__(self, url: str, channel: str, *, connect_timeout: float = 5.0) -> None:
        self._url = url
        self.channel = channel
        self.connect_timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._pid = 0
        self._cond = threading.Condition()
        self._reading = False
        self._permits = 0  # wake-ups owed to waiting threads (one per notification)
        self._generation = 0  # +1 on a reconnection: every thread waiting then rechecks

    @property
    def label(self) -> str:
        """The database's URL with its password redacted."""
        return redact_url(self._url)

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a notification; True when one came (or when the
        listening connection was just opened again, so one may have been missed), False when
        the time passed quietly. Never raises for a lost or unreachable server: it waits out
        the timeout instead and then returns True."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            seen = self._generation
            while True:
                if self._generation != seen:  # reconnected meanwhile: something may be missed
                    return True
                if self._permits > 0:  # a notification the reading thread passed on
                    self._permits -= 1
                    return True
                if not self._reading:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            self._reading = True
        got = 0
        try:
            got = self._read(deadline)
        finally:
            with self._cond:
                self._reading = False
                if got == EVERYONE:
                    self._generation += 1
                else:
                    # This thread takes one wake-up, the rest go to other waiters (bounded:
                    # notifications that came while every thread was busy cost a few rechecks).
                    self._permits = min(self._permits + max(0, got - 1), MAX_PERMITS)
                self._cond.notify_all()  # a permit to take, or the reading to take over
        return got != 0

    def _read(self, deadline: float) -> int:
        """As the one reading thread: wait on the connection until `deadline`; the number of
        notifications read (0: none came; EVERYONE after a reconnection)."""
        conn = self._conn if self._pid == os.getpid() else None
        if conn is None or conn.closed:
            try:
                self._connect()
            except psycopg.Error as exc:
                log.warning("cannot listen for job notifications on %s: %s", self.label, exc)
                time.sleep(max(0.0, deadline - time.monotonic()))
            return EVERYONE
        try:
            got = 0
            for _ in conn.notifies(timeout=max(0.0, deadline - time.monotonic()), stop_after=1):
                got += 1
            if got:  # and whatever else already arrived
                got += sum(1 for _ in conn.notifies(timeout=0.0))
            return got
        except psycopg.OperationalError as exc:
            log.warning(
                "lost the job notification connection to %s (%s); reconnecting",
                self.label,
                exc,
            )
            self._discard()
            try:
                self._connect()
            except psycopg.Error:
                time.sleep(max(0.0, deadline - time.monotonic()))
            return EVERYONE

    def _connect(self) -> None:
        params = conninfo_defaults(
            self._url,
            connect_timeout=max(1, round(self.connect_timeout)),
            application_name=APPLICATION_NAME,
            **KEEPALIVES,
        )
        conn = psycopg.connect(self._url, autocommit=True, **params)
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            with suppress(psycopg.Error):
                conn.close()

    def close(self) -> None:
        """Close this process's listening connection (call when no thread is waiting)."""
        with self._cond:
            self._discard()
