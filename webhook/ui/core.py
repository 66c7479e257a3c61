"""The UI blueprint: sign-in guard, CSRF check, security headers, error pages, helpers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import (
    Response,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from marshmallow import Schema, ValidationError

from webhook import clock
from webhook.errors import ApiError
from webhook.gateway import AdoGateway
from webhook.openapi import HtmlBlueprint
from webhook.schemas import flatten_errors
from webhook.services import get_services
from webhook.storage.errors import Missing
from webhook.storage.interfaces import UiSessionRepository
from webhook.ui import csrf

bp = HtmlBlueprint(
    "ui",
    __name__,
    url_prefix="/ui",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

SESSION_COOKIE = "adowh_ui"
PUBLIC_ENDPOINTS = frozenset({"ui.login", "ui.static"})
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
NAVIGATION: tuple[tuple[str, str], ...] = (
    ("ui.overview", "Overview"),
    ("ui.connections", "Connections"),
    ("ui.templates", "Templates"),
    ("ui.hooks", "Service hooks"),
    ("ui.sources", "Sources"),
    ("ui.risks", "Risks"),
    ("ui.jobs", "Jobs"),
)
SEVERITIES = ("critical", "high", "medium", "low", "info")


def ui_store() -> UiSessionRepository:
    """The UI's storage verbs over the service's database."""
    return get_services().store.ui_sessions


def gateway() -> AdoGateway:
    """The same Azure DevOps gateway the admin API uses."""
    return get_services().gateway


def is_htmx() -> bool:
    """True for a request htmx made (it wants a fragment, not a whole page)."""
    return request.headers.get("HX-Request") == "true"


def page(template: str, status: int = 200, **context: Any) -> Response:
    """Render a template as the response (never cached: pages may hold fresh data)."""
    return make_response(render_template(template, **context), status)


def form_errors(exc: ValidationError, names: Mapping[str, str]) -> dict[str, list[str]]:
    """Schema errors keyed by form field name (`names` maps schema paths to field names)."""
    out: dict[str, list[str]] = {}
    for path, messages in flatten_errors(exc.messages).items():
        out.setdefault(names.get(path, path), []).extend(messages)
    return out


def load_form(schema: Schema, data: dict[str, Any]) -> dict[str, Any]:
    """Validate form data with the admin API's own schema (raises ValidationError)."""
    return schema.load(data)  # type: ignore[no-any-return]


def as_id(raw: str | None) -> int | str | None:
    """A form's id value as an int when it is one (the schema then judges it)."""
    raw = (raw or "").strip()
    if not raw:
        return None
    return int(raw) if raw.isdigit() and len(raw) < 19 else raw


def api_error_text(exc: ApiError) -> str:
    """An ApiError as one sentence for a person."""
    return exc.message


@bp.app_template_filter("ago")
def ago(seconds: float | None) -> str:
    """`12 s ago`, `5 min ago`, `3 h ago`, `2 days ago`; `never` for None."""
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{int(seconds)} s ago"
    if seconds < 90 * 60:
        return f"{int(seconds // 60)} min ago"
    if seconds < 36 * 3600:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} days ago"


@bp.app_template_filter("when")
def when(ts: float | None) -> str:
    """A unix time as ISO-8601 UTC to the second, or an em dash."""
    return "—" if ts is None else clock.iso(ts)[:19].replace("T", " ") + " UTC"


@bp.app_context_processor
def _navigation() -> dict[str, Any]:
    return {"navigation": NAVIGATION, "signed_in": g.get("ui_signed_in", False)}


@bp.before_request
def _guard() -> ResponseReturnValue | None:
    """Check the CSRF token of every POST, then require a live session (but for sign-in)."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    session_id = session.get("sid")
    if not isinstance(session_id, str) or not ui_store().session_alive(session_id):
        session.pop("sid", None)
        back = request.full_path.rstrip("?") if request.method == "GET" else None
        target = url_for("ui.login", next=back)
        if is_htmx():
            return Response(status=204, headers={"HX-Redirect": target})
        return redirect(target, code=303)
    g.ui_signed_in = True
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    """Security headers on every UI response; pages are never cached or framed."""
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    if request.endpoint != "ui.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def message_page(status: int, title: str, message: str) -> Response:
    """An error said in words: a page, or just the sentence for an htmx request."""
    if is_htmx():
        return page("_message.html", status, message=message)
    return page("message.html", status, title=title, message=message)


@bp.errorhandler(CSRFError)
def _csrf_failed(exc: CSRFError) -> Response:
    return message_page(
        400,
        "Form refused",
        "This form was refused: its security token is missing, expired or from another "
        f"site ({exc.description}). Go back, reload the page and submit it again.",
    )


@bp.errorhandler(Missing)
def _missing(exc: Missing) -> Response:
    return message_page(404, "Not found", f"Not found: {exc}.")


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return message_page(exc.status, "Refused", api_error_text(exc))
