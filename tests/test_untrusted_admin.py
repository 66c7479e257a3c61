"""Admin and hook routes against text a sender may legally write but the service cannot use.

Issue 9.1: `POST /admin/templates` with a name holding a lone UTF-16 surrogate (legal JSON,
`"\\ud83d"`) answered 500 after Azure DevOps had approved the template. Issue 10: a project
named `..` in an admin path reached outside the organization's path at Azure DevOps. These run
in-process against the Azure DevOps stand-in (webhook.sandbox, on 127.0.0.1), whose request
log shows every path the service asked for.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import ADMIN_TOKEN, hook_record, make_settings
from webhook import create_app
from webhook.crypto import hash_password
from webhook.domain.models import Risk
from webhook.domain.sync_plan import content_hash
from webhook.sandbox.server import Sandbox

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
CUT = r"\ud83d"  # raw JSON text: the escape of a lone high surrogate


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        yield sb


@pytest.fixture
def app(tmp_path: Path, sandbox: Sandbox) -> Iterator[Flask]:
    application = create_app(
        make_settings(
            tmp_path,
            WEBHOOK_ALLOWED_ORG_HOSTS=urlsplit(sandbox.url).netloc,
            WEBHOOK_PUBLIC_URL="https://adowh.example.test",
        )
    )
    yield application
    application.extensions["adowh"].store.db.close()


@pytest.fixture
def client(app: Flask, sandbox: Sandbox) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def connection(client: FlaskClient, sandbox: Sandbox) -> int:
    body = {"name": "c", "organization_url": sandbox.org_url, "auth": {"type": "pat"}}
    body["auth"]["token"] = sandbox.pat
    resp = client.post("/admin/connections", json=body, headers=ADMIN)
    assert resp.status_code == 201, resp.get_json()
    sandbox.clear_requests_log()
    return int(resp.get_json()["id"])


def _post_raw(client: FlaskClient, path: str, text: str) -> Any:
    return client.post(path, data=text.encode(), headers=ADMIN)


def _template(connection: int, **raw: str) -> str:
    """A valid template body as JSON text, with some values replaced by raw JSON text."""
    body = {
        "name": '"Security bugs"',
        "connection_id": str(connection),
        "project": '"AppSec"',
        "work_item_type": '"Bug"',
        "auto_create": "true",
        "severity_threshold": '"high"',
    }
    body.update(raw)
    return "{" + ", ".join(f'"{k}": {v}' for k, v in body.items()) + "}"


def _details(resp: Any) -> dict[str, list[str]]:
    assert resp.status_code == 422, (resp.status_code, resp.data)
    error = resp.get_json()["error"]
    assert error["code"] == "validation_failed"
    return dict(error["details"])


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        pytest.param({"name": f'"Stored XSS {CUT}"'}, "name", id="name"),
        pytest.param({"title_format": f'"[SAST] {{name}} {CUT}"'}, "title_format", id="title"),
        pytest.param({"tags": f'["security", "{CUT}"]'}, "tags.1", id="tag"),
        pytest.param({"area_path": f'"AppSec\\\\Team {CUT}"'}, "area_path", id="area-path"),
        pytest.param({"fields": f'{{"Custom.Team": "Green {CUT}"}}'}, "fields", id="field-value"),
        pytest.param({"name": r'"NUL \u0000"'}, "name", id="nul"),
    ],
)
def test_template_text_that_cannot_be_stored_is_422_and_nothing_stored(
    client: FlaskClient, connection: int, sandbox: Sandbox, raw: dict[str, str], path: str
) -> None:
    resp = _post_raw(client, "/admin/templates", _template(connection, **raw))
    assert path in _details(resp)
    assert client.get("/admin/templates", headers=ADMIN).get_json()["total"] == 0
    assert sandbox.requests_log() == []  # refused before asking Azure DevOps anything
    # The same body with storable text is accepted (the stand-in approves the template).
    ok = _post_raw(client, "/admin/templates", _template(connection))
    assert ok.status_code == 201, ok.get_json()


def test_template_patch_and_other_admin_bodies_refuse_unstorable_text(
    client: FlaskClient, connection: int
) -> None:
    created = _post_raw(client, "/admin/templates", _template(connection))
    assert created.status_code == 201, created.get_json()
    template_id = created.get_json()["id"]
    patch = client.patch(
        f"/admin/templates/{template_id}", data=f'{{"name": "x{CUT}"}}', headers=ADMIN
    )
    assert "name" in _details(patch)
    assert client.get(f"/admin/templates/{template_id}", headers=ADMIN).get_json()["name"] == (
        "Security bugs"
    )
    cases = [
        (
            "POST",
            "/admin/connections",
            f'{{"name": "c{CUT}", "organization_url": "x", '
            '"auth": {"type": "pat", "token": "t"}}',
            "name",
        ),
        ("PATCH", f"/admin/connections/{connection}", f'{{"name": "{CUT}"}}', "name"),
        (
            "POST",
            "/admin/sources",
            f'{{"name": "s", "callback_url": "https://cb/{CUT}"}}',
            "callback_url",
        ),
        (
            "POST",
            "/admin/hooks",
            f'{{"connection_id": {connection}, "project": "A{CUT}"}}',
            "project",
        ),
        (
            "POST",
            "/admin/connections",
            '{"name": "c", "organization_url": "x", "auth": '
            f'{{"type": "service_principal", "tenant_id": "t", "client_id": "c", '
            f'"client_secret": "s{CUT}"}}}}',
            "auth.client_secret",
        ),
    ]
    for method, path, text, field in cases:
        resp = client.open(path, method=method, data=text.encode(), headers=ADMIN)
        assert field in _details(resp), (path, resp.get_json())
    assert client.get(f"/admin/connections/{connection}", headers=ADMIN).get_json()["name"] == "c"
    query = client.get("/admin/risks?key=%00&source=%ED%A0%BD", headers=ADMIN)
    assert list(_details(query)) == ["key"]


# ---- project names that are path segments ---------------------------------------------------

DOT_SEGMENTS = ["..", ".", "%2e%2e", "%2E%2E", ".%2e", "%2e", "%252e%252e", "..%00", "%00"]


@pytest.mark.parametrize("segment", DOT_SEGMENTS)
def test_work_item_types_refuse_dot_segments_and_stay_in_the_organization(
    client: FlaskClient, connection: int, sandbox: Sandbox, segment: str
) -> None:
    resp = client.get(
        f"/admin/connections/{connection}/projects/{segment}/work-item-types", headers=ADMIN
    )
    assert 400 <= resp.status_code < 500, resp.data
    if resp.status_code == 422:
        assert "project" in resp.get_json()["error"]["details"]
    paths = [r["path"] for r in sandbox.requests_log()]
    assert all(p.startswith("/contoso/") for p in paths), paths
    assert paths == []


def test_dot_segment_projects_are_refused_in_bodies(
    client: FlaskClient, connection: int, sandbox: Sandbox
) -> None:
    for project in ["..", ".", "%2e%2e", "a/..", "..\\x", " .. "]:
        quoted = json.dumps(project)
        template = _post_raw(client, "/admin/templates", _template(connection, project=quoted))
        assert "project" in _details(template), project
        hooks = client.post(
            "/admin/hooks", json={"connection_id": connection, "project": project}, headers=ADMIN
        )
        assert "project" in _details(hooks), project
        wit = _post_raw(client, "/admin/templates", _template(connection, work_item_type=quoted))
        assert "work_item_type" in _details(wit), project
    assert sandbox.requests_log() == []
    # Ordinary names with dots still work: "AppSec" exists, a dotted name is simply not found.
    fine = client.get(
        f"/admin/connections/{connection}/projects/AppSec/work-item-types", headers=ADMIN
    )
    assert fine.status_code == 200
    dotted = client.get(
        f"/admin/connections/{connection}/projects/My.Project/work-item-types", headers=ADMIN
    )
    assert dotted.status_code == 404
    paths = [r["path"] for r in sandbox.requests_log()]
    assert paths and all(p.startswith("/contoso/") for p in paths), paths


# ---- the Azure DevOps hook receiver ---------------------------------------------------------

HOOK_USER, HOOK_PASSWORD = "hook-user", "hook-password-0123456789abcdef"


def _hook_client(app: Flask, connection: int) -> FlaskClient:
    app.extensions["adowh"].store.save_hook(
        **hook_record(connection, username=HOOK_USER, password_hash=hash_password(HOOK_PASSWORD))
    )
    return app.test_client()


def _deliver(client: FlaskClient, text: str) -> Any:
    token = base64.b64encode(f"{HOOK_USER}:{HOOK_PASSWORD}".encode()).decode()
    return client.post(
        "/hooks/ado",
        data=text.encode(),
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )


EVENT = (
    '{"id": "%s", "eventType": "workitem.updated", "publisherId": "tfs",'
    ' "subscriptionId": "00000000-0000-0000-0000-0000000000aa",'
    ' "resource": {"workItemId": 4711, "rev": 4,'
    ' "revisedBy": {"displayName": "%s", "uniqueName": "dana@contoso.com"},'
    ' "revision": {"rev": 4, "fields": {"System.State": "Resolved", "System.Title": "%s"}}}}'
)


def test_hook_delivery_with_a_cut_emoji_in_its_id_is_acknowledged_not_retried(
    app: Flask, connection: int
) -> None:
    client = _hook_client(app, connection)
    resp = _deliver(client, EVENT % (f"7e6d5c4b{CUT}", "Dana", "t"))
    # Not Azure DevOps' own id: acknowledged and ignored (a 503 would be retried forever).
    assert resp.status_code == 200 and resp.get_json() == {"outcome": "invalid"}


def test_hook_delivery_with_cut_emojis_in_person_and_title_is_applied(
    app: Flask, connection: int
) -> None:
    client = _hook_client(app, connection)
    resp = _deliver(client, EVENT % ("7e6d5c4b-1", f"Dana {CUT}", f"XSS {CUT}\\u0000"))
    assert resp.status_code in (200, 202)
    assert resp.get_json()["outcome"] in ("recorded", "not_ours")
    again = _deliver(client, EVENT % ("7e6d5c4b-1", f"Dana {CUT}", f"XSS {CUT}\\u0000"))
    assert again.get_json()["outcome"] == "duplicate"


def test_content_hash_never_raises_on_unstorable_text() -> None:
    """Last line of defence should validation ever miss a field."""

    def risk(name: str) -> Risk:
        return Risk(id=None, source="s", key="k", name=name, severity="high")

    first, second = content_hash(risk("XSS \ud83d")), content_hash(risk("XSS \ud83e"))
    assert len(first) == 64 and first != second
    assert first == content_hash(risk("XSS \ud83d"))


@pytest.mark.parametrize(
    ("work_item_id", "rev"),
    [
        pytest.param('"' + "9" * 5000 + '"', "4", id="id-past-int-digit-limit"),
        pytest.param("1" + "0" * 30, "4", id="id-past-sqlite-integer"),
        pytest.param("4711", "1" + "0" * 30, id="rev-past-sqlite-integer"),
        pytest.param("1e400", "4", id="id-infinite"),
    ],
)
def test_hook_delivery_with_numbers_no_database_holds_is_acknowledged(
    app: Flask, connection: int, work_item_id: str, rev: str
) -> None:
    client = _hook_client(app, connection)
    text = (
        '{"id": "e-1", "eventType": "workitem.updated", "resource": {"workItemId": '
        + work_item_id
        + ', "rev": '
        + rev
        + ', "revision": {"fields": {"System.State": "Resolved"}}}}'
    )
    resp = _deliver(client, text)
    assert resp.status_code in (200, 202), resp.data  # a 503 would be retried, then punished


@pytest.mark.parametrize("name", ["..", ".", " .. ", "%2e%2e", "%2E.", "%252e%252e"])
def test_the_azure_devops_client_never_sends_a_dot_segment(name: str) -> None:
    """Defence in depth behind the schemas (webhook.ado._segment builds every path segment)."""
    from webhook import ado

    with pytest.raises(ValueError, match="dot segment"):
        ado._segment(name, "project")
    assert ado._segment("My.Project", "project") == "My.Project"
    assert ado._segment("a/../b", "project") == "a%2F..%2Fb"
