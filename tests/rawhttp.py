"""A misbehaving HTTP/1.1 peer on 127.0.0.1 for outbound-call tests: it trickles, floods or
holds its answers, and records how each answer ended ("finished" or "cut" by the client)."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable

ZEROS = bytes(64 * 1024)


class Cut(Exception):
    """The client closed the connection before the answer was complete."""


class Peer:
    """What a responder may do with one connection: send bytes, learn the client left."""

    def __init__(self, conn: socket.socket, server: RawServer) -> None:
        self.conn = conn
        self.server = server
        self.sent = 0

    def send(self, data: bytes) -> None:
        try:
            self.conn.sendall(data)
        except OSError:
            raise Cut() from None
        self.sent += len(data)


Responder = Callable[[Peer], None]


class RawServer:
    """Threaded socket server answering every request with ``respond(peer)``.

    ``outcomes`` receives ``(how, bytes_sent)`` per answer, ``how`` being "finished" or "cut";
    ``max_concurrent`` is the most requests it held at once.
    """

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.outcomes: queue.Queue[tuple[str, int]] = queue.Queue()
        self.requests = 0
        self.max_concurrent = 0
        self._active = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def outcome(self, timeout: float = 30.0) -> tuple[str, int]:
        """Return how the next answer ended."""
        return self.outcomes.get(timeout=timeout)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(60)
            while True:
                if not _read_request(conn):
                    return
                with self._lock:
                    self.requests += 1
                    self._active += 1
                    self.max_concurrent = max(self.max_concurrent, self._active)
                peer = Peer(conn, self)
                try:
                    self.respond(peer)
                except Cut:
                    self.outcomes.put(("cut", peer.sent))
                    return
                else:
                    self.outcomes.put(("finished", peer.sent))
                finally:
                    with self._lock:
                        self._active -= 1


def _read_request(conn: socket.socket) -> bool:
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = conn.recv(65536)
        except OSError:
            return False
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        body += chunk
    return True


# --------------------------------------------------------------------------- responders


def trickle_body(
    count: int = 40, every: float = 0.1, content_type: str = "text/plain"
) -> Responder:
    """Headers at once, then ``count`` body bytes one by one every ``every`` seconds."""

    def respond(peer: Peer) -> None:
        peer.send(
            f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {count}\r\n\r\n".encode()
        )
        for _ in range(count):
            time.sleep(every)
            peer.send(b"1")

    return respond


def trickle_head(count: int = 40, every: float = 0.1) -> Responder:
    """The first ``count`` bytes of the status line one by one, then the rest at once."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

    def respond(peer: Peer) -> None:
        for i in range(count):
            peer.send(answer[i : i + 1])
            time.sleep(every)
        peer.send(answer[count:])

    return respond


def flood(size: int, *, declare_length: bool, status: int = 200) -> Responder:
    """A ``size``-byte JSON-typed body generated on the fly (never held in memory)."""

    def respond(peer: Peer) -> None:
        length = f"Content-Length: {size}\r\n" if declare_length else "Connection: close\r\n"
        peer.send(
            f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n{length}\r\n".encode()
        )
        left = size
        while left > 0:
            chunk = ZEROS[: min(left, len(ZEROS))]
            peer.send(chunk)
            left -= len(chunk)
        if not declare_length:
            peer.conn.shutdown(socket.SHUT_WR)

    return respond


def hold(release: threading.Event, limit: float = 30.0) -> Responder:
    """Say nothing until ``release`` is set (at most ``limit`` seconds), then 200 with no body."""

    def respond(peer: Peer) -> None:
        release.wait(limit)
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    return respond
