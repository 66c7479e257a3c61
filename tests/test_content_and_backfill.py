"""In-process: content rewrites are gathered per risk; template backfill; hook coverage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Scanner, hook_record, make_settings, risk, template_record
from webhook.settings import SettingsError
from webhook.storage.sqlite.storage import SqliteStorage
from webhook.storage.types import TemplateRecord

ORG_URL = "https://dev.azure.com/contoso"


def store_of(app: Flask) -> SqliteStorage:
    return app.extensions["adowh"].store  # type: ignore[no-any-return]


def add_template(store: SqliteStorage, name: str, **fields: Any) -> TemplateRecord:
    connection = next(iter(store.list_connections(1, 1)[0]), None) or store.create_connection(
        "c", ORG_URL, {"type": "pat", "token": "pat-for-tests"}
    )
    return store.create_template(template_record(connection.id, name=name, **fields))


def link(store: SqliteStorage, risk_id: int, ado_id: int) -> None:
    assert store.link_work_item(
        risk_id,
        connection_id=store.list_connections(1, 1)[0][0].id,
        template_id=None,
        project="AppSec",
        work_item_type="Bug",
        item={"id": ado_id, "rev": 1, "fields": {"System.State": "New"}},
        tag=f"adowh-test-{risk_id}",
        adopted=False,
        state_category="Proposed",
        rendered_severity="high",
    )


def jobs(client: FlaskClient, admin: dict[str, str]) -> list[dict[str, Any]]:
    return client.get("/admin/jobs", headers=admin).get_json()["items"]  # type: ignore[no-any-return]


def finish_all(store: SqliteStorage) -> None:
    while (job := store.claim_job("test")) is not None:
        store.complete_job(job)


def ids_by_key(scanner: Scanner, *risks: dict[str, Any]) -> dict[str, int]:
    resp = scanner.send({"risks": list(risks)})
    assert resp.status_code == 202, resp.get_json()
    return {r["key"]: r["id"] for r in resp.get_json()["risks"]}


# ---- content changes of linked risks ----------------------------------------------------------


def test_content_changes_of_a_linked_risk_wait_in_one_rewrite(
    app: Flask, client: FlaskClient, admin: dict[str, str], scanner: Scanner
) -> None:
    store = store_of(app)
    add_template(store, "t", auto_create=False)
    rid = ids_by_key(scanner, risk("K", evidence="one"), risk("no-item", evidence="one"))["K"]
    link(store, rid, 101)
    finish_all(store)
    ids_by_key(scanner, risk("K", evidence="two"), risk("no-item", evidence="two"))
    ids_by_key(scanner, risk("K", evidence="three", assets=[{"group": "h", "identifier": "db"}]))
    ids_by_key(scanner, risk("K", evidence="three", tags=["only-a-tag"]))
    pending = jobs(client, admin)
    assert [j["kind"] for j in pending] == ["content_changed"]
    due = datetime.fromisoformat(pending[0]["next_attempt_at"].replace("Z", "+00:00"))
    # Gathered for WEBHOOK_CONTENT_SYNC_SECONDS (60 by default) before the one update.
    assert 50 < due.timestamp() - datetime.now().timestamp() <= 61
    # A severity change updates the item now and brings the content along: the wait ends.
    ids_by_key(scanner, risk("K", evidence="four", severity="critical"))
    assert [j["kind"] for j in jobs(client, admin)] == ["severity_changed"]


# ---- backfill ---------------------------------------------------------------------------------


def backfill(client: FlaskClient, admin: dict[str, str], template_id: int, dry_run: Any) -> Any:
    return client.post(
        f"/admin/templates/{template_id}/backfill", json={"dry_run": dry_run}, headers=admin
    )


def test_backfill_counts_first_then_queues_what_template_choice_gives_it(
    app: Flask, client: FlaskClient, admin: dict[str, str], scanner: Scanner
) -> None:
    store = store_of(app)
    ids = ids_by_key(
        scanner,
        risk("crit", severity="critical"),
        risk("high", severity="high"),
        risk("high-2", severity="HIGH"),
        risk("medium", severity="medium"),
        risk("gone", severity="critical", status="resolved"),
        risk("linked", severity="high"),
        risk("exported", severity="high"),
    )
    other = Scanner(client, admin, name="dast")
    dast_ids = ids_by_key(other, risk("dast-crit", severity="critical"))
    # A template added after the scan; another one wins critical findings of dast.
    bugs = add_template(store, "bugs", severity_threshold="high")
    add_template(store, "dast", severity_threshold="critical", sources=["dast"])
    manual = add_template(store, "manual", auto_create=False, severity_threshold="info")
    link(store, ids["linked"], 500)
    store.request_work_item(ids["exported"], manual.id)
    before = jobs(client, admin)

    dry = backfill(client, admin, bugs.id, True)
    assert dry.status_code == 200
    assert dry.get_json() == {"matched": 3, "queued": 0}
    assert jobs(client, admin) == before

    real = backfill(client, admin, bugs.id, False)
    assert real.get_json() == {"matched": 3, "queued": 3}
    queued = [j for j in jobs(client, admin) if j not in before]
    assert {j["risk_id"] for j in queued} == {ids["crit"], ids["high"], ids["high-2"]}
    assert {j["kind"] for j in queued} == {"create_work_item"}
    assert dast_ids["dast-crit"] not in {j["risk_id"] for j in queued}
    history = client.get(f"/admin/risks/{ids['crit']}", headers=admin).get_json()["history"]
    assert history[-1]["event"] == "backfill_queued"

    again = backfill(client, admin, bugs.id, False)
    assert again.get_json() == {"matched": 0, "queued": 0}
    # Template choice only ever picks auto-create templates.
    assert backfill(client, admin, manual.id, True).get_json() == {"matched": 0, "queued": 0}


def test_backfill_queues_in_batches_without_doubles(
    app: Flask, client: FlaskClient, admin: dict[str, str], scanner: Scanner, monkeypatch
) -> None:
    monkeypatch.setattr("webhook.storage.sql.templates.BACKFILL_BATCH", 7)
    for start in range(0, 50, 25):
        ids_by_key(scanner, *[risk(f"k{i}", severity="low") for i in range(start, start + 25)])
    template = add_template(store_of(app), "all", severity_threshold="info")
    assert backfill(client, admin, template.id, False).get_json() == {
        "matched": 50,
        "queued": 50,
    }
    queued = client.get("/admin/jobs", headers=admin, query_string={"per_page": 1000}).get_json()
    assert queued["total"] == 50
    assert len({j["risk_id"] for j in queued["items"]}) == 50


@pytest.mark.parametrize("body", [{}, {"dry_run": "yes"}, {"dry_run": True, "extra": 1}])
def test_backfill_refuses_a_bad_body_and_an_unknown_template(
    app: Flask, client: FlaskClient, admin: dict[str, str], body: dict[str, Any]
) -> None:
    template = add_template(store_of(app), "t")
    resp = client.post(f"/admin/templates/{template.id}/backfill", json=body, headers=admin)
    assert resp.status_code == 422
    assert backfill(client, admin, 999, True).status_code == 404


# ---- hooks never registered -------------------------------------------------------------------


def test_readyz_names_template_projects_without_hooks(app: Flask, client: FlaskClient) -> None:
    store = store_of(app)
    template = add_template(store, "t")
    checks = client.get("/readyz").get_json()["checks"]
    [warning] = checks["service_hooks"]
    assert warning["project"] == "AppSec" and warning["connection_id"] == template.connection_id
    assert "POST /admin/hooks" in warning["message"]
    for event_type in ("workitem.updated", "workitem.deleted", "workitem.restored"):
        store.save_hook(
            **hook_record(
                template.connection_id,
                project_id="p-1",
                event_type=event_type,
                subscription_id=f"sub-{event_type}",
                username=f"u-{event_type}",
                password_hash="x",
            )
        )
    assert client.get("/readyz").get_json()["checks"]["service_hooks"] == "ok"


# ---- WEBHOOK_CONTENT_SYNC_SECONDS -------------------------------------------------------------


def test_content_sync_seconds_setting(tmp_path) -> None:
    assert make_settings(tmp_path).content_sync_seconds == 60
    assert make_settings(tmp_path, WEBHOOK_CONTENT_SYNC_SECONDS="0").content_sync_seconds == 0
    for bad in ("-1", "1.5", "soon", "86401"):
        with pytest.raises(SettingsError, match="WEBHOOK_CONTENT_SYNC_SECONDS"):
            make_settings(tmp_path, WEBHOOK_CONTENT_SYNC_SECONDS=bad)
