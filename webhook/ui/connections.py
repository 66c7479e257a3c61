"""Connections: add (validated against Azure DevOps, like POST /admin/connections) and Test."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from marshmallow import ValidationError
from werkzeug.wrappers import Response

from webhook.api.admin_connections import connection_test_result, create_checked_connection
from webhook.errors import ApiError
from webhook.schemas import ConnectionCreateSchema
from webhook.services import get_services
from webhook.storage.types import ConnectionRecord
from webhook.ui.core import bp, form_errors, is_htmx, load_form, page

AUTH_CHOICES = (("pat", "Personal access token"), ("service_principal", "Service principal"))
# Schema paths → form field names (the labels are in connection_form.html).
FIELD_NAMES = {
    "name": "name",
    "organization_url": "organization_url",
    "auth": "auth_type",
    "auth.type": "auth_type",
    "auth.token": "token",
    "auth.tenant_id": "tenant_id",
    "auth.client_id": "client_id",
    "auth.client_secret": "client_secret",
}
REQUIRED_MESSAGE = "Missing data for required field."


def _all_connections() -> list[ConnectionRecord]:
    items, _ = get_services().store.connections.list_connections(1, 1000)
    return items


def connection_body(form: Any) -> dict[str, Any]:
    """The POST /admin/connections body a filled form stands for (blank fields left out)."""
    values = {k: (form.get(k) or "").strip() for k in FIELD_NAMES.values()}
    auth: dict[str, Any] = {"type": values["auth_type"] or "pat"}
    wanted = ("token",) if auth["type"] == "pat" else ("tenant_id", "client_id", "client_secret")
    auth.update({k: values[k] for k in wanted if values[k]})
    body: dict[str, Any] = {"auth": auth}
    body.update({k: values[k] for k in ("name", "organization_url") if values[k]})
    return body


def _form_page(
    form: dict[str, str], errors: dict[str, list[str]], message: str | None, status: int
) -> Response:
    # Secrets typed by the admin are never sent back: the fields come back empty.
    kept = {k: v for k, v in form.items() if k not in ("token", "client_secret", "csrf_token")}
    return page(
        "connection_form.html",
        status,
        active="ui.connections",
        form=kept,
        errors=errors,
        error=message,
        auth_choices=AUTH_CHOICES,
    )


@bp.get("/connections")
def connections() -> Response:
    """The connections, each with a Test button."""
    return page("connections.html", active="ui.connections", connections=_all_connections())


@bp.get("/connections/new")
def new_connection() -> Response:
    """The Add connection form."""
    return _form_page({"auth_type": "pat"}, {}, None, 200)


@bp.post("/connections")
def create_connection() -> Response:
    """Connect: validate like the admin API, list the projects, save (encrypted)."""
    form = request.form.to_dict()
    try:
        data = load_form(ConnectionCreateSchema(), connection_body(request.form))
    except ValidationError as exc:
        errors = form_errors(exc, FIELD_NAMES)
        errors = {
            k: ["This field is required." if m == REQUIRED_MESSAGE else m for m in v]
            for k, v in errors.items()
        }
        return _form_page(form, errors, "Check the fields marked below.", 422)
    try:
        created = create_checked_connection(data)
    except ApiError as exc:
        errors = {FIELD_NAMES.get(k, k): v for k, v in exc.details.items()}
        if exc.code == "connection_exists":
            errors["name"] = [exc.message]
        if exc.code == "ado_auth_failed":
            errors["token" if data["auth"]["type"] == "pat" else "client_secret"] = [exc.message]
        return _form_page(form, errors, exc.message, exc.status)
    flash(
        f"Connected “{created['name']}”: {len(created['projects'])} project(s) visible "
        f"in {created['organization_url']}."
    )
    return redirect(url_for("ui.connections"), code=303)


@bp.post("/connections/<int:connection_id>/test")
def test_connection(connection_id: int) -> Response:
    """Test: list projects now; OK or Azure DevOps' own message (inline with htmx)."""
    result = connection_test_result(connection_id)
    if is_htmx():
        return page("_test_result.html", result=result, connection_id=connection_id)
    return page(
        "connections.html",
        active="ui.connections",
        connections=_all_connections(),
        results={connection_id: result},
    )
