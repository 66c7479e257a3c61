"""The admin web UI (SPEC 3.4): server-rendered pages at /ui/ over the admin API's services.

Sign-in is the admin token; the browser then holds Flask's signed session cookie (path /ui,
HttpOnly, SameSite=Lax, Secure when WEBHOOK_PUBLIC_URL is https) carrying a random session id
whose hash is stored server-side (`ui_sessions`). Every POST is checked by Flask-WTF's CSRF
protection; the JSON admin API (bearer token), the scanner and hook routes are not affected.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, redirect
from flask_wtf.csrf import CSRFProtect
from werkzeug.wrappers import Response

from webhook.openapi import HtmlBlueprint
from webhook.settings import Settings

HKDF_INFO = b"ado-webhook admin web UI session signing key v1"

csrf = CSRFProtect()
UI_BLUEPRINTS = ("ui", "ui_root")
"""Blueprints of HTML pages: not part of the JSON API (nor of /openapi.json)."""

root_bp = HtmlBlueprint("ui_root", __name__)


@root_bp.get("/")
def root() -> Response:
    """The service's front door is the admin web UI."""
    return redirect("/ui/", code=302)


def is_ui_endpoint(endpoint: str) -> bool:
    """True for the endpoints of the admin web UI (HTML), False for the API's."""
    return endpoint.partition(".")[0] in UI_BLUEPRINTS


def session_signing_key(settings: Settings) -> bytes:
    """Flask's SECRET_KEY for the UI, derived (HKDF-SHA256) from the configured secrets.

    Input keying material is the newest WEBHOOK_SECRET_KEY plus WEBHOOK_ADMIN_TOKEN, so
    changing either ends every UI session; the UI-specific `info` keeps the derived key
    independent of every other use of those secrets. Needs no new environment variable.
    """
    material = (settings.secret_keys[0] + "\x00" + settings.admin_token).encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(material)


def init_app(app: Flask, settings: Settings) -> None:
    """Register the UI blueprint, its session and CSRF configuration, and `/` → `/ui/`."""
    # Importing the page modules attaches their views to the blueprint.
    from webhook.domain.ui_sessions import SESSION_MAX_SECONDS
    from webhook.ui import (  # noqa: F401
        account,
        connections,
        hooks,
        jobs,
        overview,
        risks,
        sources,
        work_item_templates,
    )
    from webhook.ui.core import SESSION_COOKIE, bp

    secure = bool(settings.public_url and settings.public_url.startswith("https://"))
    app.config.update(
        SECRET_KEY=session_signing_key(settings),
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_PATH="/ui",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        # Views opt in (the UI blueprint calls csrf.protect() for every POST); the JSON admin
        # API authenticates with a bearer header, which a browser never sends on its own.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=int(SESSION_MAX_SECONDS),
    )
    csrf.init_app(app)
    app.register_blueprint(bp)
    app.register_blueprint(root_bp)
