"""Sources: create (secret shown once, with a copy button and the signing snippet), rotate."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Response, request
from marshmallow import ValidationError

from webhook.schemas import SourceCreateSchema, SourceSchema
from webhook.services import get_services
from webhook.storage.errors import AlreadyExists
from webhook.storage.types import SourceRecord
from webhook.ui.core import bp, form_errors, page

REQUIRED_MESSAGE = "Missing data for required field."


def webhook_url(name: str) -> str:
    """Where a scanner posts this source's risks."""
    base = get_services().settings.public_url or request.host_url.rstrip("/")
    return f"{base}/webhooks/risks/{name}"


def _with_url(source: SourceRecord) -> dict[str, Any]:
    dumped: dict[str, Any] = SourceSchema().dump(
        {**asdict(source), "webhook_url": webhook_url(source.name)}
    )
    return dumped


def _secret_page(source: SourceRecord, secret: str, *, rotated: bool) -> Response:
    """The one page that shows a signing secret."""
    resp = page(
        "source_secret.html",
        201 if not rotated else 200,
        active="ui.sources",
        source=_with_url(source),
        secret=secret,
        rotated=rotated,
    )
    return resp


@bp.get("/sources")
def sources() -> Response:
    """The sources (never their secrets)."""
    items, _ = get_services().store.sources.list_sources(1, 1000)
    return page("sources.html", active="ui.sources", sources=[_with_url(s) for s in items])


@bp.get("/sources/new")
def new_source() -> Response:
    """The New source form."""
    return page("source_form.html", active="ui.sources", form={}, errors={}, error=None)


@bp.post("/sources")
def create_source() -> Response:
    """Create source: the admin API's schema, then the store; the secret is shown once."""
    form = {k: v.strip() for k, v in request.form.items() if k != "csrf_token"}
    body = {k: form[k] for k in ("name", "callback_url") if form.get(k)}
    try:
        data = SourceCreateSchema().load(body)
    except ValidationError as exc:
        errors = {
            k: ["This field is required." if m == REQUIRED_MESSAGE else m for m in v]
            for k, v in form_errors(exc, {}).items()
        }
        return page(
            "source_form.html",
            422,
            active="ui.sources",
            form=form,
            errors=errors,
            error="Check the fields marked below.",
        )
    try:
        source, secret = get_services().store.sources.create_source(
            data["name"], data.get("callback_url")
        )
    except AlreadyExists as exc:
        return page(
            "source_form.html",
            409,
            active="ui.sources",
            form=form,
            errors={"name": [str(exc)]},
            error=str(exc),
        )
    return _secret_page(source, secret, rotated=False)


@bp.post("/sources/<int:source_id>/rotate-secret")
def rotate_source_secret(source_id: int) -> Response:
    """Rotate secret: a new secret now; the old one keeps verifying for 24 hours."""
    source, secret = get_services().store.sources.rotate_source_secret(source_id)
    return _secret_page(source, secret, rotated=True)
