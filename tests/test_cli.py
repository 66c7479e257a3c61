"""`ado-webhook` commands as a user runs them, in real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import requests

from tests.conftest import risk, signed_headers
from tests.servers import ADMIN_TOKEN, REPO, running_service, service_env


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
