"""Shared benchmark plumbing: start processes on loopback, pre-built HTTP load from processes."""

from __future__ import annotations

import http.client
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def spawn(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def spawn_serve(
    env: dict[str, str], cwd: Path, port: int, workers: int, *extra: str, worker: bool = False
) -> subprocess.Popen[bytes]:
    """`ado-webhook serve` on 127.0.0.1:port; without its background worker unless `worker`."""
    return spawn(
        [
            python(),
            "-m",
            "webhook.cli",
            "serve",
            *([] if worker else ["--no-worker"]),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            *extra,
        ],
        env,
        cwd,
    )


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGCONT)  # in case it was paused
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def pause(proc: subprocess.Popen[bytes]) -> None:
    """Stop a spawned process group (SIGSTOP): an idle server then takes no CPU at all."""
    os.killpg(proc.pid, signal.SIGSTOP)


def resume(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGCONT)


Requests = list[tuple[str, str, bytes, dict[str, str]]]


def _connection_loop(
    port: int, requests_: Requests, deadline: float, totals: list[int], lock: threading.Lock
) -> None:
    """Send requests one after another on one keep-alive connection until the deadline."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    done = errors = 0
    for method, path, body, headers in requests_:
        if time.monotonic() >= deadline:
            break
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status >= 300:
                errors += 1
            else:
                done += 1
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()
    with lock:
        totals[0] += done
        totals[1] += errors


def _client(port: int, requests_: Requests, duration: float, connections: int, out: Any) -> None:
    deadline = time.monotonic() + duration
    totals = [0, 0]
    lock = threading.Lock()
    threads = [
        threading.Thread(
            target=_connection_loop,
            args=(port, requests_[i::connections], deadline, totals, lock),
        )
        for i in range(connections)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration + 60)
    out.put((totals[0], totals[1]))


def load(
    port: int, per_client: list[Requests], duration: float, connections: int = 1
) -> tuple[float, int, int]:
    """One process per request list, each with `connections` keep-alive connections (threads)
    sending in a closed loop for `duration` s; return (elapsed, ok, errors)."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_client, args=(port, reqs, duration, connections, out))
        for reqs in per_client
    ]
    start = time.monotonic()
    for p in procs:
        p.start()
    results = [out.get(timeout=duration + 120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    elapsed = time.monotonic() - start
    return elapsed, sum(r[0] for r in results), sum(r[1] for r in results)


def python() -> str:
    return sys.executable
