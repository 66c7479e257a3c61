"""Admin: register Azure DevOps service hooks for a project, list their live status, remove."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from webhook.ado import AdoNotFound
from webhook.api.ado_errors import ado_errors
from webhook.api.auth import require_admin
from webhook.api.requests import load_body, load_query, page_body
from webhook.errors import Conflict, NotFound, ValidationFailed
from webhook.openapi import doc
from webhook.schemas import (
    HookCreateSchema,
    HookPageSchema,
    HookSchema,
    HookSetupSchema,
    PageQuerySchema,
)
from webhook.services import get_services
from webhook.storage.errors import Missing
from webhook.storage.types import HookRecord
from webhook.subscriptions import HookSetup, PublicUrlMissing, Subscriptions

bp = Blueprint("admin_hooks", __name__, url_prefix="/admin/hooks")
bp.before_request(require_admin)


_hook_schema = HookSchema()
# Hooks created by this call are shown without their project id (as they always were).
_created_schema = HookSchema(exclude=("project_id",))


def _subscriptions() -> Subscriptions:
    return get_services().subscriptions


def setup_body(setup: HookSetup) -> dict[str, Any]:
    """The POST /admin/hooks answer (HookSetupSchema): every hook of the project, each dumped
    by HookSchema; those created now carry no `project_id`."""
    return {
        "subscriptions": [
            (_created_schema if h.id in setup.created else _hook_schema).dump(h)
            for h in setup.hooks
        ]
    }


def _dump(hook: HookRecord) -> dict[str, Any]:
    return dict(_hook_schema.dump(hook))


@bp.post("")
@doc(
    summary="Create (or repair) the service-hook subscriptions of a project",
    tag="hooks",
    body=HookCreateSchema,
    responses={200: HookSetupSchema, 201: HookSetupSchema},
)
def create_hooks() -> ResponseReturnValue:
    """Idempotent: creates what is missing, recreates what was deleted or disabled."""
    data = load_body(HookCreateSchema())
    services = get_services()
    if not services.settings.public_url:
        raise Conflict(
            "WEBHOOK_PUBLIC_URL is not set: Azure DevOps needs the public base URL "
            "of this service to deliver events",
            code="public_url_missing",
        )
    try:
        services.store.connections.get_connection(data["connection_id"])
    except Missing as exc:
        raise ValidationFailed(str(exc), details={"connection_id": [str(exc)]}) from None
    try:
        with ado_errors():
            try:
                setup = _subscriptions().ensure(data["connection_id"], data["project"])
            except AdoNotFound as exc:
                raise ValidationFailed(
                    f"project {data['project']!r} not found: {exc.message}",
                    details={"project": [exc.message]},
                ) from None
    except PublicUrlMissing as exc:
        raise Conflict(str(exc), code="public_url_missing") from None
    return jsonify(setup_body(setup)), 201 if setup.created_any else 200


@bp.get("")
@doc(
    summary="Subscriptions with their live status in Azure DevOps",
    tag="hooks",
    query=PageQuerySchema,
    responses={200: HookPageSchema},
)
def list_hooks() -> ResponseReturnValue:
    """Each hook's status as Azure DevOps reports it now."""
    q = load_query(PageQuerySchema())
    items, total = get_services().store.hooks.list_hooks(q["page"], q["per_page"])
    subs = _subscriptions()
    return jsonify(
        page_body(
            [_dump(subs.live(get_services().store.hooks.get_hook(h.id))) for h in items],
            total,
            q["page"],
            q["per_page"],
        )
    )


@bp.delete("/<int:hook_id>")
@doc(summary="Remove a subscription (in Azure DevOps too)", tag="hooks", responses={204: None})
def delete_hook(hook_id: int) -> ResponseReturnValue:
    """Delete in Azure DevOps, then here."""
    try:
        hook = get_services().store.hooks.get_hook(hook_id)
    except Missing as exc:
        raise NotFound(str(exc)) from None
    with ado_errors():
        _subscriptions().remove(hook)
    return "", 204
