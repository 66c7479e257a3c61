"""Admin API: auth, sources, risks listing, JSON errors from Flask itself."""

from __future__ import annotations

import base64
import re
import sqlite3

import pytest
from flask.testing import FlaskClient

from tests.conftest import Scanner, risk


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
        {"Authorization": "bearer test-admin-token-0123456789abcdeX"},
    ],
)
@pytest.mark.parametrize("path", ["/admin/sources", "/admin/risks", "/admin/jobs"])
def test_admin_routes_require_the_bearer_token(client: FlaskClient, headers, path) -> None:
    resp = client.get(path, headers=headers)
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "unauthorized"


def test_create_source_shows_secret_once(client: FlaskClient, admin) -> None:
    resp = client.post(
        "/admin/sources",
        json={"name": "sast", "callback_url": "https://scanner.internal/cb"},
        headers=admin,
    )
    assert resp.status_code == 201
    secret = resp.get_json()["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    listing = client.get("/admin/sources", headers=admin)
    assert secret not in listing.get_data(as_text=True)
    item = listing.get_json()["items"][0]
    assert item["name"] == "sast" and item["callback_url"] == "https://scanner.internal/cb"
    assert listing.get_json()["total"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "has space"},
        {"name": "x" * 65},
        {"name": "ok", "extra": 1},
        {"name": "ok", "callback_url": "ftp://x/y"},
        {"name": "ok", "callback_url": "https://user:pw@host/cb"},
    ],
)
def test_invalid_source_bodies_are_422(client: FlaskClient, admin, body) -> None:
    resp = client.post("/admin/sources", json=body, headers=admin)
    assert resp.status_code == 422
    assert resp.get_json()["error"]["details"]


def test_duplicate_source_name_is_409(client: FlaskClient, admin) -> None:
    client.post("/admin/sources", json={"name": "sast"}, headers=admin)
    resp = client.post("/admin/sources", json={"name": "sast"}, headers=admin)
    assert resp.status_code == 409


def test_list_and_filter_risks_with_pagination(client, admin, scanner: Scanner) -> None:
    scanner.send({"risks": [risk(f"R-{i}", severity="high" if i % 2 else "low") for i in range(5)]})
    page = client.get("/admin/risks?severity=high&per_page=1&page=2", headers=admin).get_json()
    assert page["total"] == 2 and page["page"] == 2 and page["per_page"] == 1
    assert len(page["items"]) == 1 and page["items"][0]["severity"] == "high"
    one = page["items"][0]
    assert set(one) >= {
        "id",
        "source",
        "key",
        "name",
        "severity",
        "status",
        "resolution",
        "url",
        "project",
        "assets",
        "created_at",
        "updated_at",
        "work_item",
    }
    assert one["work_item"] is None and one["status"] == "open"
    by_key = client.get("/admin/risks?key=R-3&source=sast", headers=admin).get_json()
    assert [r["key"] for r in by_key["items"]] == ["R-3"]


@pytest.mark.parametrize(
    "query",
    ["status=closed", "severity=urgent", "page=0", "per_page=1001", "per_page=abc", "bogus=1"],
)
def test_bad_risk_queries_are_422(client: FlaskClient, admin, query) -> None:
    assert client.get(f"/admin/risks?{query}", headers=admin).status_code == 422


def test_risk_detail_has_history(client, admin, scanner: Scanner) -> None:
    rid = scanner.send({"risk": risk("R-1")}).get_json()["risks"][0]["id"]
    scanner.send({"risk": risk("R-1", severity="critical", definition="**bold**")})
    detail = client.get(f"/admin/risks/{rid}", headers=admin).get_json()
    assert detail["severity"] == "critical" and detail["definition"] == "**bold**"
    events = [h["event"] for h in detail["history"]]
    assert events[0] == "risk_created" and "severity_changed" in events
    assert client.get("/admin/risks/99999", headers=admin).status_code == 404


def test_flask_errors_are_json(client: FlaskClient, admin) -> None:
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    wrong_method = client.delete("/admin/sources", headers=admin)
    assert wrong_method.status_code == 405
    assert wrong_method.get_json()["error"]["code"] == "method_not_allowed"


def test_unexpected_error_is_json_500_without_details(app, client, admin, monkeypatch) -> None:
    store = app.extensions["adowh"].store

    def boom(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(store, "list_sources", boom)
    resp = client.get("/admin/sources", headers=admin)
    assert resp.status_code == 500
    assert resp.get_json()["error"] == {
        "code": "internal_error",
        "message": "internal server error",
        "details": {},
    }


def test_secrets_are_never_in_the_database_file(client, admin, settings) -> None:
    created = client.post("/admin/sources", json={"name": "sast"}, headers=admin).get_json()
    rotated = client.post(f"/admin/sources/{created['id']}/rotate-secret", headers=admin).get_json()
    raw = b""
    for suffix in ("", "-wal", "-shm"):
        path = settings.db_path.parent / (settings.db_path.name + suffix)
        if path.exists():
            raw += path.read_bytes()
    for secret in (created["secret"], rotated["secret"]):
        assert secret.encode() not in raw
        assert secret.removeprefix("whsec_").encode() not in raw
        assert base64.b64decode(secret.removeprefix("whsec_")) not in raw
    with sqlite3.connect(settings.db_path) as conn:
        enc = conn.execute("SELECT secret_enc FROM sources").fetchone()[0]
    assert enc.startswith("gAAAA")


def test_health_and_readiness(client: FlaskClient, app) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503  # no worker heartbeat yet
    assert not_ready.get_json()["checks"]["database"] == "ok"
    app.extensions["adowh"].store.heartbeat("w1", 1, "host")
    assert client.get("/readyz").status_code == 200


def test_openapi_covers_every_route(client: FlaskClient, app) -> None:
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    from webhook.ui import is_ui_endpoint

    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or is_ui_endpoint(rule.endpoint):  # HTML pages
            continue
        path = rule.rule.replace("<int:", "{").replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented, (path, method)
    risk_schema = spec["components"]["schemas"]["Risk"]
    assert {"key", "name", "severity"} <= set(risk_schema["required"])


def test_migration_brings_a_version_1_database_up_to_date(tmp_path) -> None:
    from webhook.migrations import MIGRATIONS
    from webhook.storage.sqlite.database import Database, schema_sql

    old = sqlite3.connect(tmp_path / "old.db")
    v1 = (
        schema_sql()
        .replace(
            "CREATE INDEX IF NOT EXISTS jobs_lane_held ON jobs(lane, id)\n"
            "    WHERE state IN ('pending','running','failed');",
            "CREATE INDEX IF NOT EXISTS jobs_lane ON jobs(lane, id);",
        )
        .replace("    claim_token       INTEGER NOT NULL DEFAULT 0,", "")
        .replace("    lease_renewals    INTEGER NOT NULL DEFAULT 0,", "")
    )
    # Columns added by migrations 4 and 6.
    v1 = re.sub(r"\n\s+(item_hash|title|body_hash|resolution_reason)\s+TEXT,[^\n]*", "", v1)
    old.executescript(v1)
    old.execute("INSERT INTO meta(key, value) VALUES ('installation_id', 'keep')")
    old.execute("PRAGMA user_version=1")
    old.commit()
    old.close()
    db = Database(tmp_path / "old.db")
    assert db.migrate() == len(MIGRATIONS) + 1
    names = {r[0] for r in db.conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "jobs_lane_held" in names and not {"jobs_lane", "jobs_lane_open"} & names
    columns = {r[1] for r in db.conn.execute("PRAGMA table_info(work_items)")}
    assert {"title", "body_hash"} <= columns
    risk_columns = {r[1] for r in db.conn.execute("PRAGMA table_info(risks)")}
    assert {"item_hash", "resolution_reason"} <= risk_columns
    assert db.conn.execute("SELECT value FROM meta").fetchone()[0] == "keep"
    db.close()
