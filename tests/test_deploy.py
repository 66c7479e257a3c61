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


# ---- compose.yaml (SPEC 6: PostgreSQL, two web nodes, two workers, a proxy) -------------------
# Docker cannot run here: the file is parsed (PyYAML, which understands the `<<` merge keys the
# file uses) and its structure checked; the Caddyfile is checked with `caddy validate` when
# Caddy is installed (`apt-get install caddy`).

WEB_NODES = ("web-1", "web-2")
WORKERS = ("worker-1", "worker-2")
APP_SERVICES = ("init-db", *WEB_NODES, *WORKERS)
POOL_MAX = 10  # PgDatabase's max_size: connections per process


def compose() -> dict:
    yaml = pytest.importorskip("yaml", reason="PyYAML missing")
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def caddy_upstreams() -> list[str]:
    """The upstreams named on the Caddyfile's reverse_proxy line."""
    for line in (DEPLOY / "Caddyfile").read_text().splitlines():
        words = line.split()
        if words and words[0] == "reverse_proxy":
            return [w for w in words[1:] if w != "{"]
    raise AssertionError("no reverse_proxy in deploy/Caddyfile")


def option(command: list[str], name: str) -> str:
    """The value after `name` in an argv list (fails when absent)."""
    assert name in command, f"{name} missing from {command}"
    return command[command.index(name) + 1]


def test_compose_services_and_commands():
    services = compose()["services"]
    assert set(services) == {"postgres", "proxy", *APP_SERVICES}
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["init-db"]["command"] == ["ado-webhook", "init-db"]
    assert services["init-db"]["restart"] == "no"
    for name in WEB_NODES:
        command = services[name]["command"]
        assert command[:3] == ["ado-webhook", "serve", "--no-worker"]
        assert option(command, "--bind") == "0.0.0.0:8080"
        assert int(option(command, "--workers")) >= 1  # never 2*CPU+1 of whatever host
        assert "ports" not in services[name]  # reached through the proxy only
    for name in WORKERS:
        assert services[name]["command"] == ["ado-webhook", "worker"]
    for name in APP_SERVICES:
        service = services[name]
        assert service["image"] == "ado-webhook:local"
        context = (DEPLOY / service["build"]["context"]).resolve()
        assert context == ROOT
        assert (context / service["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
        assert service["env_file"] == "ado-webhook.env"
        assert (DEPLOY / "env.example").exists()  # what the operator copies to it


def test_compose_every_node_gets_the_same_database_url():
    data = compose()
    services = data["services"]
    urls = {name: services[name]["environment"]["WEBHOOK_DATABASE_URL"] for name in APP_SERVICES}
    assert len(set(urls.values())) == 1, urls
    url = urls["web-1"]
    postgres = services["postgres"]["environment"]
    user, password_ref = url.removeprefix("postgresql://").split("@", 1)[0].split(":", 1)
    assert user == postgres["POSTGRES_USER"]
    assert password_ref == postgres["POSTGRES_PASSWORD"]  # the same variable, never a literal
    assert password_ref.startswith("${POSTGRES_PASSWORD:?")  # compose refuses to start without
    assert url.endswith(f"@postgres:5432/{postgres['POSTGRES_DB']}")
    # The URL parses as copy-db and the settings read it, with its password hidden in messages.
    from cryptography.fernet import Fernet

    from webhook.settings import Settings

    real = url.replace(password_ref, "s3cret-pw")
    settings = Settings.from_env(
        {
            "WEBHOOK_ADMIN_TOKEN": "x" * 20,
            "WEBHOOK_SECRET_KEY": Fernet.generate_key().decode(),
            "WEBHOOK_DATABASE_URL": real,
        }
    )
    assert settings.database_url == real and "s3cret-pw" not in settings.storage_label
    text = (DEPLOY / "compose.yaml").read_text()
    for name in ("WEBHOOK_ADMIN_TOKEN", "WEBHOOK_SECRET_KEY"):  # secrets come from env_file
        assert not re.search(rf"^\s*{name}\s*:", text, re.M), name
    assert "whsec_" not in text and "gAAAAA" not in text


def test_compose_start_order_and_health_checks():
    services = compose()["services"]
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert services["init-db"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in (*WEB_NODES, *WORKERS):
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "init-db": {"condition": "service_completed_successfully"},
        }, name
    for name in WEB_NODES:
        check = " ".join(services[name]["healthcheck"]["test"])
        assert "http://127.0.0.1:8080/healthz" in check
    for name in (*WORKERS, "init-db"):  # no HTTP there: the image's /healthz check is off
        assert services[name]["healthcheck"] == {"disable": True}
    proxy = services["proxy"]
    # Started, not healthy: one broken node must not keep the proxy (the service) down; Caddy's
    # own probes take it out of rotation.
    assert proxy["depends_on"] == {name: {"condition": "service_started"} for name in WEB_NODES}
    assert "http://127.0.0.1:8080/readyz" in proxy["healthcheck"]["test"]
    # PostgreSQL is published on the host's loopback only
    assert all(p.startswith("127.0.0.1:") for p in services["postgres"]["ports"])


def test_proxy_balances_both_web_nodes():
    proxy = compose()["services"]["proxy"]
    assert proxy["image"].startswith("caddy:2")
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert proxy["ports"] == ["${ADO_WEBHOOK_PORT:-8080}:8080"]
    assert sorted(caddy_upstreams()) == [f"{name}:8080" for name in WEB_NODES]
    text = (DEPLOY / "Caddyfile").read_text()
    assert re.search(r"^\s*:8080\s*\{", text, re.M)  # the port compose publishes
    assert re.search(r"^\s*health_uri /healthz$", text, re.M)
    assert instruction_args("EXPOSE") == ["8080"]  # the nodes' port is the image's


def test_postgres_max_connections_fits_every_pool():
    """(web processes + worker processes) x 10 pooled connections, plus headroom (README)."""
    services = compose()["services"]
    command = services["postgres"]["command"]
    assert command[0] == "postgres"
    settings = dict(command[i + 1].split("=", 1) for i, word in enumerate(command) if word == "-c")
    max_connections = int(settings["max_connections"])
    web_processes = sum(int(option(services[n]["command"], "--workers")) for n in WEB_NODES)
    pooled = (web_processes + len(WORKERS)) * POOL_MAX
    # headroom: each worker's LISTEN connection, migrations, copy-db, pg_dump, reserved slots
    assert max_connections >= pooled + len(WORKERS) + 10, (max_connections, pooled)
    readme = (ROOT / "README.md").read_text()
    assert f"max_connections={max_connections}" in readme
    assert f"{pooled} connections" in readme
    from webhook.storage.postgres.database import PgDatabase

    assert PgDatabase("postgresql://u@h/d").max_size == POOL_MAX  # the README's "up to 10"


def caddy_validate(config: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return subprocess.run(
        ["caddy", "validate", "--config", str(config), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home)},
    )


def caddy_adapt(config: Path) -> dict:
    result = subprocess.run(
        ["caddy", "adapt", "--config", str(config), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def host_name_variant(tmp_path: Path) -> Path:
    """deploy/Caddyfile with its commented host-name site enabled, as the README says."""
    text = (DEPLOY / "Caddyfile").read_text()
    block = re.search(r"^# (ado-webhook\.example\.com) \{\n((?:# .*\n)+)# \}$", text, re.M)
    assert block, "no commented host-name site in deploy/Caddyfile"
    enabled = re.sub(r"^# ?", "", block.group(0), flags=re.M)
    path = tmp_path / "Caddyfile.host"
    path.write_text(text.replace(block.group(0), enabled))
    return path


def listeners(config: dict) -> dict[str, list[str]]:
    servers = config["apps"]["http"]["servers"].values()
    out: dict[str, list[str]] = {}
    for server in servers:
        hosts = [
            host
            for route in server.get("routes", [])
            for match in route.get("match", [])
            for host in match.get("host", [])
        ]
        for address in server["listen"]:
            out[address] = hosts
    return out


def test_caddyfile_https_is_automatic_for_a_host_name():
    """The README's promise: a host-name site gets a certificate (automatic HTTPS not off)."""
    text = (DEPLOY / "Caddyfile").read_text()
    assert not re.search(r"^\s*auto_https\s+off", text, re.M)
    readme = (ROOT / "README.md").read_text()
    assert "host-name site" in readme and "Automatic HTTPS is on" in readme


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy missing (apt-get install caddy)")
def test_caddyfile_is_valid(tmp_path):
    result = caddy_validate(DEPLOY / "Caddyfile", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr
    formatted = subprocess.run(
        ["caddy", "fmt", str(DEPLOY / "Caddyfile")], capture_output=True, text=True, timeout=60
    )
    assert formatted.stdout == (DEPLOY / "Caddyfile").read_text()
    # As shipped: plain HTTP on :8080 only, no host name, nothing on 80 or 443.
    assert listeners(caddy_adapt(DEPLOY / "Caddyfile")) == {":8080": []}


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy missing (apt-get install caddy)")
def test_caddyfile_host_name_variant_is_valid_and_served_over_https(tmp_path):
    variant = host_name_variant(tmp_path)
    result = caddy_validate(variant, tmp_path)
    assert result.returncode == 0, result.stderr
    config = caddy_adapt(variant)
    # the host name on :443 (Caddy adds the :80 redirect itself), :8080 still plain HTTP
    assert listeners(config) == {":443": ["ado-webhook.example.com"], ":8080": []}
    for server in config["apps"]["http"]["servers"].values():
        assert not server.get("automatic_https", {}).get("disable"), server
    # The public site passes on only the scanner and hook routes; the rest answers 404 there.
    public = json.dumps(
        [s for s in config["apps"]["http"]["servers"].values() if ":443" in s["listen"]]
    )
    assert '"/webhooks/risks/*"' in public and '"/hooks/ado"' in public
    assert '"status_code": 404' in public or '"status_code": "404"' in public


def test_env_example_names_the_database_url():
    _, mentioned = env_example()
    assert "WEBHOOK_DATABASE_URL" in mentioned
    lines = (DEPLOY / "env.example").read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("# WEBHOOK_DATABASE_URL="))
    assert lines[index - 1].startswith("#")


@pytest.mark.skipif(shutil.which("git") is None, reason="git missing")
def test_secret_files_the_readme_creates_are_ignored_by_git():
    inside = subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"], cwd=ROOT, capture_output=True, text=True
    )
    if inside.stdout.strip() != "true":
        pytest.skip("not a git checkout")
    for path in ("deploy/ado-webhook.env", "deploy/.env"):
        result = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert result.returncode == 0, f"{path} is not ignored"
    kept = subprocess.run(["git", "check-ignore", "-q", "deploy/env.example"], cwd=ROOT)
    assert kept.returncode == 1  # the template stays tracked
