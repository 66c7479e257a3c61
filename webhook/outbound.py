"""Bounded outbound HTTP: every call has a total deadline and a response-size cap, and no
destination takes more than its share of the sync worker's threads.

Every call the service makes to someone else — Azure DevOps (:mod:`webhook.ado`), Entra ID
token requests, scanner callbacks (:mod:`webhook.callbacks`) — goes through :func:`send`:

- ``stream=True`` with connect/read timeouts (each shortened to what is left of the deadline),
  redirects never followed;
- a **total deadline** (monotonic clock) covering connection, request, headers and body. A
  per-read timeout alone lets a peer that trickles one byte every few seconds hold a thread
  forever, so a process-wide watchdog thread shuts the connection's socket down when the
  deadline passes, whichever phase the call is in (sessions from :func:`new_session` only; the
  body loop checks the clock between chunks in any case);
- a **size cap** on the (decoded) body, read in chunks: a ``Content-Length`` over the cap is
  refused before reading anything, a longer body is cut at the cap and its connection closed.

Failures are ``requests`` exceptions (:class:`DeadlineExceeded` is a ``requests.Timeout``,
:class:`ResponseTooLarge` a ``requests.RequestException``), so every caller's existing handling
of network failures — transient, retried with backoff — covers them.

**Shares of the worker's threads.** :data:`SHARES` counts calls in flight per destination in
this process. A worker job takes a slot before calling (see :meth:`Shares.slot`); when its
destination already has its share it waits at most :data:`SLOT_WAIT_SECONDS` and then gives up
with :class:`DestinationBusy`, which the job's caller turns into "retry in a few seconds without
counting an attempt". With ``T`` worker threads (:func:`set_worker_threads`, default 8):

- one scanner callback host (``host:port``) gets at most ``max(1, T // 4)`` threads, and all
  callbacks together at most ``max(1, T // 2)`` — so Azure DevOps work never waits behind slow
  scanners;
- one Azure DevOps organization gets at most ``max(1, T - 1)`` — a slow organization always
  leaves a thread to the others and to callbacks, while a lone organization draining a backlog
  keeps nearly all of them (``bench.drain``: 6 of 8 threads cost a fifth of the throughput).

The short wait (instead of failing at once) keeps a full-but-fast destination (one organization
with a backlog) from making idle threads claim and bounce jobs in a tight loop.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = [
    "CHUNK_BYTES",
    "SHARES",
    "SLOT_WAIT_SECONDS",
    "Bounds",
    "DeadlineExceeded",
    "DestinationBusy",
    "ResponseTooLarge",
    "Shares",
    "ado_organization_share",
    "callback_host_share",
    "callbacks_share",
    "new_session",
    "send",
    "set_worker_threads",
]

CHUNK_BYTES = 64 * 1024
# A watched connection whose socket is not open yet when its deadline passes is looked at
# again this often (its connect timeout bounds how long that lasts).
_RECHECK_SECONDS = 0.05


class DeadlineExceeded(requests.exceptions.Timeout):
    """The whole call took longer than its total deadline (whatever each read took)."""


class ResponseTooLarge(requests.RequestException):
    """The response body is larger than the cap for this kind of call."""


@dataclass(frozen=True)
class Bounds:
    """Limits of one outbound call.

    ``connect``: seconds to open the connection; ``read``: seconds any single read may wait;
    ``total``: seconds for the whole call, from the first connection attempt to the last body
    byte; ``max_bytes``: the largest (decoded) body read; ``truncate``: a longer body is cut
    silently (the caller does not need it) instead of raising :class:`ResponseTooLarge`.
    """

    connect: float
    read: float
    total: float
    max_bytes: int
    truncate: bool = False


# --------------------------------------------------------------------------- the watchdog


@dataclass(eq=False)
class _Arm:
    """One call's deadline and the connections it used."""

    due: float
    conns: list[Any] = field(default_factory=list)
    cut: set[int] = field(default_factory=set)


class _Watchdog:
    """One daemon thread that shuts down the sockets of calls past their deadline."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._arms: set[_Arm] = set()
        self._local = threading.local()
        self._thread: threading.Thread | None = None
        self._wake: float | None = None  # when the watchdog thread looks next (None: idle)

    @contextlib.contextmanager
    def armed(self, due: float) -> Iterator[_Arm]:
        """Watch every connection this thread uses inside the block until monotonic ``due``."""
        arm = _Arm(due)
        outer = getattr(self._local, "arm", None)
        with self._cond:
            self._arms.add(arm)
            self._start()
            if self._wake is None or due < self._wake:
                self._cond.notify()  # otherwise it wakes early enough anyway
        self._local.arm = arm
        try:
            yield arm
        finally:
            self._local.arm = outer
            with self._cond:
                self._arms.discard(arm)
                for conn in arm.conns:
                    if getattr(conn, "_adowh_arm", None) is arm:
                        conn._adowh_arm = None

    def watch(self, conn: Any) -> None:
        """Bind ``conn`` to the calling thread's current deadline (if any)."""
        arm = getattr(self._local, "arm", None)
        if arm is None:
            return
        with self._cond:
            conn._adowh_arm = arm
            if conn not in arm.conns:
                arm.conns.append(conn)
            if arm.due <= time.monotonic():
                self._cond.notify()

    @staticmethod
    def release(conn: Any) -> None:
        """``conn`` went back to its pool: no deadline of the call that used it applies."""
        if conn is not None:
            conn._adowh_arm = None

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="outbound-watchdog", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                wake: float | None = None
                for arm in self._arms:
                    due: float | None = arm.due
                    if arm.due <= now:
                        due = now + _RECHECK_SECONDS if self._cut(arm) else None
                    if due is not None:
                        wake = due if wake is None else min(wake, due)
                self._wake = wake
                self._cond.wait(None if wake is None else max(0.0, wake - now))

    @staticmethod
    def _cut(arm: _Arm) -> bool:
        """Shut down the sockets of an expired call; True while one is still opening."""
        opening = False
        for conn in arm.conns:
            if getattr(conn, "_adowh_arm", None) is not arm:
                continue  # back in its pool, or used by another call by now
            sock = getattr(conn, "sock", None)
            if sock is None:
                opening = True
                continue
            if id(sock) in arm.cut:
                continue
            arm.cut.add(id(sock))
            _shutdown(sock)
        return opening


def _shutdown(sock: Any) -> None:
    # socket.socket.shutdown itself, not SSLSocket.shutdown (which also drops the TLS object
    # under the feet of the thread reading from it): a blocked recv then returns at once.
    raw = sock if isinstance(sock, socket.socket) else getattr(sock, "socket", None)
    if isinstance(raw, socket.socket):
        with contextlib.suppress(OSError):
            socket.socket.shutdown(raw, socket.SHUT_RDWR)


_WATCHDOG = _Watchdog()


class _Watched:
    """Mixin for urllib3 connections: the watchdog may cut the socket at the call's deadline."""

    def connect(self) -> None:
        _WATCHDOG.watch(self)
        super().connect()  # type: ignore[misc]

    def request(self, *args: Any, **kwargs: Any) -> None:
        _WATCHDOG.watch(self)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection

    def _put_conn(self, conn: Any) -> None:
        _WATCHDOG.release(conn)
        super()._put_conn(conn)


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection

    def _put_conn(self, conn: Any) -> None:
        _WATCHDOG.release(conn)
        super()._put_conn(conn)


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """A requests adapter whose connections the deadline watchdog can cut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if hasattr(manager, "pool_classes_by_scheme") and not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


def new_session() -> requests.Session:
    """Return a ``requests.Session`` whose calls through :func:`send` the watchdog can cut."""
    session = requests.Session()
    adapter = _WatchedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# --------------------------------------------------------------------------- one call


def send(
    session: requests.Session, method: str, url: str, *, bounds: Bounds, **kwargs: Any
) -> requests.Response:
    """Send one request within ``bounds`` and return the response with its body read.

    ``kwargs`` go to ``session.request`` (``data``, ``headers``, ``auth``…); ``stream``,
    ``timeout`` and ``allow_redirects`` are set here (redirects are never followed). The body
    is in ``resp.content`` (cut at ``bounds.max_bytes`` when ``bounds.truncate``).

    Raises :class:`DeadlineExceeded` when the call outlives ``bounds.total`` seconds,
    :class:`ResponseTooLarge` when the body exceeds ``bounds.max_bytes`` (unless truncating),
    and any other ``requests.RequestException`` as ``requests`` does.
    """
    due = time.monotonic() + bounds.total
    with _WATCHDOG.armed(due):
        try:
            resp = session.request(
                method,
                url,
                stream=True,
                timeout=_left(bounds, due),
                allow_redirects=False,
                **kwargs,
            )
        except requests.RequestException as exc:
            if time.monotonic() >= due and not isinstance(exc, DeadlineExceeded):
                raise _late(method, url, bounds) from None
            raise
        try:
            body = _read_body(resp, bounds, due)
        except requests.RequestException as exc:
            _close(resp)
            if time.monotonic() >= due and not isinstance(exc, DeadlineExceeded):
                raise _late(method, url, bounds) from None
            raise
        except BaseException:
            _close(resp)
            raise
    # requests keeps a read body in these private attributes (models.Response.content); the
    # stubs declare `_content` only, so `_content_consumed` needs the ignore.
    resp._content = body
    resp._content_consumed = True  # type: ignore[attr-defined]
    return resp


def _left(bounds: Bounds, due: float) -> tuple[float, float]:
    left = max(0.001, due - time.monotonic())
    return (min(bounds.connect, left), min(bounds.read, left))


def _late(method: str, url: str, bounds: Bounds) -> DeadlineExceeded:
    parts = urlsplit(url)  # host and port only: never a user name or password from the URL
    host = parts.hostname or "?"
    try:
        where = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        where = host
    return DeadlineExceeded(f"{method} {where} took longer than {bounds.total:g} s in all")


def _read_body(resp: requests.Response, bounds: Bounds, due: float) -> bytes:
    # A stand-in session that already holds the body (private requests attribute, see above).
    if resp._content_consumed:  # type: ignore[attr-defined]
        content = resp.content or b""
        return _fit(content, resp, bounds)
    declared = resp.headers.get("Content-Length", "")
    if not bounds.truncate and declared.isdigit() and int(declared) > bounds.max_bytes:
        raise ResponseTooLarge(_too_large(resp, bounds), response=resp)
    chunks: list[bytes] = []
    size = 0
    for chunk in resp.iter_content(CHUNK_BYTES):
        if time.monotonic() >= due:
            raise DeadlineExceeded(f"the answer took longer than {bounds.total:g} s in all")
        size += len(chunk)
        if size > bounds.max_bytes:
            if not bounds.truncate:
                raise ResponseTooLarge(_too_large(resp, bounds), response=resp)
            chunks.append(chunk[: len(chunk) - (size - bounds.max_bytes)])
            _close(resp)  # the rest is never read: drop the connection
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _close(resp: requests.Response) -> None:
    """Close the connection of a response whose body was not read to its end."""
    if resp.raw is not None:
        resp.close()


def _fit(content: bytes, resp: requests.Response, bounds: Bounds) -> bytes:
    if len(content) <= bounds.max_bytes:
        return content
    if bounds.truncate:
        return content[: bounds.max_bytes]
    raise ResponseTooLarge(_too_large(resp, bounds), response=resp)


def _too_large(resp: requests.Response, bounds: Bounds) -> str:
    return (
        f"the answer (HTTP {resp.status_code}) is larger than {_size(bounds.max_bytes)}, "
        "the most read from this destination"
    )


def _size(n: int) -> str:
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} bytes"


# --------------------------------------------------------------------------- shares


SLOT_WAIT_SECONDS = 0.2
# A job whose destination is full is tried again after a random delay in this range.
BUSY_RETRY_SECONDS = (1.0, 3.0)


class DestinationBusy(Exception):
    """The destination already has its share of worker threads; try the job again shortly.

    ``delay``: seconds after which to try again. Not a failure of the job: no attempt counts.
    """

    def __init__(self, destination: str, limit: int, delay: float) -> None:
        super().__init__(
            f"{destination} already has {limit} call(s) in flight, its share of the worker's "
            f"threads; trying again in {delay:.1f} s"
        )
        self.destination = destination
        self.limit = limit
        self.delay = delay


class Shares:
    """Calls in flight per destination in this process, each destination capped."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._busy: Counter[str] = Counter()

    def acquire(
        self, keys: Sequence[tuple[str, int]], *, wait: float = SLOT_WAIT_SECONDS
    ) -> Callable[[], None]:
        """Take one slot of every ``(destination, limit)`` in ``keys``; return the release.

        Waits at most ``wait`` seconds for all of them at once, then raises
        :class:`DestinationBusy` naming the destination that is full.
        """
        give_up = time.monotonic() + wait
        with self._cond:
            while True:
                full = next(((k, n) for k, n in keys if self._busy[k] >= n), None)
                if full is None:
                    break
                left = give_up - time.monotonic()
                if left <= 0:
                    delay = self._rng.uniform(*BUSY_RETRY_SECONDS)
                    raise DestinationBusy(full[0], full[1], delay)
                self._cond.wait(left)
            for key, _ in keys:
                self._busy[key] += 1
        released = False

        def release() -> None:
            nonlocal released
            with self._cond:
                if released:
                    return
                released = True
                for key, _ in keys:
                    self._busy[key] -= 1
                    if self._busy[key] <= 0:
                        del self._busy[key]
                self._cond.notify_all()

        return release

    @contextlib.contextmanager
    def slot(
        self, keys: Sequence[tuple[str, int]], *, wait: float = SLOT_WAIT_SECONDS
    ) -> Iterator[None]:
        """Hold the slots of :meth:`acquire` for the block."""
        release = self.acquire(keys, wait=wait)
        try:
            yield
        finally:
            release()

    def in_flight(self, key: str) -> int:
        """Return how many calls to ``key`` are in flight now."""
        with self._cond:
            return self._busy[key]


SHARES = Shares()
_worker_threads = 8


def set_worker_threads(threads: int) -> None:
    """Tell the shares how many job threads this process's worker runs (default 8)."""
    global _worker_threads
    _worker_threads = max(1, int(threads))


def callback_host_share() -> int:
    """Return the most worker threads one scanner callback host may hold."""
    return max(1, _worker_threads // 4)


def callbacks_share() -> int:
    """Return the most worker threads all scanner callbacks together may hold."""
    return max(1, _worker_threads // 2)


def ado_organization_share() -> int:
    """Return the most worker threads one Azure DevOps organization may hold."""
    return max(1, _worker_threads - 1)


def _reset_after_fork() -> None:
    # Locks held by other threads at fork time would stay locked in the child; the watchdog
    # thread does not exist there either.
    _WATCHDOG._reset()
    SHARES._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
