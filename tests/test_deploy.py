"""Deployment files: Dockerfile, systemd units, env.example, gunicorn.conf.py."""

from __future__ import annotations

import configparser
import json
import os
import re
import runpy
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import SPEC_VARIABLES

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"

# SPEC section 2, plus the gunicorn knobs.
DEPLOY_VARIABLES = [*SPEC_VARIABLES, "WEB_CONCURRENCY", "WEBHOOK_BIND"]
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "KEY")


# ---- Dockerfile --------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "dangling line continuation"
    out = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def instruction_args(name: str) -> list[str]:
    return [args for instruction, args in dockerfile_instructions() if instruction == name]


def test_dockerfile_base_image_pinned():
    (image,) = instruction_args("FROM")
    image = image.split()[0]
    name, _, tag = image.partition(":")
    assert name == "python"
    assert tag and tag != "latest"
    assert re.fullmatch(r"3\.(1[1-9])\.\d+-slim(-\w+)?", tag), tag


def test_dockerfile_runs_as_non_root():
    users = instruction_args("USER")
    assert users, "no USER instruction"
    final = users[-1].split(":")[0]
    assert final not in ("root", "0")
    assert final.isdigit(), "fixed numeric uid expected"
    # the last USER comes after the install step
    instructions = [i for i, _ in dockerfile_instructions()]
    assert len(instructions) - 1 - instructions[::-1].index("USER") > instructions.index("RUN")


def test_dockerfile_install_volume_port_cmd():
    runs = " ".join(instruction_args("RUN"))
    assert "pip install --no-cache-dir ." in runs
    (workdir,) = instruction_args("WORKDIR")
    assert workdir == "/app"
    (volume,) = instruction_args("VOLUME")
    volumes = json.loads(volume) if volume.startswith("[") else volume.split()
    assert "/app/var" in volumes
    assert instruction_args("EXPOSE") == ["8080"]
    (cmd,) = instruction_args("CMD")
    assert json.loads(cmd) == ["ado-webhook", "serve", "--bind", "0.0.0.0:8080"]


def test_dockerfile_healthcheck_hits_healthz():
    (healthcheck,) = instruction_args("HEALTHCHECK")
    assert " CMD " in f" {healthcheck} "
    assert "http://127.0.0.1:8080/healthz" in healthcheck


def test_dockerfile_holds_no_secrets():
    for instruction, args in dockerfile_instructions():
        if instruction not in ("ENV", "ARG"):
            continue
        for token in shlex.split(args):
            name = token.split("=", 1)[0].upper()
            assert not any(word in name for word in SECRET_WORDS), f"{instruction} {token}"
    text = (DEPLOY / "Dockerfile").read_text()
    assert "whsec_" not in text and "gAAAAA" not in text


# ---- systemd ----------------------------------------------------------------------------------


def read_unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string((DEPLOY / name).read_text())
    return parser


UNITS = {
    "ado-webhook-web.service": "serve --no-worker",
    "ado-webhook-worker.service": "worker",
}
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ReadWritePaths": "/var/lib/ado-webhook",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "CapabilityBoundingSet": "",
}


@pytest.mark.parametrize(("unit", "command"), UNITS.items())
def test_systemd_unit_contents(unit, command):
    parser = read_unit(unit)
    service = parser["Service"]
    exec_start = shlex.split(service["ExecStart"])
    assert exec_start[0] == "/opt/ado-webhook/venv/bin/ado-webhook"
    assert " ".join(exec_start[1:]).startswith(command)
    assert service["User"] not in ("root", "0", "")
    assert service["User"] == "ado-webhook"
    assert service["WorkingDirectory"] == "/var/lib/ado-webhook"
    assert service["EnvironmentFile"] == "/etc/ado-webhook/env"
    assert service["Restart"] == "on-failure"
    for key, expected in HARDENING.items():
        assert service.get(key) == expected, key
    assert parser["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in parser["Unit"]["After"]


def test_web_unit_bind_has_a_default():
    service = read_unit("ado-webhook-web.service")["Service"]
    assert "--bind ${WEBHOOK_BIND}" in service["ExecStart"]
    assert service["Environment"] == "WEBHOOK_BIND=127.0.0.1:8080"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
@pytest.mark.parametrize("unit", list(UNITS))
def test_systemd_analyze_verify(unit, tmp_path):
    # The venv binary does not exist on a build machine; point ExecStart at one that does so
    # `verify` checks everything else (it reports unknown keys and bad values per line).
    text = (DEPLOY / unit).read_text()
    text = text.replace(
        "/opt/ado-webhook/venv/bin/ado-webhook", shutil.which("true") or "/bin/true"
    )
    copy = tmp_path / unit
    copy.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )
    ours = [line for line in (result.stdout + result.stderr).splitlines() if unit in line]
    assert result.returncode == 0, result.stderr
    assert ours == [], ours


# ---- env.example --------------------------------------------------------------------------------


def env_example() -> tuple[dict[str, str], set[str]]:
    """(active assignments, names mentioned including commented-out examples)."""
    active: dict[str, str] = {}
    mentioned: set[str] = set()
    for line in (DEPLOY / "env.example").read_text().splitlines():
        match = re.match(r"^\s*(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if not match:
            continue
        mentioned.add(match.group(2))
        if not match.group(1):
            active[match.group(2)] = match.group(3)
    return active, mentioned


def test_env_example_lists_every_variable():
    _, mentioned = env_example()
    missing = [name for name in DEPLOY_VARIABLES if name not in mentioned]
    assert missing == []
    text = (DEPLOY / "env.example").read_text()
    for name in DEPLOY_VARIABLES:  # each is explained by a comment just above it
        lines = text.splitlines()
        index = next(i for i, line in enumerate(lines) if re.match(rf"^#?\s*{name}=", line))
        assert lines[index - 1].startswith("#"), name


def test_env_example_defaults_and_empty_secrets():
    active, _ = env_example()
    assert active["WEBHOOK_ADMIN_TOKEN"] == ""
    assert active["WEBHOOK_SECRET_KEY"] == ""
    assert active["WEBHOOK_DB"] == "var/webhook.db"
    assert active["WEBHOOK_MAX_BODY_BYTES"] == str(16 * 1024 * 1024)
    assert active["WEBHOOK_ENTRA_AUTHORITY"] == "https://login.microsoftonline.com"
    assert active["WEBHOOK_HOOK_CHECK_SECONDS"] == "3600"
    assert active["WEBHOOK_RECONCILE_SECONDS"] == "900"
    assert active["WEBHOOK_LOG_LEVEL"] == "INFO"
    assert active["WEBHOOK_BIND"] == "127.0.0.1:8080"
    for name, value in active.items():  # systemd and docker --env-file both read it as-is
        assert not value.startswith(("'", '"')), name
        assert not name.startswith("export"), name
    text = (DEPLOY / "env.example").read_text()
    assert "Fernet.generate_key()" in text


# ---- gunicorn.conf.py ---------------------------------------------------------------------------


def load_gunicorn_conf(monkeypatch, tmp_path, **env: str) -> dict:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prom"))
    for key in ("WEBHOOK_BIND", "WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))


def test_gunicorn_conf_settings(monkeypatch, tmp_path):
    conf = load_gunicorn_conf(monkeypatch, tmp_path)
    assert conf["wsgi_app"] == "webhook:create_app()"
    assert conf["bind"] == "127.0.0.1:8080"
    assert conf["workers"] == 2 * os.cpu_count() + 1
    assert conf["worker_class"] == "gthread" and conf["threads"] >= 1
    assert conf["timeout"] == 30 and conf["graceful_timeout"] == 30 and conf["keepalive"] == 5
    assert conf["accesslog"] == "-" and conf["errorlog"] == "-"
    assert "%({x-request-id}o)s" in conf["access_log_format"]
    assert "%(U)s" in conf["access_log_format"]  # path without the query string
    assert conf["logconfig_dict"]["handlers"]["stderr"]["class"] == "webhook.logs.JsonStreamHandler"
    assert conf["forwarded_allow_ips"] == "127.0.0.1,::1"
    assert isinstance(conf["limit_request_line"], int) and conf["limit_request_line"] > 0
    assert callable(conf["child_exit"])
    assert conf["_OWN_METRICS_DIR"] is None  # an existing PROMETHEUS_MULTIPROC_DIR is kept


def test_gunicorn_conf_reads_environment(monkeypatch, tmp_path):
    conf = load_gunicorn_conf(
        monkeypatch,
        tmp_path,
        WEBHOOK_BIND="0.0.0.0:9000",
        WEB_CONCURRENCY="3",
        FORWARDED_ALLOW_IPS="10.0.0.5",
        WEBHOOK_LOG_LEVEL="DEBUG",
    )
    assert conf["bind"] == "0.0.0.0:9000"
    assert conf["workers"] == 3
    assert conf["forwarded_allow_ips"] == "10.0.0.5"
    assert conf["logconfig_dict"]["root"]["level"] == "DEBUG"


def test_gunicorn_conf_holds_no_secrets(monkeypatch, tmp_path):
    text = (DEPLOY / "gunicorn.conf.py").read_text()
    for name in ("WEBHOOK_ADMIN_TOKEN", "WEBHOOK_SECRET_KEY"):  # named in prose only
        assert not re.search(rf"{name}\s*=|environ[^\n]*{name}", text), name
    assert not re.search(r"whsec_|gAAAAA|Bearer\s+\w", text)
    conf = load_gunicorn_conf(monkeypatch, tmp_path)
    for key in conf:
        if key.startswith("_"):
            continue
        assert not any(word.lower() in key.lower() for word in ("secret", "token", "password"))
    assert "keyfile" not in conf and "certfile" not in conf


def _listening_socket() -> socket.socket:
    """A bound, listening socket handed to gunicorn as fd:// (no port race)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


TINY_APP = """
import logging
import os
import sys
from webhook.metrics import RISKS_RECEIVED, render_metrics
from webhook.storage.types import MetricsSnapshot

SNAPSHOT = MetricsSnapshot(
    jobs={}, subscriptions=(), worker_heartbeat_age_seconds=1, reconcile=None, hook_check=None
)

def app(environ, start_response):
    if environ["PATH_INFO"] == "/pid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    if environ["PATH_INFO"] == "/metrics":
        body, content_type = render_metrics(lambda: SNAPSHOT)
        start_response("200 OK", [("Content-Type", content_type)])
        return [body]
    RISKS_RECEIVED.labels(action="created").inc()
    logging.getLogger("tiny").info("auth was %s", environ.get("HTTP_AUTHORIZATION"))
    headers = [("Content-Type", "text/plain"), ("X-Request-Id", "rid-1")]
    headers.append(("X-Switch-Interval", repr(sys.getswitchinterval())))
    start_response("200 OK", headers)
    return [b"ok"]
"""


@pytest.mark.e2e
def test_gunicorn_runs_with_config(tmp_path):
    """Real gunicorn, two workers: JSON access lines, redaction, metrics summed across workers."""
    (tmp_path / "tinyapp.py").write_text(TINY_APP)
    listener = _listening_socket()
    port = listener.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]),
        "WEBHOOK_BIND": f"fd://{listener.fileno()}",
        "WEB_CONCURRENCY": "2",
        "WEBHOOK_LOG_LEVEL": "INFO",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path / "tmp"),
    }
    (tmp_path / "tmp").mkdir()
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    stderr_path = tmp_path / "stderr.txt"
    stdout_path = tmp_path / "stdout.txt"
    with stderr_path.open("w") as err, stdout_path.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(DEPLOY / "gunicorn.conf.py"),
                "tinyapp:app",
            ],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=err,
            pass_fds=(listener.fileno(),),
        )
        listener.close()
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"{base}/metrics", timeout=2).read()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.1)
            # Both workers serving before the load and the SIGTERM: a worker that gets SIGTERM
            # while it is still booting (before gunicorn installs its handlers) ignores it and
            # the arbiter waits out graceful_timeout (a gunicorn race, not this service's).
            pids: set[str] = set()
            while len(pids) < 2:
                with urllib.request.urlopen(f"{base}/pid", timeout=2) as answer:
                    pids.add(answer.read().decode())
                if time.monotonic() > deadline:
                    raise AssertionError(f"only workers {pids} answered")
            for _ in range(8):
                request = urllib.request.Request(
                    f"{base}/x?token=querysecret123",
                    headers={"Authorization": "Basic dXNlcjpodW50ZXIyMjIy"},
                )
                with urllib.request.urlopen(request, timeout=5) as answer:
                    assert answer.read() == b"ok"
                    # post_fork shortened the GIL switch interval in the worker
                    assert float(answer.headers["X-Switch-Interval"]) == 0.0005
            body = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert 'adowh_risks_received_total{action="created"} 8.0' in body
    assert "adowh_worker_heartbeat_age_seconds 1.0" in body

    output = stderr_path.read_text()
    assert stdout_path.read_text() == ""
    lines = [json.loads(line) for line in output.splitlines()]  # every line is JSON
    access = [line for line in lines if line["logger"] == "gunicorn.access"]
    hits = [line for line in access if line.get("path") == "/x"]
    assert len(hits) == 8
    assert all(
        h["method"] == "GET" and h["status"] == 200 and h["request_id"] == "rid-1" for h in hits
    )
    assert all(isinstance(h["duration_ms"], int) for h in hits)
    assert "querysecret123" not in output and "dXNlcjpodW50ZXIyMjIy" not in output
    assert any(line["logger"] == "tiny" and "[REDACTED]" in line["msg"] for line in lines)
    assert any(line["logger"] == "gunicorn.error" for line in lines)
    # the private metrics directory the config made (under TMPDIR) is removed on exit
    leftover = {
        str(d): sorted(p.name for p in d.iterdir())
        for d in (tmp_path / "tmp").glob("ado-webhook-metrics-*")
    }
    assert not leftover, (leftover, proc.returncode, output.splitlines()[-5:])
