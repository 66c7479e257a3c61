"""Admin web UI pages over the admin API's services, against the Azure DevOps stand-in
(Flask test client; the browser story is in test_ui_browser.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Scanner, make_settings, pat_connection, risk
from tests.ui_helpers import form_values, post_form, sign_in, text_of
from webhook import create_app
from webhook.composition import build_handlers
from webhook.sandbox import Sandbox
from webhook.worker import Worker

PAGES = (
    "/ui/",
    "/ui/connections",
    "/ui/templates",
    "/ui/hooks",
    "/ui/sources",
    "/ui/risks",
    "/ui/jobs",
    "/ui/templates/new",
    "/ui/connections/new",
    "/ui/sources/new",
)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        yield sb


@pytest.fixture
def ui_app(tmp_path: Path, sandbox: Sandbox) -> Iterator[Flask]:
    sandbox.reset()
    settings = make_settings(
        tmp_path,
        WEBHOOK_ALLOWED_ORG_HOSTS=urlsplit(sandbox.url).netloc,
        WEBHOOK_ENTRA_AUTHORITY=sandbox.url,
        WEBHOOK_PUBLIC_URL="http://127.0.0.1:9",
    )
    application = create_app(settings)
    yield application
    application.extensions["adowh"].store.db.close()


@pytest.fixture
def ui(ui_app: Flask) -> FlaskClient:
    client = ui_app.test_client()
    assert sign_in(client).status_code == 303
    return client


def connect(ui: FlaskClient, sandbox: Sandbox, **overrides: str) -> Any:
    data = {
        "name": "sandbox",
        "organization_url": sandbox.org_url,
        "auth_type": "pat",
        "token": sandbox.pat,
        **overrides,
    }
    return post_form(ui, "/ui/connections", data, "/ui/connections/new")


def alerts(html: str) -> list[str]:
    return [text_of(m) for m in re.findall(r'role="alert"[^>]*>(.*?)</p>', html, re.S)]


def all_pages(ui: FlaskClient, extra: tuple[str, ...] = ()) -> str:
    return "\n".join(ui.get(p).get_data(as_text=True) for p in (*PAGES, *extra))


# ---- connections ----------------------------------------------------------------------------


def test_connect_with_a_pat_then_test_shows_ok(ui: FlaskClient, sandbox: Sandbox) -> None:
    resp = connect(ui, sandbox)
    assert resp.status_code == 303
    page = ui.get("/ui/connections").get_data(as_text=True)
    assert "Connected “sandbox”: 4 project(s) visible" in text_of(page)
    resp = post_form(ui, "/ui/connections/1/test", {}, "/ui/connections")
    assert "OK — connected; 4 project(s) visible" in text_of(resp.get_data(as_text=True))
    fragment = ui.post(
        "/ui/connections/1/test",
        data={"csrf_token": re.search(r'value="([^"]+)"', page).group(1)},  # type: ignore[union-attr]
        headers={"HX-Request": "true"},
    ).get_data(as_text=True)
    assert text_of(fragment) == "OK — connected; 4 project(s) visible"
    assert "<html" not in fragment


def test_connect_with_a_service_principal(ui: FlaskClient, sandbox: Sandbox) -> None:
    sp = sandbox.sp
    resp = connect(
        ui,
        sandbox,
        name="sp",
        auth_type="service_principal",
        token="",
        tenant_id=sp["tenant_id"],
        client_id=sp["client_id"],
        client_secret=sp["client_secret"],
    )
    assert resp.status_code == 303, alerts(resp.get_data(as_text=True))
    page = text_of(ui.get("/ui/connections").get_data(as_text=True))
    assert f"Service principal (client {sp['client_id']})" in page
    assert sp["client_secret"] not in all_pages(ui)


def test_test_shows_azure_devops_message_when_credentials_stop_working(
    ui: FlaskClient, sandbox: Sandbox
) -> None:
    connect(ui, sandbox)
    sandbox.add_fault(kind="status", status=401, path_contains="_apis/projects", times=5)
    resp = post_form(ui, "/ui/connections/1/test", {}, "/ui/connections")
    text = text_of(resp.get_data(as_text=True))
    assert "Failed — credentials rejected:" in text
    assert "TF400813" in text


def test_a_wrong_pat_is_refused_in_words_and_the_form_kept_without_the_token(
    ui: FlaskClient, sandbox: Sandbox
) -> None:
    resp = connect(ui, sandbox, token="not-the-pat")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400
    assert any("Azure DevOps rejected the credentials" in a for a in alerts(html))
    values = form_values(html)
    assert values["name"] == "sandbox"
    assert values["organization_url"] == sandbox.org_url
    assert values["token"] is None  # a typed secret is never sent back
    assert "not-the-pat" not in html
    assert (
        'id="token" name="token" autocomplete="off" aria-describedby="token-hint token-error"'
        in html
    )
    assert "Test" not in text_of(ui.get("/ui/connections").get_data(as_text=True))


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("organization_url", "https://evil.example/contoso", "is not an Azure DevOps host"),
        ("organization_url", "", "This field is required."),
        ("name", "", "This field is required."),
        ("token", "", "This field is required."),
        ("token", "has spaces in it", "Must be printable ASCII without spaces."),
    ],
)
def test_bad_connection_fields_are_named_and_the_form_kept(
    ui: FlaskClient, sandbox: Sandbox, field: str, value: str, expected: str
) -> None:
    resp = connect(ui, sandbox, **{field: value})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422
    error = re.search(rf'id="{field}-error" class="field-error">([^<]*)<', html)
    assert error, html
    assert expected.lower() in error.group(1).lower()
    assert f'id="{field}"' in html and f"{field}-error" in html
    kept = form_values(html)
    if field != "name":
        assert kept["name"] == "sandbox"
    assert sandbox.pat not in html
    assert "No connection yet" in ui.get("/ui/connections").get_data(as_text=True)


def test_a_second_connection_with_the_same_name_is_refused_on_the_name(
    ui: FlaskClient, sandbox: Sandbox
) -> None:
    connect(ui, sandbox)
    resp = connect(ui, sandbox)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 409
    assert re.search(r'id="name-error" class="field-error">[^<]*already exists', html)


# ---- templates ------------------------------------------------------------------------------


def test_work_item_types_api_lists_required_fields_with_allowed_values(
    ui_app: Flask, sandbox: Sandbox, admin: dict[str, str]
) -> None:
    client = ui_app.test_client()
    resp = client.post(
        "/admin/connections",
        json=pat_connection(sandbox.org_url, sandbox.pat, name="s"),
        headers=admin,
    )
    assert resp.status_code == 201
    types = client.get("/admin/connections/1/projects/Strict/work-item-types", headers=admin)
    bug = next(t for t in types.get_json()["items"] if t["name"] == "Bug")
    details = {d["reference_name"]: d for d in bug["required_field_details"]}
    assert details["Custom.Team"] == {
        "reference_name": "Custom.Team",
        "name": "Team",
        "allowed_values": ["Red", "Blue"],
        "default": None,
    }
    assert details["Microsoft.VSTS.Common.ValueArea"]["default"] == "Business"
    assert details["Microsoft.VSTS.Common.ValueArea"]["allowed_values"] == [
        "Architectural",
        "Business",
    ]
    assert "Custom.Team" in bug["required_fields"]
    assert "Microsoft.VSTS.Common.ValueArea" not in bug["required_fields"]


def test_template_choices_come_from_azure_devops(ui: FlaskClient, sandbox: Sandbox) -> None:
    connect(ui, sandbox)
    html = ui.get("/ui/templates/new").get_data(as_text=True)
    assert '<option value="1">sandbox</option>' in html
    html = ui.get("/ui/templates/choices?connection_id=1").get_data(as_text=True)
    assert '<option value="1" selected>sandbox</option>' in html
    for project in ("AppSec", "Custom", "Platform", "Strict"):
        assert f"<option>{project}</option>" in html
    html = ui.get(
        "/ui/templates/choices?connection_id=1&project=Strict&work_item_type=Bug",
        headers={"HX-Request": "true"},
    ).get_data(as_text=True)
    assert "<html" not in html
    assert "<option selected>Strict</option>" in html
    assert "<option selected>Bug</option><option>Task</option><option>User Story</option>" in html
    assert '<label for="field-1">Team (Custom.Team)</label>' in html
    assert "<option>Red</option><option>Blue</option>" in html
    # Value Area is required but has a default; Title/Severity/Repro Steps are set by the service.
    assert "ValueArea" not in html
    assert "System.Title" not in html
    html = ui.get(
        "/ui/templates/choices?connection_id=1&project=AppSec&work_item_type=Bug"
    ).get_data(as_text=True)
    assert "requires no field for Bug beyond those the service sets" in text_of(html)


def test_template_choices_say_when_azure_devops_fails(ui: FlaskClient, sandbox: Sandbox) -> None:
    connect(ui, sandbox)
    sandbox.add_fault(kind="status", status=401, path_contains="_apis/projects", times=5)
    html = ui.get("/ui/templates/choices?connection_id=1").get_data(as_text=True)
    assert any("Could not read the choices from Azure DevOps" in a for a in alerts(html))


@pytest.mark.parametrize(
    ("title_format", "expected"),
    [
        ("{name}", "SQL injection in /api/orders"),
        (
            "Scanner - Project '{project}' contains issue '{name}'",
            "Scanner - Project 'shop-backend' contains issue 'SQL injection in /api/orders'",
        ),
        ("[{severity}] {key} from {source}", "[High] F-1042 from sast"),
        ("{name.__class__}", "Unknown placeholder(s): {name.__class__}"),
    ],
)
def test_title_preview_renders_the_sample_risk(
    ui: FlaskClient, title_format: str, expected: str
) -> None:
    resp = ui.get("/ui/templates/title-preview", query_string={"title_format": title_format})
    assert text_of(resp.get_data(as_text=True)) == expected


def template_form(**overrides: str) -> dict[str, str]:
    return {
        "name": "Strict bugs",
        "connection_id": "1",
        "project": "Strict",
        "work_item_type": "Bug",
        "severity_threshold": "high",
        "auto_create": "on",
        "title_format": "[{severity}] {name}",
        **overrides,
    }


def test_a_template_missing_a_required_field_is_refused_naming_it(
    ui: FlaskClient, sandbox: Sandbox
) -> None:
    connect(ui, sandbox)
    resp = post_form(ui, "/ui/templates", template_form(), "/ui/templates/new")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert alerts(html) == [
        "Azure DevOps requires these fields for Bug in Strict, and the template leaves them "
        "unset: Team (Custom.Team). Choose a value for each."
    ]
    assert 'name="field:Custom.Team" aria-invalid="true"' in html
    kept = form_values(html)
    assert kept["name"] == "Strict bugs"
    assert kept["title_format"] == "[{severity}] {name}"
    assert '<option value="high" selected>High</option>' in html
    assert 'id="auto_create" name="auto_create" checked' in html
    assert "No template yet" in ui.get("/ui/templates").get_data(as_text=True)


def test_a_template_with_the_required_field_is_saved(ui: FlaskClient, sandbox: Sandbox) -> None:
    connect(ui, sandbox)
    resp = post_form(
        ui, "/ui/templates", template_form(**{"field:Custom.Team": "Red"}), "/ui/templates/new"
    )
    assert resp.status_code == 303, alerts(resp.get_data(as_text=True))
    page = text_of(ui.get("/ui/templates").get_data(as_text=True))
    assert "Saved template “Strict bugs”: Bug in Strict." in page
    assert "Custom.Team = Red" in page


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"name": ""}, "name", "This field is required."),
        ({"project": ""}, "project", "This field is required."),
        ({"title_format": "{nope}"}, "title_format", "unknown placeholder {nope}"),
        ({"project": "Nowhere"}, "project", "does not exist"),
    ],
)
def test_template_errors_are_named_with_the_form_kept(
    ui: FlaskClient, sandbox: Sandbox, overrides: dict[str, str], field: str, message: str
) -> None:
    connect(ui, sandbox)
    form = template_form(**{"field:Custom.Team": "Red", **overrides})
    resp = post_form(ui, "/ui/templates", form, "/ui/templates/new")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422
    error = re.search(rf'id="{field}-error" class="field-error">([^<]*)<', html)
    assert error, html[-3000:]
    assert message.lower() in error.group(1).lower()
    if field != "name":
        assert form_values(html)["name"] == "Strict bugs"


# ---- hooks, sources -------------------------------------------------------------------------


def test_register_hooks_shows_live_status(ui: FlaskClient, sandbox: Sandbox) -> None:
    connect(ui, sandbox)
    resp = post_form(ui, "/ui/hooks", {"connection_id": "1", "project": "AppSec"}, "/ui/hooks")
    assert resp.status_code == 303
    page = text_of(ui.get("/ui/hooks").get_data(as_text=True))
    assert "Registered 3 subscription(s) for AppSec." in page
    for event in ("workitem.updated", "workitem.deleted", "workitem.restored"):
        assert f"AppSec {event} enabled 0 time(s)" in page
    sub = sandbox.subscriptions()[0]
    sandbox.set_subscription_status(sub["id"], "disabledBySystem")
    page = text_of(ui.get("/ui/hooks").get_data(as_text=True))
    assert f"AppSec {sub['eventType']} disabledBySystem" in page
    html = all_pages(ui)
    for s in sandbox.subscriptions():
        assert s["consumerInputs"]["basicAuthPassword"] not in html


def test_register_hooks_names_an_unknown_project(ui: FlaskClient, sandbox: Sandbox) -> None:
    connect(ui, sandbox)
    resp = post_form(ui, "/ui/hooks", {"connection_id": "1", "project": "Nowhere"}, "/ui/hooks")
    assert resp.status_code == 422
    assert any("Project 'Nowhere' was not found" in a for a in alerts(resp.get_data(as_text=True)))


def test_a_source_secret_is_shown_once(ui: FlaskClient) -> None:
    resp = post_form(ui, "/ui/sources", {"name": "sast"}, "/ui/sources/new")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 201
    assert resp.headers["Cache-Control"] == "no-store"
    secret = re.search(r'id="signing-secret" value="(whsec_[^"]+)"', html)
    assert secret, html
    assert '<label for="signing-secret">Signing secret</label>' in html
    assert "http://127.0.0.1:9/webhooks/risks/sast" in html  # the signing snippet's URL
    assert secret.group(1) not in all_pages(ui)
    rotated = post_form(ui, "/ui/sources/1/rotate-secret", {}, "/ui/sources")
    new_secret = re.search(
        r'id="signing-secret" value="(whsec_[^"]+)"', rotated.get_data(as_text=True)
    )
    assert new_secret and new_secret.group(1) != secret.group(1)
    pages = all_pages(ui)
    assert new_secret.group(1) not in pages
    assert "valid until" in text_of(ui.get("/ui/sources").get_data(as_text=True))


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"name": ""}, "name", "This field is required."),
        ({"name": "has space"}, "name", "1-64 of A-Z"),
        ({"name": "ok", "callback_url": "ftp://x.example/"}, "callback_url", "http"),
    ],
)
def test_bad_source_fields_are_named_and_the_form_kept(
    ui: FlaskClient, form: dict[str, str], field: str, message: str
) -> None:
    resp = post_form(ui, "/ui/sources", form, "/ui/sources/new")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422
    error = re.search(rf'id="{field}-error" class="field-error">([^<]*)<', html)
    assert error and message.lower() in error.group(1).lower(), html
    assert form_values(html)["name"] == form["name"]
    assert "whsec_" not in html


# ---- risks, jobs, overview ------------------------------------------------------------------


def test_risks_filter_paginate_and_link_to_their_work_items(
    ui: FlaskClient, ui_app: Flask, admin: dict[str, str], sandbox: Sandbox
) -> None:
    client = ui_app.test_client()
    scanner = Scanner(client, admin)
    batch = [risk(f"R-{i:03d}", severity="low") for i in range(60)]
    batch.append(risk("R-HIGH", severity="high"))
    assert scanner.send({"risks": batch}).status_code == 202
    page = text_of(ui.get("/ui/risks").get_data(as_text=True))
    assert "61 risk(s); page 1 of 2." in page
    assert "R-HIGH" in page
    second = ui.get("/ui/risks?page=2").get_data(as_text=True)
    assert "page 2 of 2" in text_of(second)
    assert second.count('href="/ui/risks/') == 11
    high = text_of(ui.get("/ui/risks?severity=high").get_data(as_text=True))
    assert "1 risk(s)." in high and "R-HIGH" in high and "R-001" not in high
    keyed = text_of(ui.get("/ui/risks?key=R-007&status=open").get_data(as_text=True))
    assert "1 risk(s)." in keyed and "R-007" in keyed
    bad = ui.get("/ui/risks?severity=extreme")
    assert bad.status_code == 422
    assert "severity-error" in bad.get_data(as_text=True)
    # A work item linked to a risk is a link to Azure DevOps.
    connect(ui, sandbox)
    post_form(ui, "/ui/templates", template_form(project="AppSec"), "/ui/templates/new")
    risk_id = client.get("/admin/risks?key=R-HIGH", headers=admin).get_json()["items"][0]["id"]
    resp = post_form(
        ui, f"/ui/risks/{risk_id}/work-item", {"template_id": "1"}, f"/ui/risks/{risk_id}"
    )
    assert resp.status_code == 303
    services = ui_app.extensions["adowh"]
    worker = Worker(store=services.store, handlers=build_handlers(services))
    while worker.run_once():
        pass
    item = sandbox.work_items()[0]
    html = ui.get("/ui/risks?severity=high").get_data(as_text=True)
    href = f"{sandbox.org_url}/{item['project_id']}/_workitems/edit/{item['id']}"
    assert f'<a href="{href}" rel="noopener noreferrer">Work item {item["id"]}</a>' in html
    detail = text_of(ui.get(f"/ui/risks/{risk_id}").get_data(as_text=True))
    assert "History" in detail and "export requested" in detail and "work item created" in detail


def test_manual_export_refusals_are_in_words(
    ui: FlaskClient, ui_app: Flask, admin: dict[str, str]
) -> None:
    scanner = Scanner(ui_app.test_client(), admin)
    scanner.send({"risk": risk("R-1")})
    resp = post_form(ui, "/ui/risks/1/work-item", {"template_id": ""}, "/ui/risks/1")
    assert resp.status_code == 422
    assert alerts(resp.get_data(as_text=True)) == [
        "Choose the template to file the work item with."
    ]
    resp = post_form(ui, "/ui/risks/1/work-item", {"template_id": "77"}, "/ui/risks/1")
    assert resp.status_code == 409
    assert alerts(resp.get_data(as_text=True)) == ["template 77 does not exist"]


def test_failed_jobs_show_azure_devops_message_and_retry_requeues(
    ui: FlaskClient, ui_app: Flask
) -> None:
    store = ui_app.extensions["adowh"].store
    db = store.db
    with db.write() as conn:
        conn.execute(
            "INSERT INTO jobs(kind, lane, state, attempts, last_error, next_attempt_ts,"
            " created_ts, updated_ts) VALUES ('create_work_item', 'x', 'failed', 1,"
            " 'TF401320: Rule Error for field Team. Error code: Required, InvalidEmpty.', 0, 0, 0)"
        )
    page = text_of(ui.get("/ui/jobs").get_data(as_text=True))
    assert "TF401320: Rule Error for field Team. Error code: Required, InvalidEmpty." in page
    overview = text_of(ui.get("/ui/").get_data(as_text=True))
    assert "Jobs failed 1" in overview
    resp = post_form(ui, "/ui/jobs/1/retry", {}, "/ui/jobs")
    assert resp.status_code == 303
    page = text_of(ui.get("/ui/jobs").get_data(as_text=True))
    assert "Job 1 (create_work_item) is queued again" in page
    assert "No failed job." in page
    assert store.list_jobs("pending", 1, 10)[1] == 1
    resp = post_form(ui, "/ui/jobs/1/retry", {}, "/ui/jobs")
    assert "Not retried: job 1 is pending" in text_of(
        ui.get(resp.headers["Location"]).get_data(as_text=True)
    )


def test_overview_shows_health_and_counts(
    ui: FlaskClient, ui_app: Flask, admin: dict[str, str]
) -> None:
    store = ui_app.extensions["adowh"].store
    scanner = Scanner(ui_app.test_client(), admin)
    scanner.send({"risks": [risk("A", severity="critical"), risk("B"), risk("C")]})
    store.pause_organization("https://dev.azure.com/contoso", __import__("time").time() + 120)
    html = ui.get("/ui/").get_data(as_text=True)
    page = text_of(html)
    assert "Worker heartbeat no worker has run yet" in page
    assert "Critical 1 High 2 Medium 0 Low 0 Info 0" in page
    assert "Total 3" in page
    assert "https://dev.azure.com/contoso paused by Azure DevOps" in page
    assert "Last reconciliation not run yet" in page
    assert 'role="img"' in html and "Work items filed per day over the last 14 days" in html
    store.heartbeat("w1", 1, "h")
    assert "Worker heartbeat fresh" in text_of(ui.get("/ui/").get_data(as_text=True))


def test_no_stored_secret_ever_appears_on_a_page(
    ui: FlaskClient, ui_app: Flask, sandbox: Sandbox, admin: dict[str, str]
) -> None:
    connect(ui, sandbox)
    post_form(ui, "/ui/hooks", {"connection_id": "1", "project": "AppSec"}, "/ui/hooks")
    scanner = Scanner(ui_app.test_client(), admin)
    scanner.send({"risk": risk("R-1")})
    settings = ui_app.extensions["adowh"].settings
    secrets = [sandbox.pat, scanner.secret, settings.admin_token, *settings.secret_keys]
    secrets += [s["consumerInputs"]["basicAuthPassword"] for s in sandbox.subscriptions()]
    html = all_pages(ui, ("/ui/risks/1",))
    html += ui.get(
        "/ui/templates/choices?connection_id=1&project=Strict&work_item_type=Bug"
    ).get_data(as_text=True)
    for secret in secrets:
        assert secret not in html
    assert json.dumps(secrets)  # non-empty sanity


# ---- the stand-in's work item page ----------------------------------------------------------


def test_stand_in_work_item_page_lets_a_person_close_the_item(sandbox: Sandbox) -> None:
    import requests

    sandbox.reset()
    item = sandbox.create_item("AppSec", "Bug", {"System.Title": "Broken login"})
    url = f"{sandbox.org_url}/{item['project_id']}/_workitems/edit/{item['id']}"
    page = requests.get(url, timeout=10)
    assert page.status_code == 200
    assert f"Bug {item['id']}: Broken login" in text_of(page.text)
    assert "State New (Proposed)" in text_of(page.text)
    resp = requests.post(
        url,
        data={"state": "Closed", "reason": "Fixed", "changed_by": "Pat Person <pat@contoso.com>"},
        timeout=10,
    )
    assert resp.status_code == 200  # after the redirect
    assert "Saved: the work item is now Closed" in text_of(resp.text)
    stored = sandbox.work_item(item["id"])["fields"]
    assert stored["System.State"] == "Closed"
    assert stored["System.Reason"] == "Fixed"
    assert stored["System.ChangedBy"] == "Pat Person <pat@contoso.com>"
    refused = requests.post(url, data={"state": "Nowhere"}, timeout=10)
    assert refused.status_code == 400
    assert "Nowhere" in text_of(refused.text)
    assert (
        requests.get(
            f"{sandbox.org_url}/{item['project_id']}/_workitems/edit/99999", timeout=10
        ).status_code
        == 404
    )


@pytest.mark.e2e
def test_sandbox_help_says_what_it_prints_and_what_the_service_needs() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "webhook.sandbox", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    flat = " ".join(out.split())
    assert '{"url", "org_url", "pat", "sp":' in flat
    for name in ("WEBHOOK_ALLOWED_ORG_HOSTS", "WEBHOOK_ENTRA_AUTHORITY", "WEBHOOK_PUBLIC_URL"):
        assert name in flat
    assert "_workitems/edit" in flat


def test_demo_keep_running_ends_with_the_ui_address_and_how_to_sign_in(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from webhook import demo

    class Waiter:
        def check_alive(self) -> None:
            raise KeyboardInterrupt

    class FakeSandbox:
        org_url = "http://127.0.0.1:1/contoso"

    demo._keep_running(Waiter(), "http://127.0.0.1:8123", FakeSandbox(), "tok-123", tmp_path)  # type: ignore[arg-type]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    running = lines[: lines.index("Stopping.")]
    assert running[-2].split() == ["admin", "web", "UI:", "http://127.0.0.1:8123/ui/"]
    assert "Admin token" in running[-1] and "sign in" in running[-1]
    assert "admin token (shown once): tok-123" in running[-3]


def test_inline_test_results_say_what_went_wrong(ui: FlaskClient) -> None:
    token = re.search(r'value="([^"]+)"', ui.get("/ui/jobs").get_data(as_text=True))
    assert token
    resp = ui.post(
        "/ui/connections/99/test",
        data={"csrf_token": token.group(1)},
        headers={"HX-Request": "true"},
    )
    assert resp.status_code == 404
    assert text_of(resp.get_data(as_text=True)) == "Failed — connection 99 does not exist"
    resp = ui.post("/ui/connections/99/test", headers={"HX-Request": "true"})
    assert resp.status_code == 400
    fragment = resp.get_data(as_text=True)
    assert "<html" not in fragment
    assert text_of(fragment).startswith("Failed — This form was refused")
