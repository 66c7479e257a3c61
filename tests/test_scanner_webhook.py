"""POST /webhooks/risks/<source>: signatures, validation, idempotency, atomicity."""

from __future__ import annotations

import base64
import io
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


# ---- the two front doors (webhook.api.scanner): same answers ---------------------------


def _chunked(client: FlaskClient, path: str, body: bytes, headers: dict[str, str]) -> Any:
    """A request without Content-Length, as gunicorn passes a chunked body on: Flask's door."""
    return client.post(
        path,
        input_stream=io.BytesIO(body),
        headers={**headers, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def _refusals(secret: str) -> list[tuple[str, str, bytes, dict[str, str]]]:
    body = json.dumps({"risk": risk("R-7")}).encode()
    good = signed_headers(secret, body, msg_id="msg_fixed")
    bad_sig = {**good, "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()}
    invalid = json.dumps({"risk": risk("R-8", severity="severe", url="ftp://x")}).encode()
    return [
        ("unknown source", "/webhooks/risks/nope", body, good),
        ("unknown source, non-ascii", "/webhooks/risks/%C3%BCber", body, good),
        ("bad signature", "/webhooks/risks/sast", body, bad_sig),
        ("no headers", "/webhooks/risks/sast", body, {}),
        ("invalid body", "/webhooks/risks/sast", invalid, signed_headers(secret, invalid)),
        ("not json", "/webhooks/risks/sast", b"{nope", signed_headers(secret, b"{nope")),
        ("empty", "/webhooks/risks/sast", b"", signed_headers(secret, b"")),
        ("array", "/webhooks/risks/sast", b"[1]", signed_headers(secret, b"[1]")),
    ]


def test_both_doors_refuse_alike_byte_for_byte(client: FlaskClient, scanner: Scanner) -> None:
    for label, path, body, headers in _refusals(scanner.secret):
        fast = client.post(path, data=body, headers=headers)
        flask_door = _chunked(client, path, body, headers)
        assert fast.status_code == flask_door.status_code, label
        assert fast.status_code in (400, 401, 404, 422), label
        assert fast.data == flask_door.data, label
        assert fast.content_type == flask_door.content_type == "application/json", label
        assert fast.headers["X-Request-Id"] and flask_door.headers["X-Request-Id"]


def test_both_doors_store_and_replay_alike(client: FlaskClient, scanner: Scanner, settings) -> None:
    first = json.dumps({"risk": risk("R-1")}).encode()
    second = json.dumps({"risk": risk("R-2")}).encode()
    h1 = signed_headers(scanner.secret, first, msg_id="msg_one")
    h2 = signed_headers(scanner.secret, second, msg_id="msg_two")
    fast = client.post("/webhooks/risks/sast", data=first, headers=h1)
    flask_door = _chunked(client, "/webhooks/risks/sast", second, h2)
    assert fast.status_code == flask_door.status_code == 202
    assert fast.get_json()["risks"][0]["action"] == "created"
    assert flask_door.get_json()["risks"][0]["action"] == "created"
    # Each door replays what the other stored, unchanged, marked as a replay.
    again_fast = client.post("/webhooks/risks/sast", data=second, headers=h2)
    again_flask = _chunked(client, "/webhooks/risks/sast", first, h1)
    assert again_fast.data == flask_door.data and again_fast.headers["X-Replayed"] == "true"
    assert again_flask.data == fast.data and again_flask.headers["X-Replayed"] == "true"
    assert "X-Replayed" not in fast.headers
    assert [r[1] for r in stored_risks(settings.db_path)] == ["R-1", "R-2"]


def test_fast_door_echoes_request_id_and_logs_with_it(
    client: FlaskClient, scanner: Scanner, capsys
) -> None:
    body = json.dumps({"risk": risk()}).encode()
    headers = {**signed_headers(scanner.secret, body), "webhook-signature": "v1,AAAA"}
    resp = client.post(
        "/webhooks/risks/sast", data=body, headers={**headers, "X-Request-Id": "req-42"}
    )
    assert resp.status_code == 401
    assert resp.headers["X-Request-Id"] == "req-42"
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    rejected = [line for line in lines if line["msg"] == "scanner signature rejected"]
    assert rejected and rejected[-1]["request_id"] == "req-42"


@pytest.mark.parametrize("door", ["fast", "flask"])
def test_busy_database_is_503_and_a_bug_is_a_logged_500(
    app, client: FlaskClient, scanner: Scanner, monkeypatch, caplog, door: str
) -> None:
    from webhook.storage.sqlite.database import DatabaseBusy

    store = app.extensions["adowh"].store

    def send(key: str) -> Any:
        body = json.dumps({"risk": risk(key)}).encode()
        headers = signed_headers(scanner.secret, body)
        if door == "fast":
            return client.post("/webhooks/risks/sast", data=body, headers=headers)
        return _chunked(client, "/webhooks/risks/sast", body, headers)

    monkeypatch.setattr(store, "record_risks", lambda *a: (_ for _ in ()).throw(DatabaseBusy("x")))
    busy = send("R-1")
    assert busy.status_code == 503
    assert busy.headers["Retry-After"] == "1"
    assert busy.get_json()["error"]["code"] == "unavailable"

    monkeypatch.setattr(store, "record_risks", lambda *a: 1 / 0)
    with caplog.at_level("ERROR"):
        bug = send("R-2")
    assert bug.status_code == 500
    assert bug.get_json() == {
        "error": {"code": "internal_error", "message": "internal server error", "details": {}}
    }
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)


def test_body_shorter_than_content_length_is_400_and_nothing_stored(
    client: FlaskClient, scanner: Scanner, settings
) -> None:
    body = json.dumps({"risk": risk()}).encode()
    resp = client.post(
        "/webhooks/risks/sast",
        input_stream=io.BytesIO(body[:10]),
        headers=signed_headers(scanner.secret, body),
        environ_overrides={"CONTENT_LENGTH": str(len(body))},  # the client promised more
    )
    assert resp.status_code == 400
    assert stored_risks(settings.db_path) == []


def test_content_length_requests_never_reach_flask(app, client: FlaskClient, scanner) -> None:
    """The fast door is wired in front of Flask (a regression would only show in bench.ingest)."""

    def flask_view(source: str) -> Any:
        raise AssertionError("the Flask view answered")

    app.view_functions["scanner.receive_risks"] = flask_view
    body = json.dumps({"risk": risk()}).encode()
    assert scanner.send({"risk": risk()}).status_code == 202
    chunked = _chunked(client, "/webhooks/risks/sast", body, signed_headers(scanner.secret, body))
    assert chunked.status_code == 500


def test_new_secret_works_at_once_while_the_old_one_is_remembered(
    app, client: FlaskClient, admin, scanner: Scanner, monkeypatch
) -> None:
    """Sources are kept in process memory; a rotation still takes effect immediately."""
    import webhook.clock

    old = scanner.secret
    assert scanner.send({"risk": risk("R-1")}).status_code == 202  # the source is now cached
    rotated = client.post(f"/admin/sources/{scanner.source['id']}/rotate-secret", headers=admin)
    new = rotated.get_json()["secret"]
    for key, secret in (("R-2", new), ("R-3", old)):
        body = json.dumps({"risk": risk(key)}).encode()
        headers = signed_headers(secret, body)
        assert client.post("/webhooks/risks/sast", data=body, headers=headers).status_code == 202
    # Past the 24 h grace the old secret fails, even from the cached row.
    later = time.time() + 24 * 3600 + 60
    monkeypatch.setattr(webhook.clock, "now", lambda: later)
    for secret, expected in ((old, 401), (new, 202)):
        body = json.dumps({"risk": risk(f"R-{expected}")}).encode()
        headers = signed_headers(secret, body, timestamp=int(later))
        status = client.post("/webhooks/risks/sast", data=body, headers=headers).status_code
        assert status == expected


# ---- legal JSON the service cannot store (issue 9.1) ---------------------------------------

# `"Stored XSS \ud83d"`: the six-character escape of a lone UTF-16 surrogate, as an emoji cut in
# half by a byte limit produces. Legal JSON; no UTF-8 can carry it. Written here as raw JSON text.
CUT_EMOJI = r"Stored XSS \ud83d"
UNSTORABLE = [
    ("name", '{"risk": {"key": "R-1", "name": "%s", "severity": "high"}}', "risk.name"),
    (
        "evidence",
        '{"risk": {"key": "R-1", "name": "n", "severity": "high", "evidence": "%s"}}',
        "risk.evidence",
    ),
    ("key", '{"risk": {"key": "%s", "name": "n", "severity": "high"}}', "risk.key"),
    (
        "asset identifier",
        '{"risks": [{"key": "R-1", "name": "n", "severity": "high", "assets": ['
        '{"group": "g", "identifier": "i"}, {"group": "g", "identifier": "i2"},'
        '{"group": "g", "identifier": "i3"}, {"group": "host", "identifier": "%s"}]}]}',
        "risks.0.assets.3.identifier",
    ),
    (
        "tag",
        '{"risk": {"key": "R-1", "name": "n", "severity": "high", "tags": ["ok", "%s"]}}',
        "risk.tags.1",
    ),
    (
        "project",
        '{"risks": [{"key": "R-0", "name": "n", "severity": "low"},'
        ' {"key": "R-1", "name": "n", "severity": "high", "project": "%s"}]}',
        "risks.1.project",
    ),
    (
        "url",
        '{"risk": {"key": "R-1", "name": "n", "severity": "high", "url": "https://s/%s"}}',
        "risk.url",
    ),
]


@pytest.mark.parametrize("door", ["fast", "flask"])
@pytest.mark.parametrize(
    "text",
    [
        pytest.param(CUT_EMOJI, id="lone-high-surrogate"),
        pytest.param(r"\udc00 low half first", id="lone-low-surrogate"),
        pytest.param(r"\ude00\ud83d reversed pair", id="reversed-pair"),
        pytest.param(r"NUL \u0000 inside", id="nul"),
    ],
)
@pytest.mark.parametrize(("field", "template", "path"), UNSTORABLE, ids=[u[0] for u in UNSTORABLE])
def test_unstorable_text_is_422_naming_the_field_on_both_doors(
    client: FlaskClient, scanner: Scanner, settings, door, text, field, template, path
) -> None:
    body = (template % text).encode()
    headers = signed_headers(scanner.secret, body)
    if door == "fast":
        resp = client.post("/webhooks/risks/sast", data=body, headers=headers)
    else:
        resp = _chunked(client, "/webhooks/risks/sast", body, headers)
    assert resp.status_code == 422, resp.data
    error = resp.get_json()["error"]
    assert error["code"] == "validation_failed"
    assert list(error["details"]) == [path]
    assert "surrogate" in error["details"][path][0] or "NUL" in error["details"][path][0]
    assert stored_risks(settings.db_path) == []
    # The same delivery id is not burnt: once fixed, the scanner's retry is stored.
    fixed = (template % "fixed").encode()
    retry = client.post(
        "/webhooks/risks/sast",
        data=fixed,
        headers=signed_headers(scanner.secret, fixed, msg_id=headers["webhook-id"]),
    )
    assert retry.status_code == 202


def test_a_whole_emoji_and_other_escapes_are_stored(scanner: Scanner, client, admin) -> None:
    body = (
        rb'{"risk": {"key": "R-\ud83d\ude00", "name": "XSS \ud83d\ude00 \u2028 \ufeff \uffff",'
        rb' "severity": "high", "evidence": "\u0085\u001f"}}'
    )
    resp = scanner.send(None, raw=body)
    assert resp.status_code == 202
    stored = client.get("/admin/risks/1", headers=admin).get_json()
    assert stored["key"] == "R-😀" and stored["name"] == "XSS 😀 \u2028 \ufeff \uffff"
    assert stored["evidence"] == "\x85\x1f"


BAD_BODIES = [
    pytest.param(b'\xef\xbb\xbf\xef\xbb\xbf{"risk": {}}', "BOM", id="two-boms"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "nested too deeply", id="deep-array"),
    pytest.param(
        b'{"risk": {"key": "k", "name": "n", "severity": "high", "tags": '
        + b'{"a":' * 5000
        + b"1"
        + b"}" * 5001
        + b"}",
        "nested too deeply",
        id="deep-object",
    ),
    # A surrogate written as UTF-8 bytes (CESU-8): json.loads(bytes) would let it through.
    pytest.param(
        b'{"risk": {"key": "k", "name": "\xed\xa0\xbd", "severity": "high"}}', "UTF-8", id="cesu"
    ),
    pytest.param(b'{"risk": {"key": "\xff", "name": "n", "severity": "high"}}', "UTF-8", id="ff"),
    pytest.param(b'{"risk": {"key": "\xc0\xaf"}}', "UTF-8", id="overlong"),
    # Tokens Python's decoder takes but RFC 8259 does not; numbers a float cannot hold.
    pytest.param(b'{"risk": {"key": "k", "name": NaN}}', "NaN is not a JSON number", id="nan"),
    pytest.param(b'{"risks": [-Infinity]}', "-Infinity is not a JSON number", id="minus-inf"),
    pytest.param(b'{"risk": {"key": 1e999}}', "1e999 is out of range", id="overflow"),
    pytest.param(b'{"risk": {"key": ' + b"9" * 50_000 + b"}}", "more than", id="huge-int"),
]


@pytest.mark.parametrize(("body", "says"), BAD_BODIES)
def test_undecodable_bodies_are_400_alike_on_both_doors(
    client: FlaskClient, scanner: Scanner, settings, body, says
) -> None:
    headers = signed_headers(scanner.secret, body)
    fast = client.post("/webhooks/risks/sast", data=body, headers=headers)
    flask_door = _chunked(client, "/webhooks/risks/sast", body, headers)
    assert fast.status_code == flask_door.status_code == 400
    assert fast.data == flask_door.data
    error = fast.get_json()["error"]
    assert error["code"] == "invalid_json" and says in error["message"]
    assert stored_risks(settings.db_path) == []


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda text: b"\xef\xbb\xbf" + text.encode(), id="utf-8-bom"),
        pytest.param(lambda text: text.encode("utf-16"), id="utf-16"),
    ],
)
def test_a_bom_or_utf16_body_is_accepted(scanner: Scanner, settings, encode) -> None:
    resp = scanner.send(None, raw=encode(json.dumps({"risk": risk("R-1")})))
    assert resp.status_code == 202
    assert stored_risks(settings.db_path) == [("sast", "R-1", "high", "open")]


def test_an_unknown_field_named_with_a_lone_surrogate_is_named_readably(
    scanner: Scanner, settings
) -> None:
    body = b'{"risk": {"key": "k", "name": "n", "severity": "high", "ris\\ud83dk": 1}}'
    resp = scanner.send(None, raw=body)
    assert resp.status_code == 422
    # A strict JSON reader (one that refuses lone surrogate escapes) can read the answer.
    assert b"\\ud83d" not in resp.data.lower()
    assert list(resp.get_json()["error"]["details"]) == ["risk.ris\ufffdk"]
    assert stored_risks(settings.db_path) == []


def test_very_long_strings_are_422_naming_the_field(scanner: Scanner, settings) -> None:
    resp = scanner.send({"risk": risk("R-1", name="n" * 3_000_000, evidence="é" * 200_000)})
    assert resp.status_code == 422
    assert set(resp.get_json()["error"]["details"]) == {"risk.name", "risk.evidence"}
    unknown = scanner.send({"risk": {**risk("R-1"), "x" * 1_000_000: 1}})
    assert unknown.status_code == 422
    (path,) = unknown.get_json()["error"]["details"]
    assert path.startswith("risk.xxx") and len(path) < 200
    assert stored_risks(settings.db_path) == []


def test_the_fast_door_mirrors_every_flask_hook(settings) -> None:
    """The fast door skips Flask's request machinery, so every hook Flask runs around this
    route must be mirrored there (and listed in MIRRORED_FLASK_HOOKS)."""
    from webhook.api.scanner import MIRRORED_FLASK_HOOKS
    from webhook.composition import create_app

    app = create_app(settings)
    scopes = (None, "scanner")  # the app, and the blueprint the route belongs to
    hooks = {
        f"{kind}:{func.__name__}"
        for kind, table in (
            ("before_request", app.before_request_funcs),
            ("after_request", app.after_request_funcs),
            ("teardown_request", app.teardown_request_funcs),
            ("url_value_preprocessor", app.url_value_preprocessors),
        )
        for scope in scopes
        for func in table.get(scope, [])
    }
    hooks |= {
        f"errorhandler:{exc.__name__}"
        for scope in scopes
        for handlers in app.error_handler_spec.get(scope, {}).values()
        for exc in handlers
    }
    assert hooks == set(MIRRORED_FLASK_HOOKS), (
        "mirror these in FastScannerRoute, then list them in MIRRORED_FLASK_HOOKS: "
        f"{sorted(hooks - set(MIRRORED_FLASK_HOOKS))}; no longer there: "
        f"{sorted(set(MIRRORED_FLASK_HOOKS) - hooks)}"
    )
