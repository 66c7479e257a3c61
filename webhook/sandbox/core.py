"""Core routes: projects, with `$top` / `continuationToken` paging (AZURE_DEVOPS.md §6.1)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from .auth import api_version, get_state, require_auth
from .render import render_project
from .wire import SandboxError, json_response

bp = Blueprint("core", __name__)
bp.before_request(require_auth)


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SandboxError(
            400,
            f"The value '{raw}' of parameter {name} is not an integer.",
            "VssPropertyValidationException",
        ) from None
    if value < 0:
        raise SandboxError(
            400, f"The parameter {name} must not be negative.", "VssPropertyValidationException"
        )
    return value


@bp.get("/contoso/_apis/projects")
@api_version()
def list_projects() -> Response:
    """List projects; the next page's token comes in the `x-ms-continuationtoken` header."""
    state = get_state()
    start = _int_arg("continuationToken", 0) + _int_arg("$skip", 0)
    with state.lock:
        page_size = state.projects_page_size
        limit = min(_int_arg("$top", page_size) or page_size, page_size)
        projects = sorted(state.projects.values(), key=lambda p: p.name.lower())
        value = [render_project(state.org_url, p) for p in projects[start : start + limit]]
        more = start + limit < len(projects)
    headers = {"x-ms-continuationtoken": str(start + limit)} if more else {}
    return json_response({"count": len(value), "value": value}, headers=headers)


@bp.get("/contoso/_apis/projects/<project>")
@api_version()
def get_project(project: str) -> Response:
    """Return one project by id or name."""
    state = get_state()
    with state.lock:
        return json_response(render_project(state.org_url, state.project(project), detailed=True))
