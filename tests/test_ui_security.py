"""Admin web UI: sign-in, sessions, CSRF, throttling and headers (Flask test client)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import ADMIN_TOKEN, make_settings
from tests.ui_helpers import COOKIE, csrf_token, page_parts, post_form, sign_in, text_of
from webhook import clock, create_app
from webhook.domain.ui_sessions import FREE_FAILURES, SESSION_IDLE_SECONDS, SESSION_MAX_SECONDS

UI_PAGES = (
    "/ui/",
    "/ui/connections",
    "/ui/connections/new",
    "/ui/templates",
    "/ui/templates/new",
    "/ui/hooks",
    "/ui/sources",
    "/ui/sources/new",
    "/ui/risks",
    "/ui/jobs",
)


class FakeClock:
    """Moves webhook.clock.now() forward on request; no sleeping."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = clock.now()
        monkeypatch.setattr(clock, "now", lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    return FakeClock(monkeypatch)


@pytest.fixture
def signed_in(client: FlaskClient) -> FlaskClient:
    resp = sign_in(client)
    assert resp.status_code == 303, resp.get_data(as_text=True)
    return client


def session_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie(COOKIE, path="/ui")
    assert cookie is not None, "no session cookie"
    return cookie.value


def test_root_redirects_to_the_ui_and_the_ui_asks_to_sign_in(client: FlaskClient) -> None:
    resp = client.get("/")
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/ui/"
    resp = client.get("/ui/risks?status=open")
    assert resp.status_code == 303
    assert resp.headers["Location"].startswith("/ui/login?next=")
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert '<label for="token">Admin token</label>' in page
    assert 'type="password" id="token"' in page
    assert ">Sign in</button>" in page


def test_sign_in_with_the_admin_token_opens_the_page_asked_for(client: FlaskClient) -> None:
    login = client.get("/ui/risks?status=open").headers["Location"]
    page = client.get(login).get_data(as_text=True)
    resp = client.post(
        "/ui/login",
        data={
            "csrf_token": csrf_token(client),
            "token": ADMIN_TOKEN,
            "next": "/ui/risks?status=open",
        },
    )
    assert 'name="next" value="/ui/risks?status=open"' in page
    assert resp.status_code == 303
    assert resp.headers["Location"] == "/ui/risks?status=open"
    assert client.get("/ui/risks").status_code == 200


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/ui/", "/admin/jobs"])
def test_sign_in_never_redirects_off_the_ui(client: FlaskClient, target: str) -> None:
    resp = client.post(
        "/ui/login",
        data={"csrf_token": csrf_token(client), "token": ADMIN_TOKEN, "next": target},
    )
    assert resp.headers["Location"] == "/ui/"


def test_a_wrong_token_is_refused_in_words(client: FlaskClient) -> None:
    resp = sign_in(client, "not-the-admin-token-at-all")
    assert resp.status_code == 401
    assert "That is not the admin token" in text_of(resp.get_data(as_text=True))
    assert client.get("/ui/").status_code == 303


def test_session_cookie_is_httponly_samesite_and_scoped_to_the_ui(client: FlaskClient) -> None:
    resp = sign_in(client)
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/ui" in cookie
    assert "Secure" not in cookie  # WEBHOOK_PUBLIC_URL is not https here


def test_session_cookie_is_secure_when_the_public_url_is_https(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, WEBHOOK_PUBLIC_URL="https://webhook.example"))
    try:
        client = app.test_client()
        cookie = sign_in(client).headers["Set-Cookie"]
        assert "Secure" in cookie
        assert "HttpOnly" in cookie
    finally:
        app.extensions["adowh"].store.db.close()


def test_the_cookie_holds_no_admin_token_and_the_database_no_session_id(
    signed_in: FlaskClient, app: Flask
) -> None:
    value = session_cookie(signed_in)
    assert ADMIN_TOKEN not in value
    db = app.extensions["adowh"].store.db
    rows = db.conn.execute("SELECT id_hash FROM ui_sessions").fetchall()
    assert len(rows) == 1
    from flask.sessions import SecureCookieSessionInterface

    serializer = SecureCookieSessionInterface().get_signing_serializer(app)
    assert serializer is not None
    session_id = serializer.loads(value)["sid"]
    raw = Path(db.path).read_bytes() + Path(str(db.path) + "-wal").read_bytes()
    assert session_id.encode() not in raw


def test_a_post_without_csrf_token_is_refused_and_changes_nothing(signed_in: FlaskClient) -> None:
    resp = signed_in.post("/ui/sources", data={"name": "sneaky"})
    assert resp.status_code == 400
    assert "security token is missing" in text_of(resp.get_data(as_text=True))
    assert "sneaky" not in signed_in.get("/ui/sources").get_data(as_text=True)
    resp = signed_in.post("/ui/sources", data={"name": "sneaky", "csrf_token": "forged"})
    assert resp.status_code == 400
    assert "sneaky" not in signed_in.get("/ui/sources").get_data(as_text=True)


def test_sign_in_itself_needs_the_csrf_token(client: FlaskClient) -> None:
    resp = client.post("/ui/login", data={"token": ADMIN_TOKEN})
    assert resp.status_code == 400
    assert client.get("/ui/").status_code == 303


def test_csrf_token_of_another_session_is_refused(app: Flask, signed_in: FlaskClient) -> None:
    other = app.test_client()
    sign_in(other)
    foreign = csrf_token(other, "/ui/sources/new")
    resp = signed_in.post("/ui/sources", data={"name": "crossed", "csrf_token": foreign})
    assert resp.status_code == 400


def test_json_admin_api_needs_no_csrf_token(client: FlaskClient, admin: dict[str, str]) -> None:
    resp = client.post("/admin/sources", json={"name": "api-made"}, headers=admin)
    assert resp.status_code == 201


def test_sign_out_ends_the_session_for_every_copy_of_the_cookie(
    app: Flask, signed_in: FlaskClient
) -> None:
    copied = session_cookie(signed_in)
    thief = app.test_client()
    thief.set_cookie(COOKIE, copied, path="/ui")
    assert thief.get("/ui/jobs").status_code == 200  # the copy works while the session lives
    resp = post_form(signed_in, "/ui/logout", {}, "/ui/jobs")
    assert resp.status_code == 303
    assert resp.headers["Location"] == "/ui/login"
    assert signed_in.get("/ui/jobs").status_code == 303
    assert thief.get("/ui/jobs").status_code == 303
    assert (
        app.extensions["adowh"]
        .store.db.conn.execute("SELECT count(*) FROM ui_sessions")
        .fetchone()[0]
        == 0
    )


def test_sign_out_needs_the_csrf_token(signed_in: FlaskClient) -> None:
    assert signed_in.post("/ui/logout").status_code == 400
    assert signed_in.get("/ui/jobs").status_code == 200


def test_an_idle_session_expires(signed_in: FlaskClient, fake_clock: FakeClock) -> None:
    fake_clock.advance(SESSION_IDLE_SECONDS - 60)
    assert signed_in.get("/ui/jobs").status_code == 200
    fake_clock.advance(SESSION_IDLE_SECONDS - 60)  # used a moment ago: still alive
    assert signed_in.get("/ui/jobs").status_code == 200
    fake_clock.advance(SESSION_IDLE_SECONDS + 1)
    resp = signed_in.get("/ui/jobs")
    assert resp.status_code == 303
    assert resp.headers["Location"].startswith("/ui/login")


def test_a_busy_session_still_ends_after_its_maximum_age(
    signed_in: FlaskClient, fake_clock: FakeClock
) -> None:
    steps = int(SESSION_MAX_SECONDS // (SESSION_IDLE_SECONDS / 2))
    for _ in range(steps - 1):
        fake_clock.advance(SESSION_IDLE_SECONDS / 2)
        assert signed_in.get("/ui/jobs").status_code == 200
    fake_clock.advance(SESSION_IDLE_SECONDS / 2 + 1)
    assert signed_in.get("/ui/jobs").status_code == 303


def test_changing_the_admin_token_ends_ui_sessions(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    app = create_app(settings)
    client = app.test_client()
    sign_in(client)
    cookie = session_cookie(client)
    app.extensions["adowh"].store.db.close()
    env = {
        "WEBHOOK_DB": str(settings.db_path),
        "WEBHOOK_ADMIN_TOKEN": "a-new-admin-token-0123456789",
        "WEBHOOK_SECRET_KEY": ",".join(settings.secret_keys),
    }
    from webhook.settings import Settings

    second = create_app(Settings.from_env(env))
    try:
        replay = second.test_client()
        replay.set_cookie(COOKIE, cookie, path="/ui")
        assert replay.get("/ui/jobs").status_code == 303
    finally:
        second.extensions["adowh"].store.db.close()


def test_failed_sign_ins_are_throttled_per_address(
    client: FlaskClient, fake_clock: FakeClock
) -> None:
    for _ in range(FREE_FAILURES - 1):
        assert sign_in(client, "wrong-token-wrong-token").status_code == 401
    locked = sign_in(client, "wrong-token-wrong-token")
    assert locked.status_code == 401
    assert "wait 30 seconds" in text_of(locked.get_data(as_text=True))
    # Even the right token waits now: the lock is checked before the token.
    resp = sign_in(client)
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "30"
    assert "Too many failed sign-ins" in text_of(resp.get_data(as_text=True))
    fake_clock.advance(31)
    assert sign_in(client, "wrong-token-wrong-token").status_code == 401
    assert sign_in(client).status_code == 429  # the next lock is twice as long
    fake_clock.advance(61)
    assert sign_in(client).status_code == 303
    # Success forgets the failures: one new mistake does not lock.
    other = client.application.test_client()
    assert sign_in(other, "wrong-token-wrong-token").status_code == 401
    assert sign_in(other).status_code == 303


def test_another_address_is_not_locked_out(client: FlaskClient, fake_clock: FakeClock) -> None:
    for _ in range(FREE_FAILURES):
        sign_in(client, "wrong-token-wrong-token")
    assert sign_in(client).status_code == 429
    other = client.application.test_client()
    token = csrf_token(other)
    resp = other.post(
        "/ui/login",
        data={"csrf_token": token, "token": ADMIN_TOKEN},
        environ_base={"REMOTE_ADDR": "127.0.0.9"},
    )
    assert resp.status_code == 303


def test_the_lockout_holds_across_web_workers(tmp_path: Path, fake_clock: FakeClock) -> None:
    settings = make_settings(tmp_path)
    first, second = create_app(settings), create_app(settings)
    try:
        for _ in range(FREE_FAILURES):
            sign_in(first.test_client(), "wrong-token-wrong-token")
        assert sign_in(second.test_client()).status_code == 429
    finally:
        first.extensions["adowh"].store.db.close()
        second.extensions["adowh"].store.db.close()


@pytest.mark.parametrize("path", (*UI_PAGES, "/ui/login"))
def test_pages_have_a_strict_csp_and_no_inline_script_or_style(
    signed_in: FlaskClient, path: str
) -> None:
    browser = signed_in if path != "/ui/login" else signed_in.application.test_client()
    resp = browser.get(path)
    assert resp.status_code == 200
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "style-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert resp.headers["Cache-Control"] == "no-store"
    parts = page_parts(resp.get_data(as_text=True))
    assert parts.inline_scripts == []
    assert parts.handlers == []
    assert parts.style_attributes == []
    assert parts.style_elements == 0
    assert all(src.startswith("/ui/static/") for src in parts.script_srcs)


def test_static_files_are_served_from_the_package(signed_in: FlaskClient) -> None:
    for name in ("htmx.min.js", "pico.classless.min.css", "ui.css", "ui.js"):
        resp = signed_in.get(f"/ui/static/{name}")
        assert resp.status_code == 200, name
        resp.close()


def test_every_post_form_on_every_page_carries_a_csrf_token(signed_in: FlaskClient) -> None:
    import re

    for path in UI_PAGES:
        html = signed_in.get(path).get_data(as_text=True)
        for form in re.findall(r"<form\b[^>]*>.*?</form>", html, re.S):
            if 'method="post"' in form:
                assert 'name="csrf_token"' in form, (path, form[:200])


def test_pages_answer_in_html_when_something_is_missing(signed_in: FlaskClient) -> None:
    resp = signed_in.get("/ui/risks/12345")
    assert resp.status_code == 404
    assert resp.mimetype == "text/html"
    assert "risk 12345 does not exist" in text_of(resp.get_data(as_text=True))


@pytest.fixture
def two_apps(tmp_path: Path) -> Iterator[tuple[Flask, Flask]]:
    settings = make_settings(tmp_path)
    apps = (create_app(settings), create_app(settings))
    yield apps
    for a in apps:
        a.extensions["adowh"].store.db.close()


def test_a_session_started_on_one_worker_works_on_another(two_apps: tuple[Flask, Flask]) -> None:
    first, second = two_apps
    client = first.test_client()
    sign_in(client)
    other = second.test_client()
    other.set_cookie(COOKIE, session_cookie(client), path="/ui")
    assert other.get("/ui/jobs").status_code == 200


def test_behind_a_trusted_proxy_sign_ins_are_throttled_per_forwarded_client(
    client: FlaskClient, fake_clock: FakeClock
) -> None:
    """The compose stack's proxy is every request's peer: one client's mistakes must not lock
    out the others, and a client cannot dodge its lock by forging X-Forwarded-For entries."""

    def attempt(token: str, forwarded: str) -> int:
        resp = client.post(
            "/ui/login",
            data={"token": token, "csrf_token": csrf_token(client), "next": ""},
            headers={"X-Forwarded-For": forwarded},
        )
        return resp.status_code

    for _ in range(FREE_FAILURES):
        assert attempt("wrong-token-wrong-token", "203.0.113.7") == 401
    assert attempt(ADMIN_TOKEN, "203.0.113.7") == 429  # this client is locked out
    # A forged left-most entry changes nothing: the proxy appended the real address last.
    assert attempt(ADMIN_TOKEN, "198.51.100.1, 203.0.113.7") == 429
    assert attempt(ADMIN_TOKEN, "198.51.100.9") == 303  # another admin signs in
