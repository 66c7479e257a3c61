"""Every call to a paused organization waits (SPEC 4 "Pacing", issue 9 item 5): the periodic
hook check, reconciliation, the next call of a multi-call job; an admin request answers 503
``ado_paused`` with Retry-After. Against the Azure DevOps stand-in, in process, on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import (
    ADMIN_TOKEN,
    Scanner,
    make_settings,
    pat_connection,
    risk,
    template_record,
)
from tests.servers import free_port
from webhook import clock, create_app, gateway
from webhook.composition import build_batch_handlers, build_handlers
from webhook.gateway import OrganizationPaused
from webhook.sandbox import Sandbox
from webhook.services import Services
from webhook.worker import PeriodicTask, RetryPolicy, Worker

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def app(tmp_path: Path, sb: Sandbox) -> Iterator[Flask]:
    settings = make_settings(
        tmp_path,
        WEBHOOK_ALLOWED_ORG_HOSTS=urlsplit(sb.url).netloc,
        WEBHOOK_ENTRA_AUTHORITY=sb.url,
        # Nothing listens there: hook deliveries from the stand-in fail fast on loopback.
        WEBHOOK_PUBLIC_URL=f"http://127.0.0.1:{free_port()}",
    )
    application = create_app(settings)
    yield application
    application.extensions["adowh"].store.db.close()


@pytest.fixture
def services(app: Flask) -> Services:
    return app.extensions["adowh"]  # type: ignore[no-any-return]


@pytest.fixture
def web(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def connection(web: FlaskClient, sb: Sandbox) -> int:
    resp = web.post(
        "/admin/connections",
        json=pat_connection(sb.org_url, sb.pat),
        headers=ADMIN,
    )
    assert resp.status_code == 201, resp.get_json()
    return int(resp.get_json()["id"])


def rest_calls(sb: Sandbox) -> list[tuple[str, str, Any]]:
    return [(e["method"], e["path"], e["status"]) for e in sb.requests_log()]


def drain(services: Services) -> None:
    worker = Worker(
        store=services.store,
        handlers=build_handlers(services),
        batch_handlers=build_batch_handlers(services),
        policy=RetryPolicy(base=0.01, cap=0.01),
    )
    for _ in range(50):
        if not worker.run_once():
            return
    raise AssertionError("jobs kept running")


@pytest.fixture
def linked(web: FlaskClient, services: Services, sb: Sandbox, connection: int) -> Scanner:
    """A risk with its work item in the stand-in, via a close_on_resolve template."""
    resp = web.post(
        "/admin/templates",
        json={
            "name": "bugs",
            "connection_id": connection,
            "project": "AppSec",
            "work_item_type": "Bug",
            "auto_create": True,
            "severity_threshold": "low",
            "close_on_resolve": True,
        },
        headers=ADMIN,
    )
    assert resp.status_code == 201, resp.get_json()
    scanner = Scanner(web, ADMIN)
    assert scanner.send({"risk": risk("R-1")}).status_code == 202
    drain(services)
    assert len(sb.work_items()) == 1
    return scanner


@pytest.fixture
def uncached(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pauses written straight to the store (as another process would) are seen at once."""
    monkeypatch.setattr(gateway, "PAUSE_CACHE_SECONDS", 0.0, raising=False)


def pause_in_store(services: Services, organization: str, seconds: float) -> None:
    services.store.pause_organization(organization, clock.now() + seconds)


def pause_with_429(sb: Sandbox, path: str, method: str = "GET") -> None:
    sb.add_fault(
        kind="status", status=429, retry_after="4", method=method, path_contains=path, times=1
    )


# --------------------------------------------------------------------------- periodic checks


def test_hook_check_makes_no_call_to_a_paused_organization(
    web: FlaskClient, services: Services, sb: Sandbox, connection: int
) -> None:
    created = web.post(
        "/admin/hooks", json={"connection_id": connection, "project": "AppSec"}, headers=ADMIN
    )
    assert created.status_code == 201, created.get_json()
    subscriptions = services.subscriptions
    sb.clear_requests_log()
    pause_with_429(sb, "/_apis/hooks/subscriptions/")

    first = subscriptions.check_all()
    # The first GET is refused with Retry-After: 4; the two other hooks are not asked.
    assert [(m, s) for m, _, s in rest_calls(sb)] == [("GET", 429)]
    assert first["errors"] == 1 and first["paused"] == 2 and first["healed"] == 0
    assert list(first["paused_until"]) == [sb.org_url]

    again = subscriptions.check_all()  # the next run, still within the pause
    assert len(rest_calls(sb)) == 1
    assert again["paused"] == 3 and again["checked"] == 0 and again["errors"] == 0


def test_reconciliation_skips_a_paused_organization(
    linked: Scanner, services: Services, sb: Sandbox, connection: int, uncached: None
) -> None:
    sync = services.sync
    worker = Worker(
        store=services.store, handlers={}, periodic=[PeriodicTask("reconcile", 0.0, sync.reconcile)]
    )
    worker.run_periodic_once()
    first = services.store.periodic_status()["reconcile"]
    assert first.last_ok and first.last_result["paused_connections"] == []
    pause_in_store(services, sb.org_url, 4)
    sb.clear_requests_log()

    worker.run_periodic_once()
    assert rest_calls(sb) == []
    second = services.store.periodic_status()["reconcile"]
    assert second.last_ok is True
    assert second.last_result["paused_connections"] == [connection]
    # The skipped organization is covered by the next pass: the watermark does not move.
    assert second.last_result["watermark"] == first.last_result["watermark"]


# --------------------------------------------------------------------------- jobs


def test_a_job_stops_between_its_calls_when_an_answer_pauses_the_organization(
    linked: Scanner, services: Services, sb: Sandbox
) -> None:
    # A create that lost its answer is retried: the retry looks the item up by its tag (WIQL),
    # then creates it — two calls on one client. The WIQL answer asks to wait 4 s.
    sb.clear_requests_log()
    sb.add_fault(kind="status", status=503, method="POST", path_contains="/workitems/$", times=1)
    sb.add_fault(kind="retry_after_on_200", retry_after="4", method="POST", path_contains="/wiql")
    before = clock.now()
    assert linked.send({"risk": risk("R-2")}).status_code == 202
    drain(services)
    time.sleep(0.05)  # the retry's backoff (RetryPolicy base 0.01 s)
    drain(services)

    calls = [(m, p.rsplit("/", 1)[-1], s) for m, p, s in rest_calls(sb)]
    assert calls == [("POST", "$Bug", 503), ("POST", "wiql", 200)]  # then no create
    assert len(sb.work_items()) == 1
    job = services.store.db.conn.execute(
        "SELECT state, attempts, last_error, next_attempt_ts FROM jobs"
        " WHERE kind='create_work_item' AND state != 'done'"
    ).fetchone()
    assert job["state"] == "pending"
    assert job["attempts"] == 1  # the 503 counted; waiting out the pause does not
    assert sb.org_url in job["last_error"] and "paused until" in job["last_error"]
    assert before + 3 <= job["next_attempt_ts"] <= clock.now() + 4


def test_a_pause_recorded_by_another_process_stops_the_next_request(
    services: Services, sb: Sandbox, connection: int, uncached: None
) -> None:
    client = services.gateway.client(connection)
    client.get_project("AppSec")
    pause_in_store(services, sb.org_url, 4)  # as another worker process would
    sb.clear_requests_log()
    with pytest.raises(OrganizationPaused) as info:
        client.list_work_item_types("AppSec")
    assert info.value.organization == sb.org_url
    assert rest_calls(sb) == []


# --------------------------------------------------------------------------- admin requests


def test_admin_requests_answer_503_ado_paused_during_a_pause(
    web: FlaskClient, sb: Sandbox, connection: int
) -> None:
    sb.clear_requests_log()
    pause_with_429(sb, "/_apis/projects")
    refused = web.get(f"/admin/connections/{connection}/projects", headers=ADMIN)
    assert refused.status_code == 503
    assert refused.get_json()["error"]["code"] == "ado_paused"
    assert refused.headers["Retry-After"] == "4"
    assert len(rest_calls(sb)) == 1

    for method, path in [
        ("GET", f"/admin/connections/{connection}/projects"),
        ("GET", f"/admin/connections/{connection}/projects/AppSec/work-item-types"),
        ("POST", f"/admin/connections/{connection}/test"),
    ]:
        resp = web.open(path, method=method, headers=ADMIN)
        assert resp.status_code == 503, (path, resp.get_json())
        error = resp.get_json()["error"]
        assert error["code"] == "ado_paused"
        assert sb.org_url in error["message"]
        assert 1 <= int(resp.headers["Retry-After"]) <= 4
    assert len(rest_calls(sb)) == 1  # none of them called Azure DevOps


def test_a_connection_test_met_by_a_429_says_paused_not_unreachable(
    web: FlaskClient, sb: Sandbox, connection: int
) -> None:
    pause_with_429(sb, "/_apis/projects")
    resp = web.post(f"/admin/connections/{connection}/test", headers=ADMIN)
    assert resp.status_code == 503, resp.get_json()
    error = resp.get_json()["error"]
    assert error["code"] == "ado_paused" and "unreachable" not in error["message"]
    assert resp.headers["Retry-After"] == "4"


def test_new_credentials_for_a_paused_organization_answer_503(
    web: FlaskClient, services: Services, sb: Sandbox, uncached: None
) -> None:
    pause_in_store(services, sb.org_url, 2.2)
    resp = web.post(
        "/admin/connections",
        data=json.dumps(pat_connection(sb.org_url, sb.pat, name="second")),
        content_type="application/json",
        headers=ADMIN,
    )
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "ado_paused"
    assert resp.headers["Retry-After"] == "3"  # 2.2 s rounded up
    assert rest_calls(sb) == []


def test_hook_list_during_a_pause_shows_stored_status_without_calling(
    web: FlaskClient, services: Services, sb: Sandbox, connection: int, uncached: None
) -> None:
    created = web.post(
        "/admin/hooks", json={"connection_id": connection, "project": "AppSec"}, headers=ADMIN
    )
    assert created.status_code == 201
    pause_in_store(services, sb.org_url, 4)
    sb.clear_requests_log()
    listed = web.get("/admin/hooks", headers=ADMIN)
    assert listed.status_code == 200
    items = listed.get_json()["items"]
    assert len(items) == 3
    assert all(h["status"] == "enabled" for h in items)
    assert all("status not checked" in h["last_error"] for h in items)
    assert rest_calls(sb) == []


@pytest.mark.parametrize(("left", "header"), [(4.0, 4), (2.2, 3), (0.01, 1)])
def test_retry_after_is_whole_seconds_rounded_up(left: float, header: int) -> None:
    now = 1_750_000_000.0
    assert OrganizationPaused(now + left, "https://dev.azure.com/x").seconds_left(now) == header


def test_a_connection_whose_host_was_disallowed_gets_clear_answers_not_500s(
    web: FlaskClient, services: Services, sb: Sandbox, connection: int, tmp_path: Path
) -> None:
    """WEBHOOK_ALLOWED_ORG_HOSTS no longer lists a stored connection's host (the operator
    narrowed it): every route that would call its organization answers clearly, nothing is
    sent there, and the hook list still shows the stored status."""
    created = web.post(
        "/admin/hooks", json={"connection_id": connection, "project": "AppSec"}, headers=ADMIN
    )
    assert created.status_code == 201
    template = web.post(
        "/admin/templates", json=template_record(connection, project="AppSec"), headers=ADMIN
    )
    assert template.status_code == 201, template.get_data(as_text=True)
    narrowed = create_app(
        make_settings(
            tmp_path,
            WEBHOOK_PUBLIC_URL="http://127.0.0.1:9",
            WEBHOOK_DB=str(services.settings.db_path),
            WEBHOOK_SECRET_KEY=",".join(services.settings.secret_keys),
        )
    )
    client = narrowed.test_client()
    sb.clear_requests_log()
    listed = client.get("/admin/hooks", headers=ADMIN)
    assert listed.status_code == 200, listed.get_data(as_text=True)
    items = listed.get_json()["items"]
    assert len(items) == 3
    assert all("status not checked" in h["last_error"] for h in items)
    tested = client.post(f"/admin/connections/{connection}/test", headers=ADMIN)
    assert tested.status_code == 200 and tested.get_json()["ok"] is False
    assert "no longer allowed" in tested.get_json()["message"]
    for method, path, body in [
        ("GET", f"/admin/connections/{connection}/projects", None),
        ("GET", f"/admin/connections/{connection}/projects/AppSec/work-item-types", None),
        ("POST", "/admin/hooks", {"connection_id": connection, "project": "AppSec"}),
        ("PATCH", f"/admin/templates/{template.get_json()['id']}", {"severity_threshold": "high"}),
    ]:
        resp = client.open(path, method=method, json=body, headers=ADMIN)
        assert resp.status_code == 409, (path, resp.status_code, resp.get_data(as_text=True))
        assert resp.get_json()["error"]["code"] == "organization_not_allowed"
    assert rest_calls(sb) == []
    narrowed.extensions["adowh"].store.db.close()
