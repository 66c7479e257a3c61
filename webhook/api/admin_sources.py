"""Admin: scanner sources and their signing secrets."""

from __future__ import annotations

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
    SourceWithSecretSchema,
)
from webhook.services import get_services
from webhook.storage.errors import AlreadyExists, Missing

bp = Blueprint("admin_sources", __name__, url_prefix="/admin/sources")
bp.before_request(require_admin)


def _with_url(source: dict[str, Any]) -> dict[str, Any]:
    base = get_services().settings.public_url or request.host_url.rstrip("/")
    return {**source, "webhook_url": f"{base}/webhooks/risks/{source['name']}"}


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
        source, secret = get_services().store.create_source(data["name"], data.get("callback_url"))
    except AlreadyExists as exc:
        raise Conflict(str(exc), code="source_exists") from None
    return jsonify({**_with_url(source), "secret": secret}), 201


@bp.get("")
@doc(
    summary="List sources", tag="sources", query=PageQuerySchema, responses={200: SourcePageSchema}
)
def list_sources() -> ResponseReturnValue:
    """List sources (never their secrets)."""
    q = load_query(PageQuerySchema())
    items, total = get_services().store.list_sources(q["page"], q["per_page"])
    return jsonify(page_body([_with_url(s) for s in items], total, q["page"], q["per_page"]))


@bp.post("/<int:source_id>/rotate-secret")
@doc(
    summary="Issue a new secret; the old one stays valid for 24 h",
    tag="sources",
    responses={200: SourceWithSecretSchema},
)
def rotate_secret(source_id: int) -> ResponseReturnValue:
    """Rotate a source's signing secret."""
    try:
        source, secret = get_services().store.rotate_source_secret(source_id)
    except Missing as exc:
        raise NotFound(str(exc)) from None
    return jsonify({**_with_url(source), "secret": secret})
