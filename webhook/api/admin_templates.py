"""Admin: work item templates, checked against Azure DevOps before saving."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from webhook.ado import AdoNotFound
from webhook.api.ado_errors import ado_errors
from webhook.api.auth import require_admin
from webhook.api.requests import load_body, load_query, page_body
from webhook.domain.models import Risk, Template
from webhook.domain.rendering import build_create_patch
from webhook.domain.templates import (
    missing_required_fields,
    risk_owned_fields,
    validate_title_format,
)
from webhook.errors import Conflict, NotFound, ValidationFailed
from webhook.openapi import doc
from webhook.schemas import (
    BackfillResultSchema,
    BackfillSchema,
    PageQuerySchema,
    TemplateBaseSchema,
    TemplateCreateSchema,
    TemplatePageSchema,
    TemplateSavedSchema,
    TemplateSchema,
)
from webhook.services import get_services
from webhook.storage.errors import AlreadyExists, Missing
from webhook.storage.types import TemplateRecord
from webhook.subscriptions import hook_coverage

bp = Blueprint("admin_templates", __name__, url_prefix="/admin/templates")
bp.before_request(require_admin)

DEFAULTS: dict[str, Any] = {
    "sources": None,
    "title_format": "{name}",
    "tags": [],
    "area_path": None,
    "iteration_path": None,
    "fields": {},
    "close_on_resolve": False,
}


def check_against_ado(data: dict[str, Any]) -> None:
    """422 unless the project and type exist and every required field gets a value."""
    unknown = validate_title_format(data["title_format"])
    if unknown:
        raise ValidationFailed(
            f"title_format has unknown placeholders: {', '.join(unknown)}",
            details={"title_format": [f"unknown placeholder {u}" for u in unknown]},
        )
    services = get_services()
    try:
        services.store.connections.get_connection(data["connection_id"])
    except Missing as exc:
        raise ValidationFailed(str(exc), details={"connection_id": [str(exc)]}) from None
    gateway = services.gateway
    template = Template(
        id=0,
        **{
            k: data[k]
            for k in (
                "name",
                "connection_id",
                "project",
                "work_item_type",
                "auto_create",
                "severity_threshold",
                "sources",
                "title_format",
                "tags",
                "area_path",
                "iteration_path",
                "fields",
                "close_on_resolve",
            )
        },
    )
    with ado_errors():
        try:
            info = gateway.type_info(
                data["connection_id"], data["project"], data["work_item_type"], refresh=True
            )
        except AdoNotFound as exc:
            raise ValidationFailed(
                f"project {data['project']!r} or work item type {data['work_item_type']!r} "
                f"does not exist: {exc.message}",
                details={"project": [exc.message], "work_item_type": [exc.message]},
            ) from None
        owned = {name.casefold(): name for name in risk_owned_fields(template, info)}
        overridden = [name for name in template.fields if name.casefold() in owned]
        if overridden:
            # The service writes these itself (SPEC 4, "Work item content"); a value here would
            # be dropped without a word.
            raise ValidationFailed(
                f"fields sets {', '.join(overridden)}, which ado-webhook writes itself from the"
                " risk and the template (title_format, tags, area_path, iteration_path)",
                details={
                    f"fields.{name}": ["set by ado-webhook; use the template's own settings"]
                    for name in overridden
                },
            )
        missing = missing_required_fields(template, info)
        if missing:
            raise ValidationFailed(
                f"{data['work_item_type']} in {data['project']} requires fields the template "
                f"leaves unset: {', '.join(missing)}; add them to `fields`",
                code="required_fields_missing",
                details={
                    "fields": [f"missing required field {m}" for m in missing],
                    "missing_fields": missing,
                },
            )
        # A validate-only create catches rules the field list cannot show (picklists, paths…).
        sample = Risk(
            id=0,
            source="ado-webhook",
            key="template-check",
            name="ado-webhook template check",
            severity=data["severity_threshold"],
        )
        patch = build_create_patch(
            sample, template, info, tracking_tag="adowh-template-check", risk_link=None
        )
        gateway.client(data["connection_id"]).create_work_item(
            data["project"], data["work_item_type"], patch, validate_only=True
        )


_template_schema = TemplateSchema()
_saved_schema = TemplateSavedSchema()


def _with_hooks(template: TemplateRecord) -> dict[str, Any]:
    """The saved template as TemplateSavedSchema shows it: plus whether its project's service
    hooks are registered (so that closing its work items resolves risks at once); the message
    says what to do if not."""
    hooks = get_services().store.hooks.hooks_for(template.connection_id, template.project)
    coverage = hook_coverage(template.project, hooks)
    dumped: dict[str, Any] = _saved_schema.dump({**asdict(template), "hooks": coverage})
    return dumped


def _template(template_id: int) -> TemplateRecord:
    try:
        return get_services().store.templates.get_template(template_id)
    except Missing as exc:
        raise NotFound(str(exc)) from None


@bp.post("")
@doc(
    summary="Create a template (checked against Azure DevOps)",
    tag="templates",
    body=TemplateCreateSchema,
    responses={201: TemplateSavedSchema},
)
def create_template() -> ResponseReturnValue:
    """Validate the template against the project's type definition, then save it."""
    data = {**DEFAULTS, **load_body(TemplateCreateSchema())}
    check_against_ado(data)
    try:
        return jsonify(_with_hooks(get_services().store.templates.create_template(data))), 201
    except AlreadyExists as exc:
        raise Conflict(str(exc), code="template_exists") from None


@bp.get("")
@doc(
    summary="List templates",
    tag="templates",
    query=PageQuerySchema,
    responses={200: TemplatePageSchema},
)
def list_templates() -> ResponseReturnValue:
    """Templates, oldest first."""
    q = load_query(PageQuerySchema())
    items, total = get_services().store.templates.list_templates(q["page"], q["per_page"])
    return jsonify(
        page_body(_template_schema.dump(items, many=True), total, q["page"], q["per_page"])
    )


@bp.get("/<int:template_id>")
@doc(summary="One template", tag="templates", responses={200: TemplateSchema})
def get_template(template_id: int) -> ResponseReturnValue:
    """One template."""
    return jsonify(_template_schema.dump(_template(template_id)))


@bp.patch("/<int:template_id>")
@doc(
    summary="Change a template (re-checked against Azure DevOps)",
    tag="templates",
    body=TemplateBaseSchema,
    responses={200: TemplateSavedSchema},
)
def patch_template(template_id: int) -> ResponseReturnValue:
    """Change some fields; the result is checked like a new template."""
    changes = load_body(TemplateBaseSchema())
    current = _template(template_id)
    merged = {**asdict(current), **changes}
    check_against_ado(merged)
    try:
        return jsonify(
            _with_hooks(get_services().store.templates.update_template(template_id, changes))
        )
    except AlreadyExists as exc:
        raise Conflict(str(exc), code="template_exists") from None
    except Missing as exc:
        raise NotFound(str(exc)) from None


@bp.delete("/<int:template_id>")
@doc(summary="Delete a template", tag="templates", responses={204: None})
def delete_template(template_id: int) -> ResponseReturnValue:
    """Delete a template; existing work items stay linked."""
    try:
        get_services().store.templates.delete_template(template_id)
    except Missing as exc:
        raise NotFound(str(exc)) from None
    return "", 204


@bp.post("/<int:template_id>/backfill")
@doc(
    summary="Apply a template to the risks already stored (dry run: count only)",
    tag="templates",
    body=BackfillSchema,
    responses={200: BackfillResultSchema},
)
def backfill_template(template_id: int) -> ResponseReturnValue:
    """SPEC 3.3: queue work items for open risks without one (and none pending) for which
    template choice picks this template now; `{"matched": N, "queued": M}`."""
    data = load_body(BackfillSchema())
    try:
        result = get_services().store.templates.backfill_template(
            template_id, dry_run=data["dry_run"]
        )
    except Missing as exc:
        raise NotFound(str(exc)) from None
    return jsonify(BackfillResultSchema().dump(result))
