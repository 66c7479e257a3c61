"""`ado-webhook demo`: the whole loop on loopback against the built-in Azure DevOps stand-in."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from cryptography.fernet import Fernet

from webhook.domain.signatures import SignatureError, parse_headers, sign, verify

T = TypeVar("T")

PROJECT = "AppSec"
WORK_ITEM_TYPE = "Bug"
SOURCE = "demo-scanner"
PERSON = "Dana Developer <dana@contoso.com>"
START_TIMEOUT = 30.0
STEP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
HTTP_TIMEOUT = 15.0
DEMO_RISKS: tuple[dict[str, Any], ...] = (
    {
        "key": "DEMO-1",
        "name": "SQL injection in /api/orders",
        "severity": "critical",
        "url": "https://scanner.example/findings/DEMO-1",
        "definition": "User input reaches a **SQL query** without parameters.",
        "remediation": "Use parameterised queries (`cursor.execute(sql, params)`).",
        "assets": [{"group": "service", "identifier": "orders-api"}],
        "tags": ["demo"],
    },
    {
        "key": "DEMO-2",
        "name": "Outdated TLS configuration on the login page",
        "severity": "high",
        "remediation": "Disable TLS 1.0 and 1.1.",
        "assets": [{"group": "host", "identifier": "login.contoso.example"}],
        "tags": ["demo"],
    },
    {
        "key": "DEMO-3",
        "name": "Verbose server banner",
        "severity": "medium",
        "tags": ["demo"],
    },
)


class DemoError(Exception):
    """A step of the demo failed; the message says which one and why."""


def _say(text: str = "") -> None:
    """Print one line of the narrative right away."""
    print(text, flush=True)


def _free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class _Inbox:
    """Callbacks received by the stand-in scanner, kept in arrival order."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def add(self, headers: dict[str, str], body: bytes) -> None:
        """Record one callback."""
        with self.lock:
            self.received.append((headers, body))

    def snapshot(self) -> list[tuple[dict[str, str], bytes]]:
        """Return the callbacks received so far."""
        with self.lock:
            return list(self.received)


@contextmanager
def _callback_receiver(inbox: _Inbox) -> Iterator[str]:
    """Serve a tiny scanner callback endpoint on 127.0.0.1; yield its URL."""

    class Handler(BaseHTTPRequestHandler):
        """Accepts POSTs and records them in the inbox."""

        def do_POST(self) -> None:
            """Record the callback and acknowledge it."""
            length = min(int(self.headers.get("Content-Length") or 0), 1024 * 1024)
            body = self.rfile.read(length)
            inbox.add({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Stay quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="demo-callbacks", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/callbacks"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5.0)


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """Stop a process group: SIGTERM, then SIGKILL after `timeout` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5.0)


@contextmanager
def _service(
    workdir: Path, port: int, env: dict[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `ado-webhook serve` in its own process group, output to `log_path`; stop it on exit."""
    cmd = [
        sys.executable,
        "-m",
        "webhook.cli",
        "serve",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            _stop_process(proc)


def _service_env(workdir: Path, port: int, sandbox_url: str) -> tuple[dict[str, str], str]:
    """Environment of the service subprocess; also return the fresh admin token."""
    token = secrets.token_urlsafe(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.update(
        WEBHOOK_ADMIN_TOKEN=token,
        WEBHOOK_SECRET_KEY=Fernet.generate_key().decode(),
        WEBHOOK_DB=str(workdir / "var" / "webhook.db"),
        WEBHOOK_PUBLIC_URL=f"http://127.0.0.1:{port}",
        WEBHOOK_ALLOWED_ORG_HOSTS=urlsplit(sandbox_url).netloc,
        WEBHOOK_ENTRA_AUTHORITY=sandbox_url,
        WEBHOOK_LOG_LEVEL="WARNING",
        WEBHOOK_RETRY_BASE_SECONDS="0.5",
        WEBHOOK_RETRY_CAP_SECONDS="5",
    )
    # On PostgreSQL (SPEC 6) when the operator's environment names it: the demo then shows the
    # loop on the database several nodes would share (give it an empty one).
    database_url = os.environ.get("WEBHOOK_DATABASE_URL", "").strip()
    if database_url:
        env["WEBHOOK_DATABASE_URL"] = database_url
    return env, token


class _Waiter:
    """Bounded polling that notices when the service process has died."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    def check_alive(self) -> None:
        """Raise DemoError if the service has exited."""
        code = self.proc.poll()
        if code is not None:
            raise DemoError(f"the service exited with status {code} (see {self.log_path})")

    def until(self, what: str, check: Callable[[], T | None], timeout: float = STEP_TIMEOUT) -> T:
        """Poll `check` until it returns something truthy; DemoError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                result = check()
            except requests.RequestException:
                result = None
            if result:
                return result
            if time.monotonic() >= deadline:
                raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.1)


class _Admin:
    """The admin API of the running service, authenticated with the bearer token."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        """Release the HTTP session."""
        self.http.close()

    def call(self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kw: Any) -> Any:
        """Send one admin request; return its JSON or raise DemoError with the API's message."""
        resp = self.http.request(method, self.base + path, timeout=HTTP_TIMEOUT, **kw)
        if resp.status_code not in expect:
            try:
                message = resp.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = resp.text[:200]
            raise DemoError(f"{method} {path} answered HTTP {resp.status_code}: {message}")
        return resp.json()

    def risks(self) -> dict[str, dict[str, Any]]:
        """The demo source's risks by key."""
        page = self.call("GET", "/admin/risks", params={"source": SOURCE, "per_page": 100})
        return {r["key"]: r for r in page["items"]}


def _send_risks(base: str, secret: str, risks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """POST risks as the scanner would, Standard-Webhooks signed; return the per-risk results."""
    body = json.dumps({"risks": risks}).encode()
    msg_id = f"msg_demo_{uuid.uuid4().hex}"
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }
    with requests.Session() as http:
        resp = http.post(
            f"{base}/webhooks/risks/{SOURCE}", data=body, headers=headers, timeout=HTTP_TIMEOUT
        )
    if resp.status_code != 202:
        raise DemoError(f"the scanner webhook answered HTTP {resp.status_code}, expected 202")
    return resp.json()["risks"]  # type: ignore[no-any-return]


def _matching_callback(inbox: _Inbox, key: str, secret: str) -> tuple[dict[str, Any], bool] | None:
    """The first callback about `key` saying `resolved`, and whether its signature verified."""
    for headers, body in inbox.snapshot():
        try:
            event = json.loads(body)
        except ValueError:
            continue
        risk = event.get("risk") if isinstance(event, dict) else None
        if not isinstance(risk, dict) or risk.get("key") != key:
            continue
        if risk.get("status") != "resolved":
            continue
        try:
            signed = parse_headers(
                headers.get("webhook-id"),
                headers.get("webhook-timestamp"),
                headers.get("webhook-signature"),
            )
            verify(signed, body, [secret], now=time.time())
            valid = True
        except SignatureError:
            valid = False
        return event, valid
    return None


def _run_loop(
    sandbox: Any, admin: _Admin, waiter: _Waiter, base: str, callback_url: str, inbox: _Inbox
) -> None:
    """Drive the loop through the admin API and the stand-in, narrating each step."""
    # 1. Connection.
    conn = admin.call(
        "POST",
        "/admin/connections",
        expect=(201,),
        json={
            "name": "sandbox",
            "organization_url": sandbox.org_url,
            "auth": {"type": "pat", "token": sandbox.pat},
        },
    )
    projects = ", ".join(p["name"] for p in conn.get("projects", []))
    _say(
        f"1. Registered connection #{conn['id']} to {sandbox.org_url} with a personal access "
        f"token (validated; projects: {projects}). The token is stored encrypted."
    )

    # 2. Template.
    template = admin.call(
        "POST",
        "/admin/templates",
        expect=(201,),
        json={
            "name": "AppSec bugs",
            "connection_id": conn["id"],
            "project": PROJECT,
            "work_item_type": WORK_ITEM_TYPE,
            "auto_create": True,
            "severity_threshold": "high",
            "close_on_resolve": True,
        },
    )
    _say(
        f"2. Created template #{template['id']} '{template['name']}': risks of severity "
        f"{template['severity_threshold']} and above automatically become {WORK_ITEM_TYPE}s in "
        f"{PROJECT} (title format {template['title_format']!r}, close on resolve: "
        f"{template['close_on_resolve']})."
    )

    # 3. Service hooks.
    hooks = admin.call(
        "POST",
        "/admin/hooks",
        expect=(200, 201),
        json={"connection_id": conn["id"], "project": PROJECT},
    )
    events = ", ".join(sorted(s["event_type"] for s in hooks["subscriptions"]))
    _say(
        f"3. Registered Azure DevOps service hooks for {PROJECT} ({events}), delivering to "
        f"{base}/hooks/ado - no polling needed."
    )

    # 4. Scanner source.
    source = admin.call(
        "POST",
        "/admin/sources",
        expect=(201,),
        json={"name": SOURCE, "callback_url": callback_url},
    )
    secret: str = source["secret"]
    _say(
        f"4. Created scanner source '{SOURCE}': it posts to {source['webhook_url']} and gets "
        f"status callbacks at {callback_url} (a tiny receiver started by this demo). Its signing "
        "secret is shown once by the API and kept out of this output."
    )

    # 5. Signed risks.
    results = _send_risks(base, secret, list(DEMO_RISKS))
    actions = {r["key"]: r["action"] for r in results}
    _say("5. The scanner sent three Standard-Webhooks-signed risks (HTTP 202):")
    for risk in DEMO_RISKS:
        _say(f"     {risk['key']} [{risk['severity']}] {risk['name']} - {actions.get(risk['key'])}")

    # 6. Work items.
    filed_keys = [r["key"] for r in DEMO_RISKS if r["severity"] in ("critical", "high")]
    below_key = next(r["key"] for r in DEMO_RISKS if r["severity"] == "medium")
    risks = waiter.until(
        "work items for the critical and high risks",
        lambda: (
            (found := admin.risks())
            and all(found.get(k, {}).get("work_item") for k in filed_keys)
            and found
        ),
    )
    waiter.until(
        "the sync jobs to finish",
        lambda: (
            admin.call("GET", "/admin/jobs", params={"state": "pending"})["total"] == 0
            and admin.call("GET", "/admin/jobs", params={"state": "running"})["total"] == 0
        ),
    )
    risks = admin.risks()
    _say("6. The sync worker filed work items in Azure DevOps (the stand-in):")
    for key in filed_keys:
        wi = risks[key]["work_item"]
        item = sandbox.work_item(wi["id"])
        _say(
            f"     #{wi['id']} {item['type']} '{item['fields'].get('System.Title')}' "
            f"(state {item['fields'].get('System.State')}) for {key}"
        )
    if risks[below_key]["work_item"] is not None:
        raise DemoError(f"{below_key} (medium) got a work item although it is below the threshold")
    _say(
        f"     {below_key} [medium] is below the template's threshold (high): recorded, not filed."
    )

    # 7. A person resolves a work item.
    target_key = filed_keys[0]
    target = risks[target_key]
    wi_id = target["work_item"]["id"]
    sandbox.set_state(wi_id, "Closed", by=PERSON)
    _say(f"7. {PERSON.split(' <')[0]} closed work item #{wi_id} in Azure DevOps.")

    # 8. The hook marks the risk resolved.
    resolved = waiter.until(
        f"{target_key} to become resolved",
        lambda: (
            (r := admin.call("GET", f"/admin/risks/{target['id']}"))["status"] == "resolved" and r
        ),
    )
    resolution = resolved.get("resolution") or {}
    via = next(
        (
            h["detail"].get("via")
            for h in reversed(resolved.get("history", []))
            if h["event"] == "status_changed"
        ),
        None,
    )
    how = {
        "hook": "The workitem.updated service-hook delivery",
        "reconcile": "Reconciliation with Azure DevOps",
    }.get(str(via), "The service")
    _say(
        f"8. {how} marked {target_key} resolved: state {resolution.get('state')}, "
        f"by {resolution.get('by')}, at {resolution.get('at')}."
    )

    # 9. The scanner hears about it.
    event, valid = waiter.until(
        f"the scanner callback for {target_key}",
        lambda: _matching_callback(inbox, target_key, secret),
    )
    cb_risk = event["risk"]
    _say(
        f"9. The scanner received callback '{event.get('type')}': {cb_risk['key']} is now "
        f"{cb_risk['status']} (work item #{(cb_risk.get('work_item') or {}).get('id')}), "
        f"signature {'verified' if valid else 'NOT verified'}."
    )
    if not valid:
        raise DemoError("the scanner callback's Standard Webhooks signature did not verify")


def _keep_running(waiter: _Waiter, base: str, sandbox: Any, token: str, log_path: Path) -> None:
    """Print where everything is and wait for Ctrl-C (or the service exiting)."""
    _say()
    _say("Still running (Ctrl-C to stop):")
    _say(f"  service:               {base}  (OpenAPI at {base}/openapi.json)")
    _say(f"  Azure DevOps stand-in: {sandbox.org_url}")
    _say(f"  service log:           {log_path}")
    _say(f'  admin API:   curl -H "Authorization: Bearer <admin token>" {base}/admin/risks')
    _say(f"  admin token (shown once): {token}")
    _say(f"  admin web UI:          {base}/ui/")
    _say("    sign in there by pasting the admin token above into the 'Admin token' field.")
    try:
        while True:
            waiter.check_alive()
            time.sleep(0.5)
    except KeyboardInterrupt:
        _say()
        _say("Stopping.")


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into KeyboardInterrupt so the demo cleans up."""
    raise KeyboardInterrupt


def _check_demo_database() -> str | None:
    """With WEBHOOK_DATABASE_URL set, the demo runs on that database (SPEC 6): its label, or
    DemoError when it holds data or cannot be read; None without the variable. The demo
    writes a connection, a template, a source and risks encrypted with a throwaway key: mixed
    into a real installation they would break it."""
    raw = os.environ.get("WEBHOOK_DATABASE_URL", "").strip()
    if not raw:
        return None
    from webhook.storage.copy import CopyError, DatabaseLocation, first_table_with_data

    try:
        location = DatabaseLocation.parse(raw)
        table = first_table_with_data(location)
    except CopyError as exc:
        raise DemoError(f"WEBHOOK_DATABASE_URL: {exc}") from None
    if table is not None:
        raise DemoError(
            f"the database {location.label} (WEBHOOK_DATABASE_URL) already holds data (table "
            f"{table}): the demo fills a database of its own, with a throwaway key; give it an "
            "empty one (e.g. createdb adowh_demo), or unset the variable to use SQLite"
        )
    return location.label


def run_demo(keep_running: bool = False) -> int:
    """Run the whole loop on loopback against the Azure DevOps stand-in; return an exit code
    (2 when WEBHOOK_DATABASE_URL names a database that cannot be used for it)."""
    from webhook.sandbox import Sandbox

    try:
        database = _check_demo_database()
    except DemoError as exc:
        print(f"ado-webhook demo: {exc}", file=sys.stderr, flush=True)
        return 2

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="ado-webhook-demo-"))
    log_path = workdir / "service.log"
    failed = False
    try:
        with ExitStack() as stack:
            _say("ado-webhook demo: the whole loop on loopback, against the Azure DevOps stand-in.")
            if database is not None:
                _say(
                    f"   On the database {database} (WEBHOOK_DATABASE_URL), empty before the demo."
                )
            sandbox = stack.enter_context(Sandbox())
            _say(f"0. Started the Azure DevOps stand-in at {sandbox.url} (organization contoso).")
            port = _free_port()
            base = f"http://127.0.0.1:{port}"
            env, token = _service_env(workdir, port, sandbox.url)
            proc = stack.enter_context(_service(workdir, port, env, log_path))
            waiter = _Waiter(proc, log_path)
            health = requests.Session()
            stack.callback(health.close)
            waiter.until(
                f"the service to answer at {base}/healthz",
                lambda: health.get(base + "/healthz", timeout=2).status_code == 200,
                timeout=START_TIMEOUT,
            )
            _say(f"   Started `ado-webhook serve` at {base} (2 HTTP workers + the sync worker).")
            _say(f"   Its log goes to {log_path}.")
            inbox = _Inbox()
            callback_url = stack.enter_context(_callback_receiver(inbox))
            admin = _Admin(base, token)
            stack.callback(admin.close)
            _run_loop(sandbox, admin, waiter, base, callback_url, inbox)
            _say()
            _say(
                "Done: risks in, work items out, a person's resolution flowed back to the "
                "scanner - all by push."
            )
            if keep_running:
                _keep_running(waiter, base, sandbox, token, log_path)
    except KeyboardInterrupt:
        print(
            "ado-webhook demo: interrupted; stopped the service and the stand-in.",
            file=sys.stderr,
            flush=True,
        )
        return 130
    except Exception as exc:
        failed = True
        reason = str(exc) if isinstance(exc, DemoError) else f"{type(exc).__name__}: {exc}"
        print(f"ado-webhook demo: failed: {reason}", file=sys.stderr, flush=True)
        print(
            f"ado-webhook demo: kept {workdir} for inspection (service log: {log_path})",
            file=sys.stderr,
            flush=True,
        )
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if not failed:
            shutil.rmtree(workdir, ignore_errors=True)
    _say(f"Stopped the service and the stand-in; removed {workdir}.")
    return 0
