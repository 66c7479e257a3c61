"""The whole loop in one process: the Azure DevOps stand-in, the app served on loopback (so the
stand-in's hook deliveries really arrive), and a worker the test drives step by step."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.conftest import ADMIN_TOKEN, Scanner, make_settings, pat_connection
from tests.servers import free_port
from webhook import create_app
from webhook.composition import build_batch_handlers, build_handlers
from webhook.sandbox import Sandbox
from webhook.services import Services
from webhook.worker import PeriodicTask, RetryPolicy, Worker


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class Loop:
    """Admin calls through the Flask test client; jobs run only when the test says so."""

    def __init__(self, sb: Sandbox, app: Flask) -> None:
        self.sb = sb
        self.app = app
        self.http = app.test_client()
        self.admin_headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        self.services: Services = app.extensions["adowh"]
        self.store = self.services.store
        self.sync = self.services.sync
        self.worker = Worker(
            store=self.store,
            handlers=build_handlers(self.services),
            batch_handlers=build_batch_handlers(self.services),
            periodic=[PeriodicTask("reconcile", 0.0, self.sync.reconcile)],
            policy=RetryPolicy(base=0.01, cap=0.01),
        )
        self.scanners: dict[str, Scanner] = {}
        self.connection_id = 0

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.http.open(path, method=method, headers=self.admin_headers, **kwargs)
        assert resp.status_code < 300, resp.get_json()
        return resp.get_json()

    def setup(self, *projects: tuple[str, str], hooks: bool = True) -> None:
        """A connection, an auto-create template per (project, type), hooks, a source."""
        self.connection_id = self.admin(
            "POST", "/admin/connections", json=pat_connection(self.sb.org_url, self.sb.pat)
        )["id"]
        for project, type_name in projects:
            self.admin(
                "POST",
                "/admin/templates",
                json={
                    "name": f"t-{project}",
                    "connection_id": self.connection_id,
                    "project": project,
                    "work_item_type": type_name,
                    "auto_create": True,
                    "severity_threshold": "low",
                    "sources": [f"src-{project}"],
                },
            )
            self.scanners[project] = Scanner(self.http, self.admin_headers, name=f"src-{project}")
            if hooks:
                self.admin(
                    "POST",
                    "/admin/hooks",
                    json={"connection_id": self.connection_id, "project": project},
                )

    def send(self, project: str, *risks: dict[str, Any]) -> None:
        """Report risks as the scanner of that project's template."""
        resp = self.scanners[project].send({"risks": list(risks)})
        assert resp.status_code == 202, resp.get_json()

    def drain(self, rounds: int = 200) -> None:
        """Let queued deliveries arrive, then run every runnable job."""
        self.sb.wait_deliveries_idle(10)
        for _ in range(rounds):
            if not self.worker.run_once():
                self.sb.wait_deliveries_idle(10)
                if not self.worker.run_once():
                    return
        raise AssertionError("jobs kept coming")

    def reconcile(self) -> None:
        self.worker.run_periodic_once()

    def risk(self, key: str) -> dict[str, Any]:
        items = self.admin("GET", "/admin/risks", query_string={"key": key})["items"]
        assert len(items) == 1, items
        return self.admin("GET", f"/admin/risks/{items[0]['id']}")  # type: ignore[no-any-return]

    def open_jobs(self) -> list[dict[str, Any]]:
        rows = self.store.db.conn.execute(
            "SELECT id, kind, lane, state, attempts, last_error FROM jobs"
            " WHERE state IN ('pending','running','failed') ORDER BY id"
        )
        return [dict(r) for r in rows]


@contextmanager
def loop(tmp_path: Path) -> Iterator[Loop]:
    """A Loop whose app is reachable at its WEBHOOK_PUBLIC_URL."""
    with Sandbox() as sb:
        port = free_port()
        settings = make_settings(
            tmp_path,
            WEBHOOK_PUBLIC_URL=f"http://127.0.0.1:{port}",
            WEBHOOK_ALLOWED_ORG_HOSTS=urlsplit(sb.url).netloc,
            WEBHOOK_ENTRA_AUTHORITY=sb.url,
        )
        app = create_app(settings)
        server = make_server("127.0.0.1", port, app, threaded=True, request_handler=_Quiet)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        try:
            yield Loop(sb, app)
        finally:
            sb.engine.stop()
            server.shutdown()
            server.server_close()
            thread.join(5)
            app.extensions["adowh"].store.db.close()
