"""Start `ado-webhook` as a real subprocess on loopback for end-to-end and crash tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "e2e-admin-token-0123456789abcdef"
# Set by the `engine` fixture (tests/conftest.py) while a test runs on PostgreSQL: every
# process started through service_env then uses that database instead of an SQLite file.
DATABASE_URL: str | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        WEBHOOK_DB=str(workdir / "var" / "webhook.db"),
        WEBHOOK_ADMIN_TOKEN=ADMIN_TOKEN,
        WEBHOOK_SECRET_KEY=Fernet.generate_key().decode(),
        WEBHOOK_RETRY_BASE_SECONDS="0.2",
        WEBHOOK_RETRY_CAP_SECONDS="2",
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    if DATABASE_URL:
        env["WEBHOOK_DATABASE_URL"] = DATABASE_URL
    env.update(extra)
    return env


def query_database(workdir: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of `sql` read straight from the database of the service started in `workdir` (its
    SQLite file after an integrity check, or the PostgreSQL database of the `engine` fixture)."""
    if DATABASE_URL:
        import psycopg

        with psycopg.connect(DATABASE_URL) as conn:
            return [tuple(row) for row in conn.execute(sql).fetchall()]
    import sqlite3

    with sqlite3.connect(workdir / "var" / "webhook.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [tuple(row) for row in conn.execute(sql).fetchall()]


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextmanager
def running_service(
    workdir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    workers: int = 2,
    port: int | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`ado-webhook serve` in its own process group; yields (base URL, process)."""
    port = port or free_port()
    cmd = [
        sys.executable,
        "-m",
        "webhook.cli",
        "serve",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        *args,
    ]
    log = open(workdir / f"serve-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        cmd,
        cwd=workdir,
        env=env or service_env(workdir),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz", proc=proc)
        yield base, proc
    finally:
        stop(proc)
        log.close()
