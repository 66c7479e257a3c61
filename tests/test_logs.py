"""JSON log lines, context ids and secret redaction (webhook.logs)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest
import structlog

from webhook import logs

ROOT = Path(__file__).resolve().parents[1]

# Secrets of every kind the filter must scrub, and how they look in a log message.
BASIC = "dXNlcjpodW50ZXIyMjIy"  # base64("user:hunter2222")
PAT_BASIC = "OnBhdHNlY3JldHZhbHVlMTIz"  # base64(":patsecretvalue123")
BEARER = "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXZhbHVl"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
SIGNATURE_B64 = SIGNATURE.split(",", 1)[1]
URL_PASSWORD = "s3cr3t-url-pass"
FERNET = "gAAAAABmT0kxZ3V1c3RvbWVyLWZlcm5ldC10b2tlbi12YWx1ZS0xMjM0NTY3ODkw"
REGISTERED = "admin-token-0123456789abcdef"

CASES = [
    ("authorization_basic", f"Authorization: Basic {BASIC}", BASIC),
    ("authorization_pat", f"authorization: Basic {PAT_BASIC}", PAT_BASIC),
    ("authorization_bearer", f"Authorization: Bearer {BEARER}", BEARER),
    ("bare_bearer", f"sent header Bearer {BEARER}", BEARER),
    ("whsec", f"created source secret {WHSEC}", WHSEC[6:]),
    (
        "signature_header",
        f"webhook-signature: {SIGNATURE} v1,AAAAAAAAAAAAAAAAAAAAAAAA",
        SIGNATURE_B64,
    ),
    ("url_password", f"GET https://build:{URL_PASSWORD}@scanner.example/api", URL_PASSWORD),
    ("url_pat", f"clone https://:{URL_PASSWORD}@dev.azure.com/org", URL_PASSWORD),
    ("json_key", '{"name": "x", "client_secret": "cs-value-123456"}', "cs-value-123456"),
    ("repr_key", "{'token': 'tok-value-123456', 'id': 3}", "tok-value-123456"),
    ("basic_auth_password_key", '{"basicAuthPassword": "hookpass-123456"}', "hookpass-123456"),
    ("query_token", "GET /x?access_token=qs-token-123456&page=2", "qs-token-123456"),
    ("kv_pat", "pat=pat-value-123456 user=alice", "pat-value-123456"),
    ("escaped_json", '{\\"password\\": \\"pw-value-123456\\"}', "pw-value-123456"),
    ("fernet", f"ciphertext {FERNET}", FERNET[6:]),
    ("registered", f"admin token is {REGISTERED}!", REGISTERED),
]


@pytest.fixture(autouse=True)
def _restore_logging():
    """Put the root and library loggers back as they were (configure_logging is global)."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in logs._NOISY_LOGGERS}
    yield
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    root.setLevel(saved_level)
    for name, level in noisy.items():
        logging.getLogger(name).setLevel(level)
    logs._forget_secrets()
    logs.clear_context()


@pytest.fixture
def capture():
    """configure_logging into a buffer and return a reader of the parsed lines."""
    buffer = io.StringIO()
    logs.configure_logging("DEBUG", stream=buffer)
    logs.register_secret(REGISTERED)

    def lines() -> list[dict]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]

    return lines


def test_json_line_shape(capture):
    log = logging.getLogger("webhook.test")
    log.info("stored %d risks\nsecond line", 3, extra={"fields": {"source": "scanner", "n": 3}})
    (line,) = capture()
    assert list(line)[:4] == ["ts", "level", "logger", "msg"]
    assert line["level"] == "INFO"
    assert line["logger"] == "webhook.test"
    assert line["msg"] == "stored 3 risks\nsecond line"
    assert line["source"] == "scanner" and line["n"] == 3
    assert line["ts"].endswith("Z")
    ts = datetime.fromisoformat(line["ts"].replace("Z", "+00:00"))
    assert ts.utcoffset().total_seconds() == 0
    assert "request_id" not in line


def test_plain_extra_attributes_and_collisions(capture):
    logging.getLogger("x").warning("m", extra={"risk_id": 7, "fields": {"msg": "shadow"}})
    (line,) = capture()
    assert line["risk_id"] == 7
    assert line["msg"] == "m" and line["msg_"] == "shadow"


def test_fields_named_like_the_line_or_structlog_keys_are_kept(capture):
    """A field may not replace the message, level, traceback... it gets a trailing "_"."""
    fields = {"event": "e", "exception": "x", "exc_info": "i", "level": "l", "_record": "r"}
    logging.getLogger("x").info("the message", extra={"fields": fields, "stack_info_": 1})
    (line,) = capture()
    assert line["msg"] == "the message" and line["level"] == "INFO" and "exc" not in line
    assert line["event_"] == "e" and line["exception_"] == "x" and line["exc_info_"] == "i"
    assert line["level_"] == "l" and line["_record_"] == "r" and line["stack_info_"] == 1


def test_structlog_loggers_write_the_same_lines(capture):
    """structlog.get_logger() events: same shape, same context ids, same redaction."""
    log = structlog.get_logger("webhook.native")
    with logs.request_context(request_id="req-5"):
        log.info("risk stored", risk_id=7, client_secret="cs-value-123456", note=f"x {WHSEC}")
        try:
            raise ValueError(f"token={REGISTERED}")
        except ValueError:
            log.exception("failed %s", "once")
    stored, failed = capture()
    assert list(stored)[:5] == ["ts", "level", "logger", "msg", "request_id"]
    assert stored["logger"] == "webhook.native" and stored["level"] == "INFO"
    assert stored["msg"] == "risk stored" and stored["request_id"] == "req-5"
    assert stored["risk_id"] == 7 and stored["client_secret"] == "[REDACTED]"
    assert WHSEC not in stored["note"]
    assert failed["level"] == "ERROR" and failed["msg"] == "failed once"
    assert "ValueError" in failed["exc"] and REGISTERED not in failed["exc"]


def test_a_field_that_cannot_be_shown_drops_the_content_not_the_line(capture):
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

        __repr__ = __str__

    logging.getLogger("x").warning("token=%s", "abcdefgh123", extra={"fields": {"b": Broken()}})
    logging.getLogger("x").info("next")
    broken, following = capture()
    assert broken["level"] == "WARNING" and "dropped its content" in broken["msg"]
    assert "abcdefgh123" not in json.dumps(broken)
    assert following["msg"] == "next"


def test_exception_as_exc_string(capture):
    try:
        raise RuntimeError("it broke")
    except RuntimeError:
        logging.getLogger("x").exception("failed")
    (line,) = capture()
    assert line["level"] == "ERROR"
    assert "RuntimeError: it broke" in line["exc"]
    assert "Traceback" in line["exc"]


def test_configure_is_idempotent(capture):
    buffer = io.StringIO()
    logs.configure_logging("INFO", stream=buffer)
    logs.configure_logging("INFO", stream=buffer)
    ours = [h for h in logging.getLogger().handlers if isinstance(h, logs.JsonStreamHandler)]
    assert len(ours) == 1
    logging.getLogger("x").info("once")
    assert len(buffer.getvalue().splitlines()) == 1
    assert logging.getLogger().level == logging.INFO
    logging.getLogger("x").debug("dropped")
    assert len(buffer.getvalue().splitlines()) == 1


def test_unknown_level_falls_back_to_info(capture):
    buffer = io.StringIO()
    logs.configure_logging("chatty", stream=buffer)
    assert logging.getLogger().level == logging.INFO
    (line,) = [json.loads(x) for x in buffer.getvalue().splitlines()]
    assert line["level"] == "WARNING" and "chatty" in line["msg"]


def test_noisy_loggers_quieted(capture):
    buffer = io.StringIO()
    logs.configure_logging("INFO", stream=buffer)
    assert logging.getLogger("urllib3").getEffectiveLevel() == logging.WARNING
    logging.getLogger("urllib3.connectionpool").info("Starting new HTTPS connection")
    assert buffer.getvalue() == ""
    logs.configure_logging("DEBUG", stream=buffer)
    assert logging.getLogger("urllib3").getEffectiveLevel() == logging.DEBUG


def test_default_stream_is_current_stderr(capsys):
    logs.configure_logging()
    logging.getLogger("x").info("to stderr")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err.strip().splitlines()[-1])["msg"] == "to stderr"


# ---- context ids ---------------------------------------------------------------------------


def test_request_context_binds_ids(capture):
    log = logging.getLogger("x")
    with logs.request_context(request_id="req-1", delivery_id="dlv-9") as bound:
        assert bound == {"request_id": "req-1", "delivery_id": "dlv-9"}
        log.info("inside")
        with logs.request_context(job_id=42):
            log.info("nested")
        log.info("after nested")
    log.info("outside")
    inside, nested, after, outside = capture()
    assert inside["request_id"] == "req-1" and inside["delivery_id"] == "dlv-9"
    assert nested["job_id"] == 42 and nested["request_id"] == "req-1"
    assert "job_id" not in after and after["request_id"] == "req-1"
    assert not {"request_id", "delivery_id", "job_id"} & set(outside)


def test_ids_come_right_after_msg(capture):
    with logs.request_context(job_id=1, request_id="r", delivery_id="d"):
        logging.getLogger("x").info("m", extra={"fields": {"a": 1}})
    (line,) = capture()
    assert list(line) == [
        "ts",
        "level",
        "logger",
        "msg",
        "request_id",
        "delivery_id",
        "job_id",
        "a",
    ]


def test_bind_unbind_and_none_removes(capture):
    token = logs.bind(job_id=5, request_id="r")
    logging.getLogger("x").info("a")
    inner = logs.bind(request_id=None)
    logging.getLogger("x").info("b")
    logs.unbind(inner)
    logs.unbind(token)
    logging.getLogger("x").info("c")
    a, b, c = capture()
    assert a["job_id"] == 5 and a["request_id"] == "r"
    assert b["job_id"] == 5 and "request_id" not in b
    assert "job_id" not in c
    assert logs.current_context() == {}


def test_context_is_per_thread(capture):
    log = logging.getLogger("x")
    barrier = threading.Barrier(2)

    def work(n: int) -> None:
        with logs.request_context(job_id=n):
            barrier.wait()
            log.info("job %d", n)
            barrier.wait()

    with logs.request_context(request_id="main"):
        threads = [threading.Thread(target=work, args=(n,)) for n in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        log.info("main")
    lines = capture()
    by_msg = {line["msg"]: line for line in lines}
    assert by_msg["job 1"]["job_id"] == 1 and by_msg["job 2"]["job_id"] == 2
    assert "request_id" not in by_msg["job 1"]  # threads do not inherit the request's ids
    assert by_msg["main"]["request_id"] == "main" and "job_id" not in by_msg["main"]


# ---- redaction -----------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "text", "secret"), CASES, ids=[c[0] for c in CASES])
def test_redacts_literal_message(capture, kind, text, secret):
    logging.getLogger("x").info(text)
    (line,) = capture()
    assert secret not in json.dumps(line)
    assert "[REDACTED]" in line["msg"]


@pytest.mark.parametrize(("kind", "text", "secret"), CASES, ids=[c[0] for c in CASES])
def test_redacts_percent_args(capture, kind, text, secret):
    logging.getLogger("x").info("event: %s (%d)", text, 1)
    (line,) = capture()
    assert secret not in line["msg"]
    assert line["msg"].startswith("event: ") and line["msg"].endswith("(1)")


@pytest.mark.parametrize(("kind", "text", "secret"), CASES, ids=[c[0] for c in CASES])
def test_redacts_extras(capture, kind, text, secret):
    logging.getLogger("x").info(
        "m", extra={"fields": {"detail": text, "nested": [{"deep": text}]}, "other": text}
    )
    (line,) = capture()
    assert secret not in json.dumps(line)
    assert "[REDACTED]" in line["detail"] and "[REDACTED]" in line["nested"][0]["deep"]


@pytest.mark.parametrize(("kind", "text", "secret"), CASES, ids=[c[0] for c in CASES])
def test_redacts_exception_text(capture, kind, text, secret):
    try:
        raise ValueError(text)
    except ValueError as exc:
        logging.getLogger("x").error("call failed: %s", exc, exc_info=True)
    (line,) = capture()
    assert secret not in line["msg"]
    assert secret not in line["exc"]
    assert "ValueError" in line["exc"]


def test_sensitive_keys_in_dicts(capture):
    payload = {
        "token": "t-123456789",
        "PAT": "p-123456789",
        "password": "pw-123456789",
        "Secret": "s-123456789",
        "client_secret": "cs-123456789",
        "access_token": "at-123456789",
        "Authorization": "Basic Zm9vOmJhcg==",
        "basicAuthPassword": "bap-123456789",
        "webhook-signature": "sig-123456789",
        "auth": {"type": "pat", "token": "nested-123456789"},
        "name": "visible-name",
        "token_valid": True,
        "count": 3,
    }
    logging.getLogger("x").info("payload %s", payload, extra={"fields": {"body": payload}})
    (line,) = capture()
    text = json.dumps(line)
    for key, value in payload.items():
        if isinstance(value, str) and key != "name":
            assert value not in text, key
    assert "nested-123456789" not in text
    assert line["body"]["name"] == "visible-name"
    assert line["body"]["auth"]["type"] == "pat"
    assert line["body"]["token_valid"] is True and line["body"]["count"] == 3
    assert line["body"]["client_secret"] == "[REDACTED]"


def test_mapping_args(capture):
    logging.getLogger("x").info("user %(user)s token %(token)s", {"user": "bob", "token": "xyz-1"})
    (line,) = capture()
    assert line["msg"] == "user bob token [REDACTED]"


def test_register_secret_variants_and_limits(capture):
    logs.register_secret("short")  # under 8 characters: ignored
    logs.register_secret(None)  # type: ignore[arg-type]
    pat = "abc/def+ghi=jkl0123"
    logs.register_secret(pat)
    logging.getLogger("x").info(
        "short %s; raw %s; encoded %s", "short", pat, "abc%2Fdef%2Bghi%3Djkl0123"
    )
    (line,) = capture()
    assert "short short;" in line["msg"]
    assert pat not in line["msg"] and "abc%2Fdef" not in line["msg"]


def test_registered_secrets_are_bounded():
    try:
        for n in range(logs._MAX_SECRETS + 50):
            logs.register_secret(f"bounded-secret-{n:06d}")
        assert len(logs._secrets) <= logs._MAX_SECRETS
        newest = f"bounded-secret-{logs._MAX_SECRETS + 49:06d}"
        assert logs.redact_text(newest) == "[REDACTED]"  # the newest are kept
        assert logs.redact_text("bounded-secret-000000") == "bounded-secret-000000"
    finally:
        logs._forget_secrets()


@pytest.mark.parametrize(
    "text",
    [
        "Basic process template, Agile, Scrum",
        "work item 42 moved to Resolved",
        "path=/hooks/ado status=200",
        "signature verification failed: reason=expired",
        "Authorization header missing",
        "https://dev.azure.com/org/_apis/projects?api-version=7.1",
        "https://org@dev.azure.com/org/project",
        "v1 of the API",
    ],
)
def test_ordinary_text_untouched(text):
    assert logs.redact_text(text) == text


def test_redact_structure_helper():
    out = logs.redact({"a": ["Bearer abcdefghijkl"], "password": None, "secret": b"x"})
    assert out == {"a": ["Bearer [REDACTED]"], "password": None, "secret": "[REDACTED]"}


def test_filter_covers_foreign_loggers(capture):
    logging.getLogger("werkzeug").warning(
        '127.0.0.1 - - "GET /x?token=abcdefgh12345 HTTP/1.1" 200 -'
    )
    logging.getLogger("gunicorn.error").error("bad header Authorization: Bearer %s", BEARER)
    first, second = capture()
    assert "abcdefgh12345" not in first["msg"] and BEARER not in second["msg"]


def test_formatter_redacts_on_any_handler():
    """Redaction is part of the formatter, so another handler given it is redacted too."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("webhook.plain-test")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("got %s", WHSEC)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert WHSEC not in buffer.getvalue() and "[REDACTED]" in buffer.getvalue()


# ---- gunicorn --------------------------------------------------------------------------------


@pytest.mark.e2e
def test_gunicorn_logconfig_dict_and_access_lines(tmp_path):
    """dictConfig replaces process-wide handlers, so this runs in a child interpreter."""
    script = tmp_path / "child.py"
    script.write_text(
        "import logging, logging.config\n"
        "from gunicorn.glogging import SafeAtoms\n"
        "from webhook.logs import GUNICORN_ACCESS_LOG_FORMAT, gunicorn_logconfig_dict\n"
        "logging.config.dictConfig(gunicorn_logconfig_dict('WARNING'))\n"
        "atoms = SafeAtoms({'m': 'POST', 'U': '/webhooks/risks/a\"b', 'q': 'token=qsecret',\n"
        "    's': '202', 'M': 12, 'b': '31', 'h': '10.0.0.1',\n"
        "    '{x-request-id}o': 'req-77', '{authorization}i': 'Bearer abcdefghijklmnop'})\n"
        "logging.getLogger('gunicorn.access').info(GUNICORN_ACCESS_LOG_FORMAT, atoms)\n"
        "logging.getLogger('gunicorn.access').info(\n"
        "    '%(h)s %({authorization}i)s %(m)s', atoms)\n"
        "logging.getLogger('gunicorn.error').info('not shown at WARNING')\n"
        "logging.getLogger('gunicorn.error').warning('Worker timeout %s', 'whsec_abcdef')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    lines = [json.loads(x) for x in result.stderr.splitlines()]
    access, plain, error = lines
    assert access["logger"] == "gunicorn.access"
    assert access["method"] == "POST" and access["path"] == '/webhooks/risks/a"b'
    assert access["status"] == 202 and access["duration_ms"] == 12 and access["bytes"] == 31
    assert access["request_id"] == "req-77"
    assert access["msg"] == 'POST /webhooks/risks/a"b 202'
    assert "qsecret" not in result.stderr
    assert plain["msg"] == "10.0.0.1 [REDACTED] POST"
    assert "abcdefghijklmnop" not in result.stderr
    assert error["level"] == "WARNING" and "whsec_" not in error["msg"]


# ---- untrusted text: line breaks, lone surrogates, length ----------------------------------

# Every character str.splitlines breaks at that json.dumps(ensure_ascii=False) might leave raw.
LINE_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def test_line_separators_and_lone_surrogates_are_escaped():
    buffer = io.StringIO()
    logs.configure_logging("INFO", stream=buffer)
    value = f"a{LINE_BREAKS}b\ud83d|"  # a lone surrogate: no UTF-8 stream can carry it raw
    logging.getLogger("x").info("msg %s", value, extra={"fields": {"detail": value, value: 1}})
    raw = buffer.getvalue()
    assert len(raw.splitlines()) == 1
    for char in LINE_BREAKS + "\ud83d":
        assert char not in raw
    raw.encode("utf-8")  # writable to any UTF-8 stream
    line = json.loads(raw)
    assert line["msg"] == f"msg {value}" and line["detail"] == value and line[value] == 1


def test_long_values_are_cut_with_a_marker_and_stay_redacted(capture):
    pat = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst"  # legacy 52-char PAT shape
    filler = "lorem ipsum " * 700  # ~8 KB: the PAT sits where the middle cut falls
    text = f"Authorization: Bearer {BEARER} {filler}{pat} {filler} token=tail-secret-123456"
    logging.getLogger("x").info(text)
    logging.getLogger("x").info("%s", "x" * 300_000 + REGISTERED)  # registered: even past 256K
    first, second = capture()
    assert len(first["msg"]) <= logs.MAX_TEXT_CHARS + 100
    assert "characters cut]" in first["msg"]
    assert BEARER not in first["msg"] and "tail-secret-123456" not in first["msg"]
    assert first["msg"].startswith("Authorization: [REDACTED] lorem ipsum")
    assert first["msg"].endswith("token=[REDACTED]")
    # Nothing of a credential straddling the cut survives in pieces.
    assert not any(pat[i : i + 8] in first["msg"] for i in range(len(pat) - 8))
    assert REGISTERED not in second["msg"] and len(second["msg"]) <= logs.MAX_TEXT_CHARS + 100


def test_long_tracebacks_keep_their_end(capture):
    try:
        raise ValueError("y " * 100_000 + f"password={WHSEC[6:]}")
    except ValueError:
        logging.getLogger("x").exception("failed")
    (line,) = capture()
    assert len(line["exc"]) <= logs.MAX_EXC_CHARS + 100
    assert line["exc"].startswith("Traceback") and "characters cut]" in line["exc"]
    assert line["exc"].rstrip().endswith("password=[REDACTED]")
