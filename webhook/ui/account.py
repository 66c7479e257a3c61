"""Sign-in with the admin token, throttled per address; sign-out ends the session server-side."""

from __future__ import annotations

import ipaddress
import os
import secrets

from flask import flash, redirect, request, session, url_for
from werkzeug.wrappers import Response

from webhook.crypto import tokens_equal
from webhook.services import get_services
from webhook.ui.core import bp, page, ui_store


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a UI path on this site, else the Overview."""
    if target and target.startswith("/ui/") and not target.startswith("/ui/login"):
        return target
    return url_for("ui.overview")


def _trusted_proxy(address: str, trusted: list[str]) -> bool:
    """Whether `address` is one of `trusted` (addresses or networks, `*` for any)."""
    if "*" in trusted:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for entry in trusted:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def client_address() -> str:
    """The address sign-in attempts are counted against.

    Behind a reverse proxy (deploy/compose.yaml's Caddy) every request comes from the proxy, so
    counting `remote_addr` would lock every admin out after anyone's five mistakes. When the
    peer is a trusted proxy — gunicorn's FORWARDED_ALLOW_IPS, comma-separated addresses or
    networks, `*` for any; default 127.0.0.1 and ::1 — the client is the right-most
    X-Forwarded-For entry that is not itself a trusted proxy (entries further left are the
    client's own claims and could be forged). Otherwise the peer's address.
    """
    peer = request.remote_addr or "unknown"
    raw = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
    trusted = [entry.strip() for entry in raw.split(",") if entry.strip()]
    if not _trusted_proxy(peer, trusted):
        return peer
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        if not _trusted_proxy(hop, [t for t in trusted if t != "*"]):
            return hop[:64]
    return peer


def _signed_in() -> bool:
    sid = session.get("sid")
    return isinstance(sid, str) and ui_store().session_alive(sid)


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response:
    """GET: the sign-in form. POST: check the admin token and start a session."""
    next_url = request.values.get("next", "")
    if request.method == "GET":
        if _signed_in():
            return redirect(_safe_next(next_url), code=303)
        return page("login.html", next_url=next_url)
    client = client_address()
    store = ui_store()
    check = store.sign_in_allowed(client)
    if not check.allowed:
        resp = page(
            "login.html",
            429,
            next_url=next_url,
            error=(
                "Too many failed sign-ins from your address. "
                f"Wait {check.wait_seconds} seconds, then try again."
            ),
        )
        resp.headers["Retry-After"] = str(check.wait_seconds)
        return resp
    token = request.form.get("token", "").strip()
    if not token:
        return page("login.html", 400, next_url=next_url, error="Enter the admin token.")
    if not tokens_equal(token, get_services().settings.admin_token):
        after = store.record_sign_in_failure(client)
        error = "That is not the admin token (the value of WEBHOOK_ADMIN_TOKEN)."
        if not after.allowed:
            error += (
                f" Too many failed sign-ins: wait {after.wait_seconds} seconds before trying again."
            )
        return page("login.html", 401, next_url=next_url, error=error)
    store.clear_sign_in_failures(client)
    session_id = secrets.token_urlsafe(32)
    store.create_session(session_id)
    # A fresh cookie: nothing from before sign-in (e.g. its CSRF token) carries over.
    session.clear()
    session["sid"] = session_id
    return redirect(_safe_next(next_url), code=303)


@bp.post("/logout")
def logout() -> Response:
    """End the session in the database (a copied cookie stops working) and forget the cookie."""
    sid = session.get("sid")
    if isinstance(sid, str):
        ui_store().end_session(sid)
    session.clear()
    flash("Signed out.")
    return redirect(url_for("ui.login"), code=303)
