"""Risks: filters, pagination, links to work items in Azure DevOps; a page per risk with its
history and manual export (as GET /admin/risks and POST /admin/risks/<id>/work-item)."""

from __future__ import annotations

from flask import flash, redirect, request, url_for
from marshmallow import ValidationError
from werkzeug.wrappers import Response

from webhook.schemas import RiskQuerySchema
from webhook.services import get_services
from webhook.storage.errors import InUse, Missing
from webhook.ui.core import SEVERITIES, as_id, bp, form_errors, page

PER_PAGE = 50
STATUSES = ("open", "resolved", "removed")


@bp.get("/risks")
def risks() -> Response:
    """Risks matching the filters, newest first, PER_PAGE a page."""
    raw = {k: v.strip() for k, v in request.args.items() if v.strip()}
    query: dict[str, str] = {
        k: raw[k] for k in ("status", "severity", "key", "source", "page") if k in raw
    }
    errors: dict[str, list[str]] = {}
    try:
        q = RiskQuerySchema().load({**query, "per_page": str(PER_PAGE)})
    except ValidationError as exc:
        errors = form_errors(exc, {})
        q = {"page": 1, "per_page": PER_PAGE}
    filters = {k: q[k] for k in ("status", "severity", "source", "key") if k in q}
    items, total = get_services().store.risks.list_risks(filters, q["page"], PER_PAGE)
    pages = max(1, -(-total // PER_PAGE))
    return page(
        "risks.html",
        422 if errors else 200,
        active="ui.risks",
        risks=items,
        total=total,
        page_number=q["page"],
        pages=pages,
        filters={k: raw.get(k, "") for k in ("status", "severity", "key", "source")},
        errors=errors,
        error="Check the filters marked below." if errors else None,
        statuses=STATUSES,
        severities=SEVERITIES,
    )


@bp.get("/risks/<int:risk_id>")
def risk(risk_id: int) -> Response:
    """One risk: its work item, its text and its history; Create work item when it has none."""
    store = get_services().store
    detail = store.risks.get_risk(risk_id)
    templates, _ = store.templates.list_templates(1, 1000)
    return page("risk.html", active="ui.risks", risk=detail, templates=templates, errors={})


@bp.post("/risks/<int:risk_id>/work-item")
def export_risk(risk_id: int) -> Response:
    """Create work item: record the export; the worker files it within moments."""
    store = get_services().store
    template_id = as_id(request.form.get("template_id"))
    message = None
    if not isinstance(template_id, int):
        message = "Choose the template to file the work item with."
    else:
        try:
            store.work_items.request_work_item(risk_id, template_id)
        except InUse as exc:
            message = str(exc)
        except Missing as exc:
            if str(exc).startswith("risk "):
                raise
            message = str(exc)
    if message is None:
        flash("Work item requested: the worker files it within moments.")
        return redirect(url_for("ui.risk", risk_id=risk_id), code=303)
    templates, _ = store.templates.list_templates(1, 1000)
    return page(
        "risk.html",
        409 if template_id else 422,
        active="ui.risks",
        risk=store.risks.get_risk(risk_id),
        templates=templates,
        errors={"template_id": [message]},
        error=message,
        chosen=request.form.get("template_id", ""),
    )
