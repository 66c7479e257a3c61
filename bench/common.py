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


def spawn(
    cmd: list[str], env: dict[str, str], cwd: Path, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `cmd` in its own process group; its output goes to `log` (appended) or nowhere."""
    cwd.mkdir(parents=True, exist_ok=True)
    if log is None:
        out: Any = subprocess.DEVNULL
    else:
        out = open(log, "ab")  # noqa: SIM115 - the child holds it; closed below for us
    try:
        return subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        if log is not None:
            out.close()


def spawn_serve(
    env: dict[str, str],
    cwd: Path,
    port: int,
    workers: int,
    *extra: str,
    worker: bool = False,
    log: Path | None = None,
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
        log,
    )


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file ("" when it does not exist)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Cluster:
    """The `ado-webhook` processes of one benchmark column, each in its own folder under `work`
    with its log there.

    nodes == 1: one `serve` (with its background worker when `worker`, as deployed on one
    machine); nodes >= 2: `serve --no-worker` on that many ports, plus one `ado-webhook worker`
    when `worker`. `ports` lists the web nodes (picked here unless given); clients spread their
    connections over them.
    """

    def __init__(
        self,
        env: dict[str, str],
        work: Path,
        nodes: int,
        workers: int,
        *,
        worker: bool = True,
        worker_threads: int = 8,
        ports: list[int] | None = None,
    ) -> None:
        self.env, self.work, self.worker_threads = env, work, worker_threads
        self.ports = ports or [free_port() for _ in range(nodes)]
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        for i, port in enumerate(self.ports, start=1):
            folder = work / f"node{i}"
            folder.mkdir(parents=True, exist_ok=True)
            log = folder / "serve.log"
            embedded = worker and nodes == 1
            proc = spawn_serve(env, folder, port, workers, worker=embedded, log=log)
            self.procs.append((f"web node {i} (port {port})", proc, log))
        if worker and nodes > 1:
            self.start_worker()

    @property
    def base(self) -> str:
        """URL of the first web node (admin calls go there)."""
        return f"http://127.0.0.1:{self.ports[0]}"

    def start_worker(self) -> subprocess.Popen[bytes]:
        """Start one `ado-webhook worker` on the same database."""
        folder = self.work / "worker"
        folder.mkdir(parents=True, exist_ok=True)
        log = folder / "worker.log"
        cmd = [python(), "-m", "webhook.cli", "worker", "--threads", str(self.worker_threads)]
        proc = spawn(cmd, self.env, folder, log)
        self.procs.append(("worker", proc, log))
        return proc

    @property
    def pids(self) -> list[int]:
        """Process (and process-group) ids of every process started."""
        return [p.pid for _, p, _ in self.procs]

    def check(self) -> None:
        """Raise RuntimeError, with the end of its log, if a process has exited."""
        for name, proc, log in self.procs:
            if proc.poll() is not None:
                end = tail(log)
                last = end.splitlines()[-1] if end else "(empty log)"
                raise RuntimeError(
                    f"{name} exited with status {proc.returncode}: {last}\nend of {log}:\n{end}"
                )

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until every web node answers /healthz; raise RuntimeError when a process
        exits first, TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        for port in self.ports:
            while True:
                self.check()
                try:
                    if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"port {port} did not answer /healthz in {timeout:.0f} s")
                time.sleep(0.1)
        time.sleep(0.2)
        self.check()

    def logs(self) -> list[Path]:
        return [log for _, _, log in self.procs]

    def pause(self) -> None:
        for _, proc, _ in self.procs:
            pause(proc)

    def resume(self) -> None:
        for _, proc, _ in self.procs:
            resume(proc)

    def stop(self) -> None:
        """SIGTERM (then SIGKILL after 30 s) to every process group, the worker first."""
        for _, proc, _ in reversed(self.procs):
            kill(proc)


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


def _client(
    ports: list[int], first: int, requests_: Requests, duration: float, connections: int, out: Any
) -> None:
    deadline = time.monotonic() + duration
    totals = [0, 0]
    lock = threading.Lock()
    threads = [
        threading.Thread(
            target=_connection_loop,
            args=(
                ports[(first + i) % len(ports)],
                requests_[i::connections],
                deadline,
                totals,
                lock,
            ),
        )
        for i in range(connections)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration + 60)
    out.put((totals[0], totals[1]))


def load(
    port: int | list[int], per_client: list[Requests], duration: float, connections: int = 1
) -> tuple[float, int, int]:
    """One process per request list, each with `connections` keep-alive connections (threads)
    sending in a closed loop for `duration` s; return (elapsed, ok, errors). With several
    ports the connections take them in turn (connection k of all the clients' connections
    goes to ports[k % len(ports)])."""
    ports = port if isinstance(port, list) else [port]
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_client, args=(ports, c * connections, reqs, duration, connections, out))
        for c, reqs in enumerate(per_client)
    ]
    start = time.monotonic()
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=duration + 120) for _ in procs]
    except BaseException:  # Ctrl-C, SIGTERM, a timeout: stop the clients now
        for p in procs:
            p.kill()
        raise
    finally:
        for p in procs:
            p.join(timeout=30)
    elapsed = time.monotonic() - start
    return elapsed, sum(r[0] for r in results), sum(r[1] for r in results)


def python() -> str:
    return sys.executable
