"""Admin: scanner sources and their signing secrets."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from webhook.api.auth import require_admin
from webhook.api.requests import load_body, load_query, page_body
from webhook.errors import Conflict, NotFound
from webhook.openapi import doc
from webhook.schemas import (
    PageQuerySchema,
    SourceCreateSchema,
    SourcePageSchema,
    SourceSchema,
    SourceWithSecretSchema,
)
from webhook.services import get_services
from webhook.storage.errors import AlreadyExists, Missing
from webhook.storage.types import SourceRecord

_source_schema = SourceSchema()
_secret_schema = SourceWithSecretSchema()
bp = Blueprint("admin_sources", __name__, url_prefix="/admin/sources")
bp.before_request(require_admin)


def _dump(source: SourceRecord, secret: str | None = None) -> dict[str, Any]:
    """The source as SourceSchema shows it: with where to post, and its secret once."""
    base = get_services().settings.public_url or request.host_url.rstrip("/")
    shown = {**asdict(source), "webhook_url": f"{base}/webhooks/risks/{source.name}"}
    dumped: dict[str, Any] = (
        _source_schema.dump(shown)
        if secret is None
        else _secret_schema.dump({**shown, "secret": secret})
    )
    return dumped


@bp.post("")
@doc(
    summary="Create a source; its secret is shown once",
    tag="sources",
    body=SourceCreateSchema,
    responses={201: SourceWithSecretSchema},
)
def create_source() -> ResponseReturnValue:
    """Create a scanner source and return its signing secret once."""
    data = load_body(SourceCreateSchema())
    try:
        source, secret = get_services().store.sources.create_source(
            data["name"], data.get("callback_url")
        )
    except AlreadyExists as exc:
        raise Conflict(str(exc), code="source_exists") from None
    return jsonify(_dump(source, secret)), 201


@bp.get("")
@doc(
    summary="List sources", tag="sources", query=PageQuerySchema, responses={200: SourcePageSchema}
)
def list_sources() -> ResponseReturnValue:
    """List sources (never their secrets)."""
    q = load_query(PageQuerySchema())
    items, total = get_services().store.sources.list_sources(q["page"], q["per_page"])
    return jsonify(page_body([_dump(s) for s in items], total, q["page"], q["per_page"]))


@bp.post("/<int:source_id>/rotate-secret")
@doc(
    summary="Issue a new secret; the old one stays valid for 24 h",
    tag="sources",
    responses={200: SourceWithSecretSchema},
)
def rotate_secret(source_id: int) -> ResponseReturnValue:
    """Rotate a source's signing secret."""
    try:
        source, secret = get_services().store.sources.rotate_source_secret(source_id)
    except Missing as exc:
        raise NotFound(str(exc)) from None
    return jsonify(_dump(source, secret))
