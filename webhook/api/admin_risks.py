"""Admin: risks with their work items and history."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from webhook.api.auth import require_admin
from webhook.api.requests import load_body, load_query, page_body
from webhook.errors import Conflict, NotFound
from webhook.openapi import doc
from webhook.schemas import (
    ExportAcceptedSchema,
    ExportSchema,
    RiskDetailSchema,
    RiskOutSchema,
    RiskPageSchema,
    RiskQuerySchema,
)
from webhook.services import get_services
from webhook.storage.errors import InUse, Missing

_summary_schema = RiskOutSchema()
_detail_schema = RiskDetailSchema()
bp = Blueprint("admin_risks", __name__, url_prefix="/admin/risks")
bp.before_request(require_admin)


@bp.get("")
@doc(summary="List risks", tag="risks", query=RiskQuerySchema, responses={200: RiskPageSchema})
def list_risks() -> ResponseReturnValue:
    """Risks filtered by status, severity, source or key."""
    q = load_query(RiskQuerySchema())
    filters: dict[str, str] = {k: q[k] for k in ("status", "severity", "source", "key") if k in q}
    items, total = get_services().store.risks.list_risks(filters, q["page"], q["per_page"])
    return jsonify(
        page_body(_summary_schema.dump(items, many=True), total, q["page"], q["per_page"])
    )


@bp.get("/<int:risk_id>")
@doc(summary="One risk with its sync history", tag="risks", responses={200: RiskDetailSchema})
def get_risk(risk_id: int) -> ResponseReturnValue:
    """One risk with its history."""
    try:
        return jsonify(_detail_schema.dump(get_services().store.risks.get_risk(risk_id)))
    except Missing as exc:
        raise NotFound(str(exc)) from None


@bp.post("/<int:risk_id>/work-item")
@doc(
    summary="Create this risk's work item now (manual export)",
    tag="risks",
    body=ExportSchema,
    responses={202: ExportAcceptedSchema},
)
def export_risk(risk_id: int) -> ResponseReturnValue:
    """Record the creation; the worker files it within moments (409 if it has one)."""
    data = load_body(ExportSchema())
    try:
        job = get_services().store.work_items.request_work_item(risk_id, data["template_id"])
    except Missing as exc:
        raise NotFound(str(exc)) from None
    except InUse as exc:
        raise Conflict(str(exc), code="work_item_exists") from None
    return jsonify(ExportAcceptedSchema().dump({"job": job})), 202
