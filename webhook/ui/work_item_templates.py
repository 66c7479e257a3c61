"""Templates: project and type chosen from what Azure DevOps lists, required fields offered with
their allowed values, a live title preview, and the admin API's own checks before saving."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import flash, redirect, request, url_for
from marshmallow import ValidationError
from werkzeug.wrappers import Response

from webhook.ado import AdoError
from webhook.api.admin_templates import DEFAULTS, check_against_ado
from webhook.api.ado_errors import ado_errors
from webhook.domain.models import Risk, Template
from webhook.domain.templates import format_title, missing_required_fields, validate_title_format
from webhook.errors import ApiError
from webhook.gateway import required_field_details, type_info_from_ado
from webhook.schemas import TemplateCreateSchema
from webhook.services import get_services
from webhook.storage.errors import AlreadyExists, Missing
from webhook.storage.types import ConnectionRecord
from webhook.ui.core import SEVERITIES, as_id, bp, form_errors, gateway, page

FIELD_PREFIX = "field:"
SAMPLE_RISK = Risk(
    id=0,
    source="sast",
    key="F-1042",
    name="SQL injection in /api/orders",
    severity="high",
    project="shop-backend",
)
"""The sample risk the title preview is rendered for."""
REQUIRED_MESSAGE = "Missing data for required field."


@dataclass
class AdoChoices:
    """What Azure DevOps lists for the form's current connection, project and type."""

    projects: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    required: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def ado_choices(connection_id: Any, project: str, type_name: str) -> AdoChoices:
    """Projects of the connection, types of the project, and the required fields of the type
    that the service does not set itself (each with Azure DevOps' allowed values)."""
    choices = AdoChoices()
    if not isinstance(connection_id, int):
        return choices
    try:
        with ado_errors():
            client = gateway().client(connection_id)
            choices.projects = sorted((p["name"] for p in client.list_projects()), key=str.lower)
            if project not in choices.projects:
                return choices
            choices.types = sorted(
                t["name"] for t in client.list_work_item_types(project) if not t.get("isDisabled")
            )
            if type_name not in choices.types:
                return choices
            fields = client.get_work_item_type_fields(project, type_name)
    except ApiError as exc:
        choices.error = exc.message
        return choices
    except (AdoError, Missing) as exc:  # Missing: the connection was deleted meanwhile
        choices.error = f"Azure DevOps: {exc}"
        return choices
    info = type_info_from_ado(type_name, [], fields)
    bare = Template(
        id=0,
        name="",
        connection_id=connection_id,
        project=project,
        work_item_type=type_name,
        auto_create=False,
        severity_threshold="info",
    )
    wanted = set(missing_required_fields(bare, info))
    choices.required = [d for d in required_field_details(fields) if d["reference_name"] in wanted]
    return choices


def _connections() -> list[ConnectionRecord]:
    items, _ = get_services().store.connections.list_connections(1, 1000)
    return items


def _form_context(form: dict[str, str]) -> dict[str, Any]:
    connection_id = as_id(form.get("connection_id"))
    choices = ado_choices(connection_id, form.get("project", ""), form.get("work_item_type", ""))
    return {
        "form": form,
        "connections": _connections(),
        "connection_id": connection_id,
        "choices": choices,
        "severities": SEVERITIES,
        "field_prefix": FIELD_PREFIX,
        "preview": title_preview(form.get("title_format") or DEFAULTS["title_format"]),
    }


def _form_page(
    form: dict[str, str],
    errors: dict[str, list[str]] | None = None,
    message: str | None = None,
    status: int = 200,
) -> Response:
    context = _form_context(form)
    return page(
        "template_form.html",
        status,
        active="ui.templates",
        errors=errors or {},
        error=message,
        **context,
    )


def title_preview(title_format: str) -> dict[str, Any]:
    """The work item title the format gives the sample risk, or what is wrong with it."""
    unknown = validate_title_format(title_format)
    if unknown:
        return {"ok": False, "text": f"Unknown placeholder(s): {', '.join(unknown)}"}
    if not title_format.strip():
        return {"ok": False, "text": "Empty: the title will be the risk's name."}
    return {"ok": True, "text": format_title(title_format, SAMPLE_RISK)}


def template_body(form: Any) -> dict[str, Any]:
    """The POST /admin/templates body a filled form stands for (blank fields left out)."""
    body: dict[str, Any] = {
        "auto_create": form.get("auto_create") == "on",
        "close_on_resolve": form.get("close_on_resolve") == "on",
    }
    for name in ("name", "project", "work_item_type", "severity_threshold", "title_format"):
        value = (form.get(name) or "").strip()
        if value:
            body[name] = value
    connection_id = as_id(form.get("connection_id"))
    if connection_id is not None:
        body["connection_id"] = connection_id
    tags = [t.strip() for t in (form.get("tags") or "").split(",") if t.strip()]
    if tags:
        body["tags"] = tags
    fields = {
        key[len(FIELD_PREFIX) :]: value.strip()
        for key, value in form.items()
        if key.startswith(FIELD_PREFIX) and value.strip()
    }
    if fields:
        body["fields"] = fields
    return body


@bp.get("/templates")
def templates() -> Response:
    """The templates, in the order template choice breaks ties."""
    items, _ = get_services().store.templates.list_templates(1, 1000)
    names = {c.id: c.name for c in _connections()}
    return page("templates.html", active="ui.templates", templates=items, connection_names=names)


@bp.get("/templates/new")
def new_template() -> Response:
    """The New template form; choosing a connection loads its projects, and so on."""
    # Nothing is preselected: each choice loads the next list, so a choice made while an
    # earlier list is still loading cannot be overwritten by it.
    return _form_page({"severity_threshold": "high", "title_format": DEFAULTS["title_format"]})


@bp.get("/templates/choices")
def template_choices() -> Response:
    """htmx: the Azure DevOps part of the form again, for the connection/project/type chosen."""
    context = _form_context(request.args.to_dict())
    return page("_template_choices.html", errors={}, **context)


@bp.get("/templates/title-preview")
def template_title_preview() -> Response:
    """htmx: the title the current format gives the sample risk."""
    return page(
        "_title_preview.html",
        preview=title_preview(request.args.get("title_format", "")),
        sample=SAMPLE_RISK,
    )


@bp.post("/templates")
def create_template() -> Response:
    """Save template: the admin API's schema and Azure DevOps checks, then the store."""
    form = {k: v for k, v in request.form.items() if k != "csrf_token"}
    try:
        loaded = TemplateCreateSchema().load(template_body(request.form))
    except ValidationError as exc:
        errors = form_errors(exc, {})
        errors = {
            k: ["This field is required." if m == REQUIRED_MESSAGE else m for m in v]
            for k, v in errors.items()
        }
        return _form_page(form, errors, "Check the fields marked below.", 422)
    data = {**DEFAULTS, **loaded}
    try:
        check_against_ado(data)
        created = get_services().store.templates.create_template(data)
    except AlreadyExists as exc:
        return _form_page(form, {"name": [str(exc)]}, str(exc), 409)
    except ApiError as exc:
        return _refused(form, data, exc)
    flash(f"Saved template “{created.name}”: {created.work_item_type} in {created.project}.")
    return redirect(url_for("ui.templates"), code=303)


def _refused(form: dict[str, str], data: dict[str, Any], exc: ApiError) -> Response:
    """Azure DevOps (or the checks against it) refused: say why, naming every missing field."""
    errors: dict[str, list[str]] = {}
    message = exc.message
    missing = exc.details.get("missing_fields") if exc.code == "required_fields_missing" else None
    if missing:
        context = _form_context(form)
        names = {d["reference_name"]: d["name"] for d in context["choices"].required}
        labelled = [f"{names[m]} ({m})" if m in names else m for m in missing]
        message = (
            f"Azure DevOps requires these fields for {data['work_item_type']} in "
            f"{data['project']}, and the template leaves them unset: {', '.join(labelled)}. "
            "Choose a value for each."
        )
        for ref in missing:
            errors[FIELD_PREFIX + ref] = ["Azure DevOps requires a value for this field."]
        return page(
            "template_form.html",
            exc.status,
            active="ui.templates",
            errors=errors,
            error=message,
            **context,
        )
    for key, messages in exc.details.items():
        if key in ("project", "work_item_type", "title_format", "connection_id"):
            errors[key] = list(messages)
    return _form_page(form, errors, message, exc.status)
