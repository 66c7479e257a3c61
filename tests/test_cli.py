"""`ado-webhook` commands as a user runs them, in real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests

from tests.conftest import risk, signed_headers
from tests.servers import ADMIN_TOKEN, REPO, free_port, running_service, service_env

pytestmark = pytest.mark.e2e  # every test here runs `ado-webhook` in a child process


def run_cli(args: list[str], env: dict[str, str], cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_without_admin_token_fails_with_one_clear_line(tmp_path) -> None:
    env = service_env(tmp_path)
    del env["WEBHOOK_ADMIN_TOKEN"]
    result = run_cli(["serve"], env, tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "WEBHOOK_ADMIN_TOKEN" in lines[0]
    assert "Traceback" not in result.stderr


def test_worker_without_secret_key_fails_with_one_clear_line(tmp_path) -> None:
    env = service_env(tmp_path)
    del env["WEBHOOK_SECRET_KEY"]
    result = run_cli(["worker"], env, tmp_path)
    assert result.returncode != 0
    assert "WEBHOOK_SECRET_KEY" in result.stderr and "Traceback" not in result.stderr


def test_invalid_secret_key_is_refused(tmp_path) -> None:
    result = run_cli(["init-db"], service_env(tmp_path, WEBHOOK_SECRET_KEY="short"), tmp_path)
    assert result.returncode != 0 and "WEBHOOK_SECRET_KEY" in result.stderr


def test_init_db_creates_and_is_idempotent(tmp_path) -> None:
    env = service_env(tmp_path)
    first = run_cli(["init-db"], env, tmp_path)
    second = run_cli(["init-db"], env, tmp_path)
    assert first.returncode == second.returncode == 0
    assert (tmp_path / "var" / "webhook.db").exists()


def test_serve_dev_from_empty_folder_accepts_a_signed_risk(tmp_path) -> None:
    env = {
        k: v
        for k, v in service_env(tmp_path).items()
        if k not in ("WEBHOOK_ADMIN_TOKEN", "WEBHOOK_SECRET_KEY", "WEBHOOK_DB")
    }
    with running_service(tmp_path, "--dev", env=env) as (base, _):
        secrets_file = tmp_path / "var" / "dev-secrets.env"
        values = dict(line.split("=", 1) for line in secrets_file.read_text().splitlines())
        assert oct(secrets_file.stat().st_mode & 0o777) == "0o600"
        admin = {"Authorization": f"Bearer {values['WEBHOOK_ADMIN_TOKEN']}"}
        src = requests.post(
            base + "/admin/sources", json={"name": "sast"}, headers=admin, timeout=10
        ).json()
        body = json.dumps({"risk": risk("R-1")}).encode()
        resp = requests.post(
            base + "/webhooks/risks/sast",
            data=body,
            headers=signed_headers(src["secret"], body),
            timeout=10,
        )
        assert resp.status_code == 202
        assert resp.json()["risks"][0]["action"] == "created"
        assert (tmp_path / "var" / "webhook.db").exists()
        assert requests.get(base + "/healthz", timeout=5).json() == {"status": "ok"}
        log = next(tmp_path.glob("serve-*.log")).read_text()
        assert log.count(values["WEBHOOK_ADMIN_TOKEN"]) == 1  # printed once, at generation
        assert src["secret"] not in log


def test_serve_runs_the_worker_so_readyz_turns_ready(tmp_path) -> None:
    with running_service(tmp_path) as (base, _):
        import time

        deadline = time.monotonic() + 20
        status = 0
        while time.monotonic() < deadline:
            status = requests.get(base + "/readyz", timeout=5).status_code
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200
        metrics = requests.get(base + "/metrics", timeout=5).text
        assert "adowh_jobs" in metrics or "adowh_worker_heartbeat_age_seconds" in metrics
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert requests.get(base + "/admin/risks", headers=admin, timeout=5).status_code == 200


def test_package_finds_schema_outside_the_checkout(tmp_path) -> None:
    """schema.sql is packaged: the wheel contains webhook/schema.sql."""
    import zipfile

    dist = tmp_path / "dist"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PIP_NO_INDEX": "1"},
    )
    if result.returncode != 0:
        import pytest

        pytest.skip(f"cannot build a wheel offline here: {result.stderr[-300:]}")
    wheel = next(dist.glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "webhook/schema.sql" in names
    assert any(n.startswith("webhook/sandbox/") for n in names)


def test_installed_console_script_runs_from_an_empty_folder(tmp_path) -> None:
    """The README's run command: the installed `ado-webhook serve --dev` answers /healthz."""
    import shutil
    import signal
    import time
    from pathlib import Path

    import pytest

    from tests.servers import free_port, stop, wait_http

    script = Path(sys.executable).parent / "ado-webhook"
    if not script.exists() and shutil.which("ado-webhook") is None:
        pytest.skip("package not installed into this environment (pip install .)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_")}
    env.pop("PYTHONPATH", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = free_port()
    proc = subprocess.Popen(
        [
            str(script if script.exists() else "ado-webhook"),
            "serve",
            "--dev",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json() == {
            "status": "ok"
        }
        assert (tmp_path / "var" / "webhook.db").exists()
        time.sleep(0.2)
    finally:
        stop(proc, signal.SIGTERM)
        if proc.stderr:
            proc.stderr.close()


def _newer_schema(path) -> None:
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")


def _garbage(path) -> None:
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    path.write_bytes(b"this is not an SQLite database\n" * 200)


def _folder(path) -> None:
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    path.mkdir()


def _read_only(path) -> None:
    """A database the service cannot write, in a way that also stops root (who ignores modes)."""
    import pytest

    if os.geteuid() != 0:
        path.chmod(0o400)
        return
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip("running as root and cannot make a file immutable (chattr) here")


def _writable_again(path) -> None:
    if path.is_file() and os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)


def _args(command: str) -> list[str]:
    if command == "serve":
        return [command, "--no-worker", "--bind", f"127.0.0.1:{free_port()}"]
    return [command]


UNUSABLE = {
    "newer-schema": (_newer_schema, "schema version 99 is newer"),
    "not-a-database": (_garbage, "not an SQLite database"),
    "a-folder": (_folder, "is a folder"),
    "read-only": (_read_only, "read-only"),
}


@pytest.mark.parametrize("command", ["init-db", "worker", "serve"])
@pytest.mark.parametrize("problem", list(UNUSABLE))
def test_an_unusable_database_is_refused_with_one_clear_line(tmp_path, problem, command) -> None:
    env = service_env(tmp_path)
    assert run_cli(["init-db"], env, tmp_path).returncode == 0
    db = tmp_path / "var" / "webhook.db"
    spoil, words = UNUSABLE[problem]
    spoil(db)
    try:
        result = run_cli(_args(command), env, tmp_path)
    finally:
        _writable_again(db)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(db) in lines[0] and words in lines[0]
    if problem == "newer-schema":  # left as it was
        import sqlite3

        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == 99


@pytest.mark.parametrize(
    ("authority", "hosts"),
    [
        ("http://login.microsoftonline.com", ""),
        ("http://127.0.0.1:8765", ""),  # loopback, but not listed
        ("https://user:pw@login.microsoftonline.com", ""),
        ("https://login.microsoftonline.com?x=1", ""),
        ("ftp://login.microsoftonline.com", ""),
        ("login.microsoftonline.com", ""),
    ],
)
def test_a_bad_entra_authority_is_refused_at_start(tmp_path, authority, hosts) -> None:
    env = service_env(tmp_path, WEBHOOK_ENTRA_AUTHORITY=authority, WEBHOOK_ALLOWED_ORG_HOSTS=hosts)
    result = run_cli(_args("serve"), env, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "WEBHOOK_ENTRA_AUTHORITY" in lines[0], result.stderr
    assert "pw" not in lines[0]


def test_init_db_makes_the_database_and_its_folder_owner_only(tmp_path) -> None:
    result = run_cli(["init-db"], service_env(tmp_path), tmp_path)
    assert result.returncode == 0
    assert oct((tmp_path / "var").stat().st_mode & 0o777) == "0o700"
    assert oct((tmp_path / "var" / "webhook.db").stat().st_mode & 0o777) == "0o600"


def test_a_locked_database_is_503_with_retry_after_and_healthz_still_answers(tmp_path) -> None:
    """A real `serve`: another process holds the writers' lock far longer than the wait budget.

    Every thread of the only web process takes a delivery that waits for the database; each
    answers 503 with Retry-After within the budget (requests' timeout is the bound), /healthz
    answers meanwhile, and once the lock is free the retried delivery is stored.
    """
    import fcntl
    import threading

    with running_service(tmp_path, "--no-worker", workers=1) as (base, _):
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        src = requests.post(
            base + "/admin/sources", json={"name": "sast"}, headers=admin, timeout=10
        ).json()

        def deliver(key: str) -> requests.Response:
            body = json.dumps({"risk": risk(key)}).encode()
            headers = signed_headers(src["secret"], body, msg_id=f"msg-{key}")
            url = base + "/webhooks/risks/sast"
            return requests.post(url, data=body, headers=headers, timeout=20)

        answers: dict[str, requests.Response | BaseException] = {}

        def call(key: str) -> None:
            try:
                answers[key] = deliver(key)
            except requests.RequestException as exc:
                answers[key] = exc

        lock = os.open(tmp_path / "var" / "webhook.db.writer-lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX)  # held as a stuck writer in another process would
        try:
            threads = [threading.Thread(target=call, args=(f"R-{n}",)) for n in range(4)]
            for thread in threads:
                thread.start()
            health = requests.get(base + "/healthz", timeout=20)
            for thread in threads:
                thread.join(timeout=60)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            os.close(lock)
        assert health.status_code == 200
        for key in ("R-0", "R-1", "R-2", "R-3"):
            resp = answers[key]
            assert isinstance(resp, requests.Response), resp
            assert resp.status_code == 503 and int(resp.headers["Retry-After"]) > 0
        again = deliver("R-0")
        assert again.status_code == 202 and again.json()["risks"][0]["action"] == "created"


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_secret_key_that_does_not_decrypt_the_database_is_refused_at_start(
    tmp_path, command
) -> None:
    """After copy-db with the wrong WEBHOOK_SECRET_KEY, the service used to start, report
    ready, and answer 500 on the first use of a stored secret; now it names the problem."""
    from cryptography.fernet import Fernet

    env = service_env(tmp_path)
    made = run_cli(["init-db"], env, tmp_path)
    assert made.returncode == 0, made.stderr
    # The installation's tracking key is made (encrypted with the first key) on first use.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from webhook.settings import Settings; from webhook.services import Services;"
            " Services.from_settings(Settings.from_env()).store.operations.tracking_key()",
        ],
        env=env,
        cwd=tmp_path,
        check=True,
        timeout=60,
    )
    other = {**env, "WEBHOOK_SECRET_KEY": Fernet.generate_key().decode()}
    result = run_cli([command], other, tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "WEBHOOK_SECRET_KEY does not decrypt" in lines[0], lines
    # With the old key second (a rotation), the check passes.
    rotated = dict(
        other, WEBHOOK_SECRET_KEY=f"{other['WEBHOOK_SECRET_KEY']},{env['WEBHOOK_SECRET_KEY']}"
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from webhook.cli import _check_secret_key; from webhook.settings import Settings;"
            " _check_secret_key(Settings.from_env())",
        ],
        env=rotated,
        cwd=tmp_path,
        check=True,
        timeout=60,
    )
