"""An end-to-end rig: the Azure DevOps stand-in plus `ado-webhook serve` as real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from tests.conftest import pat_connection, signed_headers
from tests.servers import ADMIN_TOKEN, free_port, running_service, service_env, stop
from webhook.sandbox import Sandbox

BUGS_TEMPLATE: dict[str, Any] = {
    "name": "bugs",
    "project": "AppSec",
    "work_item_type": "Bug",
    "auto_create": True,
    "severity_threshold": "low",
}


class Rig:
    def __init__(self, base: str, sandbox: Sandbox, workdir: Path, env: dict[str, str]) -> None:
        self.base = base
        self.sb = sandbox
        self.workdir = workdir
        self.env = env
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        self.secret = ""
        self.extra: list[subprocess.Popen[bytes]] = []

    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, self.base + path, timeout=30, **kwargs)

    def connect(self) -> int:
        resp = self.admin(
            "POST", "/admin/connections", json=pat_connection(self.sb.org_url, self.sb.pat)
        )
        assert resp.status_code == 201, resp.text
        return int(resp.json()["id"])

    def template(self, **fields: Any) -> dict[str, Any]:
        resp = self.admin("POST", "/admin/templates", json=fields)
        assert resp.status_code == 201, resp.text
        return resp.json()  # type: ignore[no-any-return]

    def bugs(self, conn: int, **fields: Any) -> dict[str, Any]:
        """Create a template filing Bugs in AppSec for risks from low up; `fields` override."""
        return self.template(**{**BUGS_TEMPLATE, "connection_id": conn, **fields})

    def setup_bugs(self, **fields: Any) -> int:
        """Connect, add the `bugs` template (`fields` override), add the `sast` source.

        Returns the connection id."""
        conn = self.connect()
        self.bugs(conn, **fields)
        self.source()
        return conn

    def source(self, name: str = "sast", callback_url: str | None = None) -> None:
        body: dict[str, Any] = {"name": name}
        if callback_url:
            body["callback_url"] = callback_url
        resp = self.admin("POST", "/admin/sources", json=body)
        assert resp.status_code == 201, resp.text
        self.secret = resp.json()["secret"]

    def post_risks(self, *risks: dict[str, Any], source: str = "sast") -> requests.Response:
        """POST `{"risks": [...]}` to the scanner webhook, signed with the source's secret."""
        body = json.dumps({"risks": list(risks)}).encode()
        return requests.post(
            f"{self.base}/webhooks/risks/{source}",
            data=body,
            headers=signed_headers(self.secret, body),
            timeout=30,
        )

    def send(self, *risks: dict[str, Any], source: str = "sast") -> requests.Response:
        resp = self.post_risks(*risks, source=source)
        assert resp.status_code == 202, resp.text
        return resp

    def risks(self, **query: str) -> list[dict[str, Any]]:
        return self.admin("GET", "/admin/risks", params={"per_page": 1000, **query}).json()["items"]

    def jobs(self, **query: str) -> list[dict[str, Any]]:
        """The jobs `GET /admin/jobs` lists (pending ones unless `state` says otherwise)."""
        items: list[dict[str, Any]] = self.admin("GET", "/admin/jobs", params=query).json()["items"]
        return items

    def failed_jobs(self) -> int:
        """How many jobs have failed (`total` of `GET /admin/jobs?state=failed`)."""
        return int(self.admin("GET", "/admin/jobs", params={"state": "failed"}).json()["total"])

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until no job is pending."""
        wait_for(lambda: not self.jobs(), timeout=timeout)

    def items(self) -> list[dict[str, Any]]:
        return [w for w in self.sb.work_items() if not w.get("deleted")]

    def start_extra_worker(self) -> None:
        self.extra.append(
            subprocess.Popen(
                [sys.executable, "-m", "webhook.cli", "worker", "--threads", "4"],
                cwd=self.workdir,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )


def tracking_tags(items: list[dict[str, Any]]) -> Counter[str]:
    """How many of `items` (stand-in work items) carry each `adowh-` tracking tag."""
    return Counter(
        t.strip()
        for w in items
        for t in w["fields"].get("System.Tags", "").split(";")
        if t.strip().startswith("adowh-")
    )


def wait_for(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


@contextmanager
def rig(
    tmp_path: Path, *, latency: float = 0.0, serve_args: tuple[str, ...] = (), **env_extra: str
) -> Iterator[Rig]:
    with ExitStack() as stack:
        sb = stack.enter_context(Sandbox(latency=latency))
        host = urlsplit(sb.url).netloc
        port = free_port()
        env_extra.setdefault("WEBHOOK_PUBLIC_URL", f"http://127.0.0.1:{port}")
        # Content rewrites wait WEBHOOK_CONTENT_SYNC_SECONDS (60 by default): keep tests quick.
        env_extra.setdefault("WEBHOOK_CONTENT_SYNC_SECONDS", "1")
        env = service_env(
            tmp_path, WEBHOOK_ALLOWED_ORG_HOSTS=host, WEBHOOK_ENTRA_AUTHORITY=sb.url, **env_extra
        )
        base, _ = stack.enter_context(running_service(tmp_path, *serve_args, env=env, port=port))
        r = Rig(base, sb, tmp_path, env)
        try:
            yield r
        finally:
            for proc in r.extra:
                stop(proc)
            r.http.close()
