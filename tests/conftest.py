"""Fixtures that build on each other: settings → app → client → signed scanner helper."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient

from tests.fake_clock import FakeClock
from webhook import clock, create_app
from webhook.domain.signatures import sign
from webhook.services import Services
from webhook.settings import Settings

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
# The environment variables of SPEC section 2.
SPEC_VARIABLES = [
    "WEBHOOK_DB",
    "WEBHOOK_DATABASE_URL",
    "WEBHOOK_ADMIN_TOKEN",
    "WEBHOOK_SECRET_KEY",
    "WEBHOOK_PUBLIC_URL",
    "WEBHOOK_ALLOWED_ORG_HOSTS",
    "WEBHOOK_MAX_BODY_BYTES",
    "WEBHOOK_ENTRA_AUTHORITY",
    "WEBHOOK_HOOK_CHECK_SECONDS",
    "WEBHOOK_RECONCILE_SECONDS",
    "WEBHOOK_LOG_LEVEL",
    "WEBHOOK_CONTENT_SYNC_SECONDS",
]


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test, with a fresh database under tmp_path."""
    env = {
        "WEBHOOK_DB": str(tmp_path / "webhook.db"),
        "WEBHOOK_ADMIN_TOKEN": ADMIN_TOKEN,
        "WEBHOOK_SECRET_KEY": Fernet.generate_key().decode(),
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return Settings.from_env(env)


def make_services(tmp_path: Path, **overrides: Any) -> Services:
    """Services over a fresh, migrated database under tmp_path (settings: `make_settings`)."""
    services = Services.from_settings(make_settings(tmp_path, **overrides))
    services.store.db.migrate()
    return services


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    """A FakeClock installed as webhook.clock for the test; time moves when the test says."""
    with clock.use(FakeClock()) as c:
        yield c  # type: ignore[misc]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    application = create_app(settings)
    yield application
    application.extensions["adowh"].store.db.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def signed_headers(
    secret: str, body: bytes, *, msg_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    """Standard Webhooks headers for a body."""
    msg_id = msg_id or f"msg_{time.time_ns()}"
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
        "Content-Type": "application/json",
    }


class Scanner:
    """A scanner source registered through the admin API that signs what it sends."""

    def __init__(
        self,
        client: FlaskClient,
        admin: dict[str, str],
        name: str = "sast",
        callback_url: str | None = None,
    ) -> None:
        body: dict[str, Any] = {"name": name}
        if callback_url:
            body["callback_url"] = callback_url
        resp = client.post("/admin/sources", json=body, headers=admin)
        assert resp.status_code == 201, resp.get_json()
        self.client = client
        self.name = name
        self.source = resp.get_json()
        self.secret: str = self.source["secret"]

    def send(
        self,
        payload: Any,
        *,
        msg_id: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        body = raw if raw is not None else json.dumps(payload).encode()
        hdrs = signed_headers(self.secret, body, msg_id=msg_id)
        hdrs.update(headers or {})
        return self.client.post(f"/webhooks/risks/{self.name}", data=body, headers=hdrs)


@pytest.fixture
def scanner(client: FlaskClient, admin: dict[str, str]) -> Scanner:
    return Scanner(client, admin)


def pat_connection(org_url: str, token: str, name: str = "sandbox") -> dict[str, Any]:
    """A `POST /admin/connections` body authenticating with a PAT (SPEC: connections)."""
    return {"name": name, "organization_url": org_url, "auth": {"type": "pat", "token": token}}


def template_record(connection_id: int, **fields: Any) -> dict[str, Any]:
    """Every column `Store.create_template` takes: an auto-creating `bugs` template filing Bugs
    in `AppSec` for risks from high up, nothing else set; `fields` override."""
    record: dict[str, Any] = {
        "name": "bugs",
        "connection_id": connection_id,
        "project": "AppSec",
        "work_item_type": "Bug",
        "auto_create": True,
        "severity_threshold": "high",
        "sources": None,
        "title_format": "{name}",
        "tags": [],
        "area_path": None,
        "iteration_path": None,
        "fields": {},
        "close_on_resolve": False,
    }
    return {**record, **fields}


def hook_record(
    connection_id: int, *, username: str, password_hash: str, **fields: Any
) -> dict[str, Any]:
    """Keyword arguments for `save_hook`: an enabled `workitem.updated` subscription in `AppSec`
    whose deliveries authenticate as `username`; `fields` override."""
    record: dict[str, Any] = {
        "connection_id": connection_id,
        "project": "AppSec",
        "project_id": "00000000-0000-0000-0000-000000000001",
        "event_type": "workitem.updated",
        "subscription_id": "00000000-0000-0000-0000-0000000000aa",
        "status": "enabled",
        "username": username,
        "password_hash": password_hash,
        "healed": False,
    }
    return {**record, **fields}


def risk(key: str = "R-1", **fields: Any) -> dict[str, Any]:
    """A valid RISK payload."""
    base: dict[str, Any] = {"key": key, "name": f"SQL injection {key}", "severity": "high"}
    base.update(fields)
    return base


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test once per storage engine (SPEC 6): on PostgreSQL every process the test
    starts through tests.servers.service_env uses a fresh database, dropped afterwards.
    Use it module-wide with `pytestmark = pytest.mark.usefixtures("engine")`."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    from tests import servers
    from tests.pg import fresh_database, require_postgres

    require_postgres()
    with fresh_database("adowh_e2e") as url:
        monkeypatch.setattr(servers, "DATABASE_URL", url)
        yield "postgresql"
