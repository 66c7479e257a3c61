"""Admin: Azure DevOps connections, validated against Azure DevOps before saving."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from webhook.ado import AdoAuthError, AdoError, AdoRateLimited
from webhook.api.ado_errors import ado_errors, paused_error
from webhook.api.auth import require_admin
from webhook.api.requests import load_body, load_query, page_body
from webhook.domain.orgurl import OrgUrlError
from webhook.errors import Conflict, NotFound, ValidationFailed
from webhook.gateway import (
    AdoGateway,
    OrganizationNotAllowed,
    OrganizationPaused,
    required_field_details,
    type_info_from_ado,
)
from webhook.openapi import doc
from webhook.schemas import (
    ConnectionCreatedSchema,
    ConnectionCreateSchema,
    ConnectionPageSchema,
    ConnectionPatchSchema,
    ConnectionSchema,
    ConnectionTestSchema,
    PageQuerySchema,
    ProjectPageSchema,
    WorkItemTypePageSchema,
    path_name_problem,
)
from webhook.services import get_services
from webhook.storage.errors import AlreadyExists, InUse, Missing
from webhook.storage.types import ConnectionRecord

_connection_schema = ConnectionSchema()
_created_schema = ConnectionCreatedSchema()
bp = Blueprint("admin_connections", __name__, url_prefix="/admin/connections")
bp.before_request(require_admin)


def _gateway() -> AdoGateway:
    return get_services().gateway


def _org(url: str) -> str:
    try:
        return _gateway().parse_org(url).canonical
    except OrgUrlError as exc:
        raise ValidationFailed(
            str(exc), code="organization_url_not_allowed", details={"organization_url": [str(exc)]}
        ) from None


def _projects(organization_url: str, auth: dict[str, Any]) -> list[dict[str, str]]:
    gateway = _gateway()
    client = gateway.new_client(gateway.parse_org(organization_url), auth)
    try:
        with ado_errors():
            return [{"id": p["id"], "name": p["name"]} for p in client.list_projects()]
    finally:
        client.close()


def _connection(connection_id: int) -> ConnectionRecord:
    try:
        return get_services().store.connections.get_connection(connection_id)
    except Missing as exc:
        raise NotFound(str(exc)) from None


@bp.post("")
@doc(
    summary="Create a connection (validated by listing projects)",
    tag="connections",
    body=ConnectionCreateSchema,
    responses={201: ConnectionCreatedSchema},
)
def create_connection() -> ResponseReturnValue:
    """Validate the credentials against Azure DevOps, then save them encrypted."""
    return jsonify(create_checked_connection(load_body(ConnectionCreateSchema()))), 201


def create_checked_connection(data: dict[str, Any]) -> dict[str, Any]:
    """Validate loaded ConnectionCreateSchema data against Azure DevOps, then save it.

    Returns the connection with its `projects`; raises ValidationFailed (organization URL),
    ApiError `ado_auth_failed`, BadGateway or Conflict `connection_exists`. Shared with the UI.
    """
    org = _org(data["organization_url"])
    projects = _projects(org, data["auth"])
    try:
        created = get_services().store.connections.create_connection(
            data["name"], org, data["auth"]
        )
    except AlreadyExists as exc:
        raise Conflict(str(exc), code="connection_exists") from None
    dumped: dict[str, Any] = _created_schema.dump({**asdict(created), "projects": projects})
    return dumped


@bp.get("")
@doc(
    summary="List connections",
    tag="connections",
    query=PageQuerySchema,
    responses={200: ConnectionPageSchema},
)
def list_connections() -> ResponseReturnValue:
    """Connections without credentials."""
    q = load_query(PageQuerySchema())
    items, total = get_services().store.connections.list_connections(q["page"], q["per_page"])
    return jsonify(
        page_body(_connection_schema.dump(items, many=True), total, q["page"], q["per_page"])
    )


@bp.get("/<int:connection_id>")
@doc(summary="One connection", tag="connections", responses={200: ConnectionSchema})
def get_connection(connection_id: int) -> ResponseReturnValue:
    """One connection without credentials."""
    return jsonify(_connection_schema.dump(_connection(connection_id)))


@bp.patch("/<int:connection_id>")
@doc(
    summary="Rename or rotate credentials (validated first)",
    tag="connections",
    body=ConnectionPatchSchema,
    responses={200: ConnectionSchema},
)
def patch_connection(connection_id: int) -> ResponseReturnValue:
    """Change name, organization URL or credentials; new credentials are validated first."""
    data = load_body(ConnectionPatchSchema())
    store = get_services().store
    current = _connection(connection_id)
    if "organization_url" in data or "auth" in data:
        org = _org(data.get("organization_url", current.organization_url))
        auth = data.get("auth") or store.connections.connection_credentials(connection_id)[1]
        _projects(org, auth)
        data["organization_url"] = org
        data["auth"] = auth
    try:
        updated = store.connections.update_connection(
            connection_id,
            name=data.get("name"),
            auth=data.get("auth"),
            organization_url=data.get("organization_url"),
        )
    except AlreadyExists as exc:
        raise Conflict(str(exc), code="connection_exists") from None
    return jsonify(_connection_schema.dump(updated))


@bp.delete("/<int:connection_id>")
@doc(
    summary="Delete a connection (409 while templates use it)",
    tag="connections",
    responses={204: None},
)
def delete_connection(connection_id: int) -> ResponseReturnValue:
    """Delete a connection that no template uses."""
    try:
        get_services().store.connections.delete_connection(connection_id)
    except Missing as exc:
        raise NotFound(str(exc)) from None
    except InUse as exc:
        raise Conflict(str(exc), code="connection_in_use") from None
    return "", 204


@bp.post("/<int:connection_id>/test")
@doc(
    summary="Re-validate the connection now",
    tag="connections",
    responses={200: ConnectionTestSchema},
)
def test_connection(connection_id: int) -> ResponseReturnValue:
    """List projects with the stored credentials and say whether it worked."""
    return jsonify(connection_test_result(connection_id))


def connection_test_result(connection_id: int) -> dict[str, Any]:
    """`{"ok", "message"}` after listing projects with the stored credentials (NotFound if
    the connection does not exist). Shared with the UI's Test button."""
    _connection(connection_id)
    try:
        count = len(_gateway().client(connection_id).list_projects())
    except (OrganizationPaused, AdoRateLimited) as exc:
        raise paused_error(exc) from None  # 503 ado_paused with Retry-After, like every call
    except AdoAuthError as exc:
        return {"ok": False, "message": f"credentials rejected: {exc.message}"}
    except OrganizationNotAllowed as exc:
        return {"ok": False, "message": exc.message}
    except AdoError as exc:
        return {"ok": False, "message": f"Azure DevOps unreachable: {exc.message}"}
    return {"ok": True, "message": f"connected; {count} project(s) visible"}


@bp.get("/<int:connection_id>/projects")
@doc(
    summary="Projects of the organization",
    tag="connections",
    query=PageQuerySchema,
    responses={200: ProjectPageSchema},
)
def list_projects(connection_id: int) -> ResponseReturnValue:
    """Projects visible to the connection."""
    q = load_query(PageQuerySchema())
    _connection(connection_id)
    with ado_errors():
        projects = _gateway().client(connection_id).list_projects()
    items = [{"id": p["id"], "name": p["name"]} for p in projects]
    start = (q["page"] - 1) * q["per_page"]
    return jsonify(
        page_body(items[start : start + q["per_page"]], len(items), q["page"], q["per_page"])
    )


@bp.get("/<int:connection_id>/projects/<project>/work-item-types")
@doc(
    summary="Work item types with states and required fields",
    tag="connections",
    query=PageQuerySchema,
    responses={200: WorkItemTypePageSchema},
)
def list_work_item_types(connection_id: int, project: str) -> ResponseReturnValue:
    """Types of a project with their states (name, category) and always-required fields."""
    q = load_query(PageQuerySchema())
    _connection(connection_id)
    problem = path_name_problem(project)
    if problem is not None:  # `..` would reach outside the organization's path
        raise ValidationFailed(
            f"project name {project[:100]!r}: {problem}", details={"project": [problem]}
        )
    gateway = _gateway()
    client = gateway.client(connection_id)
    with ado_errors(not_found=f"project {project!r}"):
        types = [t for t in client.list_work_item_types(project) if not t.get("isDisabled")]
        start = (q["page"] - 1) * q["per_page"]
        items = []
        for t in types[start : start + q["per_page"]]:
            type_fields = client.get_work_item_type_fields(project, t["name"])
            info = type_info_from_ado(
                t["name"], client.get_work_item_type_states(project, t["name"]), type_fields
            )
            items.append(
                {
                    "name": info.name,
                    "states": [{"name": s.name, "category": s.category} for s in info.states],
                    "required_fields": sorted(info.required_fields),
                    "required_field_details": required_field_details(type_fields),
                }
            )
    return jsonify(page_body(items, len(types), q["page"], q["per_page"]))
