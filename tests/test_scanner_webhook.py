"""POST /webhooks/risks/<source>: signatures, validation, idempotency, atomicity."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import Scanner, risk, signed_headers
from webhook.domain.signatures import sign


def stored_risks(db_path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(
            "SELECT source, key, severity, status FROM risks ORDER BY id"
        ).fetchall()


def test_published_standard_webhooks_vector() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signed_single_risk_is_stored_and_acknowledged(scanner: Scanner, settings) -> None:
    resp = scanner.send({"risk": risk("R-1", severity="HIGH")})
    assert resp.status_code == 202
    body = resp.get_json()
    assert body["risks"][0]["key"] == "R-1"
    assert body["risks"][0]["action"] == "created"
    assert isinstance(body["risks"][0]["id"], int)
    assert stored_risks(settings.db_path) == [("sast", "R-1", "high", "open")]


def test_actions_created_updated_unchanged(scanner: Scanner) -> None:
    assert scanner.send({"risk": risk("R-1")}).get_json()["risks"][0]["action"] == "created"
    assert scanner.send({"risk": risk("R-1")}).get_json()["risks"][0]["action"] == "unchanged"
    changed = scanner.send({"risk": risk("R-1", severity="critical")})
    assert changed.get_json()["risks"][0]["action"] == "updated"


def _post(client: FlaskClient, headers: dict[str, str], body: bytes = b'{"risk": {}}') -> Any:
    return client.post("/webhooks/risks/sast", data=body, headers=headers)


BODY = json.dumps({"risk": risk()}).encode()


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda h, s: h.pop("webhook-signature"), id="no-signature"),
        pytest.param(lambda h, s: h.pop("webhook-id"), id="no-id"),
        pytest.param(lambda h, s: h.pop("webhook-timestamp"), id="no-timestamp"),
        pytest.param(lambda h, s: h.update({"webhook-signature": "v1,"}), id="empty-sig"),
        pytest.param(lambda h, s: h.update({"webhook-signature": "garbage"}), id="no-version"),
        pytest.param(lambda h, s: h.update({"webhook-signature": "v1,!!!notbase64"}), id="bad-b64"),
        pytest.param(
            lambda h, s: h.update({"webhook-signature": "v2," + h["webhook-signature"][3:]}),
            id="wrong-version",
        ),
        pytest.param(
            lambda h, s: h.update(
                {"webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()}
            ),
            id="wrong-mac",
        ),
        pytest.param(lambda h, s: h.update({"webhook-timestamp": "abc"}), id="ts-not-number"),
        pytest.param(lambda h, s: h.update({"webhook-timestamp": "-5"}), id="ts-negative"),
        pytest.param(lambda h, s: h.update({"webhook-timestamp": "1" * 40}), id="ts-huge"),
        pytest.param(lambda h, s: h.update({"webhook-timestamp": "1.5"}), id="ts-float"),
        pytest.param(lambda h, s: h.update({"webhook-id": "other-id"}), id="id-swapped"),
    ],
)
def test_malformed_signature_headers_are_401(scanner: Scanner, settings, mutate) -> None:
    headers = signed_headers(scanner.secret, BODY)
    mutate(headers, scanner.secret)
    resp = _post(scanner.client, headers, BODY)
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "invalid_signature"
    assert stored_risks(settings.db_path) == []


@pytest.mark.parametrize("skew", [-301, 301, -3600, 10**9])
def test_timestamp_outside_five_minutes_is_401(scanner: Scanner, skew: int) -> None:
    ts = int(time.time()) + skew
    headers = signed_headers(scanner.secret, BODY, timestamp=max(ts, 0))
    assert _post(scanner.client, headers, BODY).status_code == 401


def test_timestamp_inside_tolerance_is_accepted(scanner: Scanner) -> None:
    headers = signed_headers(scanner.secret, BODY, timestamp=int(time.time()) - 290)
    assert _post(scanner.client, headers, BODY).status_code == 202


def test_body_tampered_after_signing_is_401(scanner: Scanner) -> None:
    headers = signed_headers(scanner.secret, BODY)
    tampered = BODY.replace(b"high", b"info")
    assert _post(scanner.client, headers, tampered).status_code == 401


def test_any_listed_signature_may_match(scanner: Scanner) -> None:
    headers = signed_headers(scanner.secret, BODY)
    wrong = "v1," + base64.b64encode(b"y" * 32).decode()
    headers["webhook-signature"] = f"{wrong} v1a,abc {headers['webhook-signature']}"
    assert _post(scanner.client, headers, BODY).status_code == 202


def test_unknown_source_is_404(client: FlaskClient) -> None:
    resp = client.post(
        "/webhooks/risks/nobody",
        data=BODY,
        headers=signed_headers("whsec_" + base64.b64encode(b"k" * 24).decode(), BODY),
    )
    assert resp.status_code == 404
    assert resp.get_json()["error"]["code"] == "not_found"


INVALID_BODIES = [
    ({}, "_schema"),
    ({"risk": risk(), "risks": [risk("R-2")]}, "_schema"),
    ({"risks": []}, "risks"),
    ({"risks": [risk("R-1"), risk("R-1")]}, "risks"),
    ({"risk": {"name": "x", "severity": "high"}}, "risk.key"),
    ({"risk": risk(key="")}, "risk.key"),
    ({"risk": risk(key="k" * 257)}, "risk.key"),
    ({"risk": risk(name="")}, "risk.name"),
    ({"risk": risk(name="n" * 1001)}, "risk.name"),
    ({"risk": risk(severity="urgent")}, "risk.severity"),
    ({"risk": risk(severity=3)}, "risk.severity"),
    ({"risk": risk(status="closed")}, "risk.status"),
    ({"risk": risk(url="javascript:alert(1)")}, "risk.url"),
    ({"risk": risk(url="ftp://x.example/a")}, "risk.url"),
    ({"risk": risk(evidence="e" * (256 * 1024 + 1))}, "risk.evidence"),
    ({"risk": risk(proof=["not", "text"])}, "risk.proof"),
    ({"risk": risk(assets=[{"group": "host"}])}, "risk.assets.0.identifier"),
    ({"risk": risk(assets=[{"group": "h", "identifier": "i", "extra": 1}])}, "risk.assets.0.extra"),
    ({"risk": risk(assets=[{"group": "h", "identifier": "i"}] * 10_001)}, "risk.assets"),
    ({"risk": risk(tags="not-a-list")}, "risk.tags"),
    ({"risk": risk(surprise=True)}, "risk.surprise"),
    ({"risk": risk(), "extra": 1}, "extra"),
    ({"risks": [risk(f"R-{i}") for i in range(1001)]}, "risks"),
    ({"risks": [risk("ok"), risk("bad", severity="nope")]}, "risks.1.severity"),
]


@pytest.mark.parametrize(("payload", "field"), INVALID_BODIES)
def test_invalid_bodies_are_422_with_field_details(
    scanner: Scanner, settings, payload, field
) -> None:
    resp = scanner.send(payload)
    assert resp.status_code == 422, resp.get_json()
    error = resp.get_json()["error"]
    assert error["code"] == "validation_failed"
    assert field in error["details"], error["details"]
    assert stored_risks(settings.db_path) == []


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'"string"', b'{"risk": '])
def test_non_object_json_is_rejected_and_nothing_stored(scanner: Scanner, settings, raw) -> None:
    resp = scanner.send(None, raw=raw)
    assert resp.status_code in (400, 422)
    assert resp.get_json()["error"]["code"] in ("invalid_json", "validation_failed")
    assert stored_risks(settings.db_path) == []


def test_repeated_webhook_id_returns_first_answer_and_stores_nothing_new(
    scanner: Scanner, settings
) -> None:
    first = scanner.send({"risk": risk("R-1")}, msg_id="msg_same")
    again = scanner.send({"risk": risk("R-1", severity="critical")}, msg_id="msg_same")
    assert again.status_code == first.status_code == 202
    assert again.get_json() == first.get_json()
    assert stored_risks(settings.db_path) == [("sast", "R-1", "high", "open")]
    with sqlite3.connect(settings.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM risk_history").fetchone()[0] == 1


def test_same_webhook_id_from_another_source_is_independent(client, admin, scanner) -> None:
    other = Scanner(client, admin, name="dast")
    assert scanner.send({"risk": risk("R-1")}, msg_id="msg_x").status_code == 202
    resp = other.send({"risk": risk("R-1")}, msg_id="msg_x")
    assert resp.get_json()["risks"][0]["action"] == "created"


def test_thousand_risk_batch_is_accepted_atomically(scanner: Scanner, settings) -> None:
    batch = [risk(f"R-{i}", assets=[{"group": "host", "identifier": f"h{i}"}]) for i in range(1000)]
    resp = scanner.send({"risks": batch})
    assert resp.status_code == 202
    assert len(resp.get_json()["risks"]) == 1000
    assert len(stored_risks(settings.db_path)) == 1000


def test_batch_with_one_bad_risk_stores_nothing(scanner: Scanner, settings) -> None:
    batch = [risk(f"R-{i}") for i in range(999)] + [risk("bad", url="nope")]
    assert scanner.send({"risks": batch}).status_code == 422
    assert stored_risks(settings.db_path) == []


def test_body_over_limit_is_413(tmp_path, admin) -> None:
    from tests.conftest import make_settings
    from webhook import create_app

    app = create_app(make_settings(tmp_path, WEBHOOK_MAX_BODY_BYTES=2048))
    client = app.test_client()
    sc = Scanner(client, admin)
    resp = sc.send({"risk": risk(evidence="x" * 5000)})
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "payload_too_large"


def test_rotated_secret_old_one_valid_for_grace_period(client, admin, scanner: Scanner) -> None:
    old = scanner.secret
    resp = client.post(f"/admin/sources/{scanner.source['id']}/rotate-secret", headers=admin)
    assert resp.status_code == 200
    new = resp.get_json()["secret"]
    assert new != old and new.startswith("whsec_")
    assert resp.get_json()["previous_secret_valid_until"]
    body = json.dumps({"risk": risk("R-9")}).encode()
    for secret in (old, new):
        headers = signed_headers(secret, body)
        assert client.post("/webhooks/risks/sast", data=body, headers=headers).status_code == 202
