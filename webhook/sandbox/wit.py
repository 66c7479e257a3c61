"""Work item tracking routes (REST 7.1): types, work items, batch, recycle bin, comments, WIQL."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request

from . import wiql
from .auth import api_version, caller, get_state, require_auth
from .processes import field_by_name
from .render import (
    field_url,
    render_comment,
    render_deleted,
    render_item,
    render_revision,
    render_state,
    render_type,
    render_type_field,
    render_update,
)
from .state import Project, SandboxState, WorkItem, not_found
from .wire import SandboxError, fmt_date, json_response, parse_date, utcnow
from .workitems import (
    add_comment,
    create_item,
    delete_item,
    edit_comment,
    full_fields,
    restore_item,
    update_item,
)

bp = Blueprint("wit", __name__)
bp.before_request(require_auth)

MAX_IDS = 200
ORG = "/contoso"
PROJECT = "/contoso/<project>"


def route(rule: str, methods: list[str], *, org_level: bool = True) -> Callable[..., Any]:
    """Register a view at `/contoso/{project}{rule}` and (optionally) `/contoso{rule}`."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        bp.add_url_rule(PROJECT + rule, view_func=view, methods=methods)
        if org_level:
            bp.add_url_rule(
                ORG + rule, view_func=view, methods=methods, endpoint=f"{view.__name__}_org"
            )
        return view

    return decorate


def flag(name: str) -> bool:
    """Read a boolean query parameter."""
    return request.args.get(name, "false").strip().lower() == "true"


def read_json() -> Any:
    """Parse the request body as JSON, or raise a 400."""
    raw = request.get_data(cache=True)
    try:
        return json.loads(raw or b"null")
    except ValueError:
        raise SandboxError(
            400, "The request body could not be parsed as JSON.", "VssRequestContentException"
        ) from None


def require_patch_content_type() -> None:
    """Refuse anything but `application/json-patch+json` (AZURE_DEVOPS.md §3.1)."""
    if request.mimetype != "application/json-patch+json":
        raise SandboxError(
            415,
            f'The request indicated a Content-Type of "{request.content_type or ""}" for method '
            f'type "{request.method}" which is not supported. Valid content types for this '
            "method are: application/json-patch+json.",
            "VssRequestContentTypeNotSupportedException",
        )


def scoped_project(state: SandboxState, project: str | None) -> Project | None:
    """Resolve the optional `{project}` URL segment (404 if it names no project)."""
    return state.project(project) if project is not None else None


def _item_as_of(item: WorkItem, as_of: str | None) -> WorkItem | None:
    if not as_of:
        return item
    when = parse_date(as_of)
    chosen = None
    for revision in item.revisions:
        if parse_date(revision.fields["System.ChangedDate"]) <= when:
            chosen = revision
    if chosen is None:
        return None
    snapshot = copy.copy(item)
    snapshot.rev = chosen.rev
    snapshot.fields = dict(chosen.fields)
    snapshot.relations = copy.deepcopy(chosen.relations)
    return snapshot


def _parse_ids(raw: Any) -> list[int]:
    try:
        ids = [int(str(v).strip()) for v in raw if str(v).strip()]
    except (TypeError, ValueError):
        raise SandboxError(
            400,
            "The ids parameter must be a list of work item ids.",
            "VssPropertyValidationException",
        ) from None
    if not ids:
        raise SandboxError(
            400, "At least one work item id is required.", "VssPropertyValidationException"
        )
    if len(ids) > MAX_IDS:
        raise SandboxError(
            400,
            f"The number of work item ids requested ({len(ids)}) exceeds the limit of {MAX_IDS}.",
            "VssPropertyValidationException",
        )
    return ids


def _read_many(
    state: SandboxState,
    ids: list[int],
    *,
    fields: list[str] | None,
    expand: str | None,
    error_policy: str,
    as_of: str | None,
) -> dict[str, Any]:
    if fields and expand and expand.lower() != "none":
        raise SandboxError(
            400,
            "The expand parameter can not be used with the fields parameter.",
            "ConflictingParametersException",
        )
    for ref in fields or []:
        if field_by_name(ref) is None:
            raise SandboxError(
                400, f"TF51535: Cannot find field {ref}.", "WorkItemFieldInvalidException"
            )
    values: list[dict[str, Any] | None] = []
    for item_id in ids:
        found = state.items.get(item_id)
        snapshot = _item_as_of(found, as_of) if found and not found.deleted else None
        if snapshot is None:
            if error_policy.lower() == "omit":
                values.append(None)
                continue
            raise not_found(item_id)
        values.append(render_item(state, snapshot, expand=expand or "none", fields=fields))
    return {"count": len(values), "value": values}


# ---- work item types -------------------------------------------------------------------


@route("/_apis/wit/workitemtypes", ["GET"], org_level=False)
@api_version()
def list_types(project: str) -> Response:
    """List the project's work item types."""
    state = get_state()
    with state.lock:
        proj = state.project(project)
        value = [render_type(state.org_url, proj, t) for t in proj.process.types.values()]
    return json_response({"count": len(value), "value": value})


@route("/_apis/wit/workitemtypes/<type_name>", ["GET"], org_level=False)
@api_version()
def get_type(project: str, type_name: str) -> Response:
    """Return one work item type."""
    state = get_state()
    with state.lock:
        proj = state.project(project)
        return json_response(
            render_type(state.org_url, proj, state.work_item_type(proj, type_name))
        )


@route("/_apis/wit/workitemtypes/<type_name>/states", ["GET"], org_level=False)
@api_version()
def list_states(project: str, type_name: str) -> Response:
    """List a type's states with their categories."""
    state = get_state()
    with state.lock:
        wit = state.work_item_type(state.project(project), type_name)
    value = [render_state(s) for s in wit.states]
    return json_response({"count": len(value), "value": value})


@route("/_apis/wit/workitemtypes/<type_name>/fields", ["GET"], org_level=False)
@api_version()
def list_type_fields(project: str, type_name: str) -> Response:
    """List a type's fields; `$expand=allowedValues|all` fills allowedValues."""
    state = get_state()
    expand = request.args.get("$expand", "none")
    with state.lock:
        wit = state.work_item_type(state.project(project), type_name)
    value = [render_type_field(state.org_url, use, expand=expand) for use in wit.fields.values()]
    return json_response({"count": len(value), "value": value})


@route("/_apis/wit/workitemtypes/<type_name>/fields/<ref>", ["GET"], org_level=False)
@api_version()
def get_type_field(project: str, type_name: str, ref: str) -> Response:
    """Return one field of a type."""
    state = get_state()
    with state.lock:
        wit = state.work_item_type(state.project(project), type_name)
    use = wit.field(ref)
    if use is None:
        raise SandboxError(
            404, f"TF51535: Cannot find field {ref}.", "WorkItemFieldInvalidException"
        )
    return json_response(
        render_type_field(state.org_url, use, expand=request.args.get("$expand", "none"))
    )


# ---- work items --------------------------------------------------------------------------


@route("/_apis/wit/workitems/$<type_name>", ["POST"], org_level=False)
@api_version()
def create(project: str, type_name: str) -> Response:
    """Create a work item from a JSON Patch document."""
    state = get_state()
    require_patch_content_type()
    ops = read_json()
    with state.lock:
        proj = state.project(project)
        wit = state.work_item_type(proj, type_name)
        item = create_item(
            state,
            proj,
            wit,
            ops,
            caller(),
            validate_only=flag("validateOnly"),
            bypass_rules=flag("bypassRules"),
        )
        return json_response(render_item(state, item, expand=request.args.get("$expand", "all")))


@route("/_apis/wit/workitems/<int:item_id>", ["GET"])
@api_version()
def get_item(item_id: int, project: str | None = None) -> Response:
    """Return one work item (`$expand`, `fields`, `asOf`)."""
    state = get_state()
    fields = [f for f in request.args.get("fields", "").split(",") if f.strip()] or None
    with state.lock:
        scoped_project(state, project)
        body = _read_many(
            state,
            [item_id],
            fields=fields,
            expand=request.args.get("$expand"),
            error_policy="fail",
            as_of=request.args.get("asOf"),
        )
    return json_response(body["value"][0])


@route("/_apis/wit/workitems/<int:item_id>", ["PATCH"])
@api_version()
def patch_item(item_id: int, project: str | None = None) -> Response:
    """Update a work item with a JSON Patch document."""
    state = get_state()
    require_patch_content_type()
    ops = read_json()
    with state.lock:
        scoped_project(state, project)
        item = update_item(
            state,
            state.item(item_id),
            ops,
            caller(),
            validate_only=flag("validateOnly"),
            bypass_rules=flag("bypassRules"),
        )
        return json_response(render_item(state, item, expand=request.args.get("$expand", "all")))


@route("/_apis/wit/workitems/<int:item_id>", ["DELETE"])
@api_version()
def delete(item_id: int, project: str | None = None) -> Response:
    """Move a work item to the recycle bin (`destroy=true` deletes it for good)."""
    state = get_state()
    with state.lock:
        scoped_project(state, project)
        item = state.item(item_id)
        destroy = flag("destroy")
        delete_item(state, item, caller(), destroy=destroy)
        body = render_deleted(state, item)
    if destroy:
        return Response(status=204)
    return json_response(body)


@route("/_apis/wit/workitems", ["GET"])
@api_version()
def list_items(project: str | None = None) -> Response:
    """Return several work items: `ids=1,2` (at most 200)."""
    state = get_state()
    ids = _parse_ids(request.args.get("ids", "").split(","))
    fields = [f for f in request.args.get("fields", "").split(",") if f.strip()] or None
    with state.lock:
        scoped_project(state, project)
        body = _read_many(
            state,
            ids,
            fields=fields,
            expand=request.args.get("$expand"),
            error_policy=request.args.get("errorPolicy", "fail"),
            as_of=request.args.get("asOf"),
        )
    return json_response(body)


@route("/_apis/wit/workitemsbatch", ["POST"])
@api_version()
def batch(project: str | None = None) -> Response:
    """Return several work items: body `{ids, fields?, $expand?, errorPolicy?, asOf?}`."""
    state = get_state()
    body = read_json()
    if not isinstance(body, dict):
        raise SandboxError(
            400,
            "The request body must be a WorkItemBatchGetRequest.",
            "VssPropertyValidationException",
        )
    ids = _parse_ids(body.get("ids") or [])
    fields = body.get("fields") or None
    with state.lock:
        scoped_project(state, project)
        result = _read_many(
            state,
            ids,
            fields=fields,
            expand=body.get("$expand"),
            error_policy=str(body.get("errorPolicy") or "fail"),
            as_of=body.get("asOf"),
        )
    return json_response(result)


@route("/_apis/wit/workitems/<int:item_id>/updates", ["GET"])
@api_version()
def list_updates(item_id: int, project: str | None = None) -> Response:
    """List a work item's updates."""
    state = get_state()
    with state.lock:
        scoped_project(state, project)
        item = state.item(item_id)
        value = [render_update(state, item, u) for u in item.updates]
    return json_response({"count": len(value), "value": value})


@route("/_apis/wit/workitems/<int:item_id>/updates/<int:number>", ["GET"])
@api_version()
def get_update(item_id: int, number: int, project: str | None = None) -> Response:
    """Return one update of a work item."""
    state = get_state()
    with state.lock:
        scoped_project(state, project)
        item = state.item(item_id)
        if not 1 <= number <= len(item.updates):
            raise not_found(item_id)
        return json_response(render_update(state, item, item.updates[number - 1]))


@route("/_apis/wit/workitems/<int:item_id>/revisions", ["GET"])
@api_version()
def list_revisions(item_id: int, project: str | None = None) -> Response:
    """List a work item's revisions."""
    state = get_state()
    with state.lock:
        scoped_project(state, project)
        item = state.item(item_id)
        value = [render_revision(state, item, r) for r in item.revisions]
    return json_response({"count": len(value), "value": value})


@route("/_apis/wit/workitems/<int:item_id>/revisions/<int:rev>", ["GET"])
@api_version()
def get_revision(item_id: int, rev: int, project: str | None = None) -> Response:
    """Return one revision of a work item."""
    state = get_state()
    with state.lock:
        scoped_project(state, project)
        item = state.item(item_id)
        found = next((r for r in item.revisions if r.rev == rev), None)
        if found is None:
            raise not_found(item_id)
        return json_response(render_revision(state, item, found))


# ---- recycle bin ---------------------------------------------------------------------------


def _deleted_item(state: SandboxState, item_id: int) -> WorkItem:
    item = state.items.get(item_id)
    if item is None or not item.deleted:
        raise not_found(item_id)
    return item


@route("/_apis/wit/recyclebin", ["GET"])
@api_version()
def list_recyclebin(project: str | None = None) -> Response:
    """List deleted work items (shallow references)."""
    state = get_state()
    with state.lock:
        proj = scoped_project(state, project)
        value = [
            {"id": i.id, "url": render_deleted(state, i)["url"]}
            for i in state.items.values()
            if i.deleted and (proj is None or i.project is proj)
        ]
    return json_response({"count": len(value), "value": value})


@route("/_apis/wit/recyclebin/<int:item_id>", ["GET"])
@api_version()
def get_recyclebin(item_id: int, project: str | None = None) -> Response:
    """Return a deleted work item."""
    state = get_state()
    with state.lock:
        scoped_project(state, project)
        return json_response(
            render_deleted(state, _deleted_item(state, item_id), with_resource=True)
        )


@route("/_apis/wit/recyclebin/<int:item_id>", ["PATCH"])
@api_version()
def patch_recyclebin(item_id: int, project: str | None = None) -> Response:
    """Restore a deleted work item: body `{"IsDeleted": false}`."""
    state = get_state()
    body = read_json()
    if not isinstance(body, dict):
        raise SandboxError(
            400, 'The request body must be {"IsDeleted": false}.', "VssPropertyValidationException"
        )
    is_deleted = next((v for k, v in body.items() if k.lower() == "isdeleted"), None)
    if is_deleted is not False:
        raise SandboxError(
            400,
            'Only {"IsDeleted": false} (restore) is supported.',
            "VssPropertyValidationException",
        )
    with state.lock:
        scoped_project(state, project)
        item = _deleted_item(state, item_id)
        deleted_view = render_deleted(state, item)
        restore_item(state, item, caller())
        deleted_view["url"] = render_item(state, item)["url"]
        deleted_view["resource"] = render_item(state, item, identities="string")
        return json_response(deleted_view)


@route("/_apis/wit/recyclebin/<int:item_id>", ["DELETE"])
@api_version()
def destroy_recyclebin(item_id: int, project: str | None = None) -> Response:
    """Destroy a deleted work item permanently."""
    state = get_state()
    with state.lock:
        scoped_project(state, project)
        state.items.pop(_deleted_item(state, item_id).id, None)
    return Response(status=204)


# ---- comments (7.1-preview.4) --------------------------------------------------------------


def _comment(item: WorkItem, comment_id: int, *, include_deleted: bool = False) -> Any:
    found = next((c for c in item.comments if c.id == comment_id), None)
    if found is None or (found.is_deleted and not include_deleted):
        raise SandboxError(
            404,
            f"TF401213: The comment with id {comment_id} does not exist.",
            "CommentNotFoundException",
        )
    return found


def _comment_format() -> str:
    fmt = request.args.get("format", "html").strip().lower()
    if fmt not in ("html", "markdown"):
        raise SandboxError(
            400, f"The comment format '{fmt}' is not valid.", "VssPropertyValidationException"
        )
    return fmt


def _comment_text() -> str:
    body = read_json()
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise SandboxError(
            400, "The comment text cannot be empty.", "VssPropertyValidationException"
        )
    return text


@route("/_apis/wit/workitems/<int:item_id>/comments", ["POST"], org_level=False)
@api_version(preview=4)
def post_comment(project: str, item_id: int) -> Response:
    """Add a comment (`format=markdown|html`, default html)."""
    state = get_state()
    fmt = _comment_format()
    text = _comment_text()
    with state.lock:
        state.project(project)
        item = state.item(item_id)
        comment = add_comment(state, item, text, fmt, caller())
        return json_response(render_comment(state, item, comment))


@route("/_apis/wit/workitems/<int:item_id>/comments", ["GET"], org_level=False)
@api_version(preview=4)
def list_comments(project: str, item_id: int) -> Response:
    """List comments: `$top`, `continuationToken`, `order=asc|desc`, `includeDeleted`."""
    state = get_state()
    try:
        top = int(request.args.get("$top", "200"))
        start = int(request.args.get("continuationToken", "0"))
    except ValueError:
        raise SandboxError(
            400, "$top and continuationToken must be integers.", "VssPropertyValidationException"
        ) from None
    order = request.args.get("order", "desc").lower()
    with state.lock:
        state.project(project)
        item = state.item(item_id)
        comments = [c for c in item.comments if flag("includeDeleted") or not c.is_deleted]
        if order != "asc":
            comments.reverse()
        page = comments[start : start + top]
        base = f"{render_item(state, item)['url']}/comments"
        body: dict[str, Any] = {
            "totalCount": len(comments),
            "count": len(page),
            "comments": [render_comment(state, item, c) for c in page],
            "url": base,
        }
        if start + top < len(comments):
            token = str(start + top)
            body["continuationToken"] = token
            body["nextPage"] = f"{base}?continuationToken={token}&$top={top}&order={order}"
    return json_response(body)


@route("/_apis/wit/workitems/<int:item_id>/comments/<int:comment_id>", ["GET"], org_level=False)
@api_version(preview=4)
def get_comment(project: str, item_id: int, comment_id: int) -> Response:
    """Return one comment."""
    state = get_state()
    with state.lock:
        state.project(project)
        item = state.item(item_id)
        comment = _comment(item, comment_id, include_deleted=flag("includeDeleted"))
        return json_response(render_comment(state, item, comment))


@route("/_apis/wit/workitems/<int:item_id>/comments/<int:comment_id>", ["PATCH"], org_level=False)
@api_version(preview=4)
def patch_comment(project: str, item_id: int, comment_id: int) -> Response:
    """Edit a comment's text (its version goes up)."""
    state = get_state()
    text = _comment_text()
    with state.lock:
        state.project(project)
        item = state.item(item_id)
        comment = edit_comment(_comment(item, comment_id), text, caller())
        return json_response(render_comment(state, item, comment))


@route("/_apis/wit/workitems/<int:item_id>/comments/<int:comment_id>", ["DELETE"], org_level=False)
@api_version(preview=4)
def delete_comment(project: str, item_id: int, comment_id: int) -> Response:
    """Delete a comment (kept, marked isDeleted)."""
    state = get_state()
    with state.lock:
        state.project(project)
        item = state.item(item_id)
        _comment(item, comment_id).is_deleted = True
    return Response(status=204)


# ---- WIQL ------------------------------------------------------------------------------------


@route("/_apis/wit/wiql", ["POST"])
@api_version()
def query(project: str | None = None) -> Response:
    """Run a flat WIQL query; ids only (`$top`, `timePrecision`)."""
    state = get_state()
    body = read_json()
    text = body.get("query") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise SandboxError(
            400, 'The query body must be {"query": "SELECT ..."}.', "VssPropertyValidationException"
        )
    parsed = wiql.parse(text)
    try:
        top = int(request.args["$top"]) if "$top" in request.args else None
    except ValueError:
        raise SandboxError(
            400, "$top must be an integer.", "VssPropertyValidationException"
        ) from None
    with state.lock:
        proj = scoped_project(state, project)
        ctx = wiql.Context(
            project=proj.name if proj else None,
            me=caller(),
            time_precision=flag("timePrecision"),
            now=utcnow(),
        )
        rows = [full_fields(i) for i in state.items.values() if not i.deleted]
        found = wiql.run(parsed, rows, ctx)
        limit = state.wiql_max_results
        org_url = state.org_url
    if len(found) > limit:
        raise SandboxError(
            400,
            f"VS402337: The number of work items returned exceeds the size limit of {limit}. "
            "Change the query to return fewer work items.",
            "WorkItemTrackingQueryResultSizeLimitExceededException",
        )
    if top is not None:
        found = found[:top]

    def column(ref: wiql.FieldRef) -> dict[str, str]:
        assert ref.definition is not None
        return {
            "referenceName": ref.definition.ref,
            "name": ref.definition.name,
            "url": field_url(org_url, ref.definition.ref),
        }

    result: dict[str, Any] = {
        "queryType": "flat",
        "queryResultType": "workItem",
        "asOf": fmt_date(utcnow()),
        "columns": [column(c) for c in parsed.columns],
    }
    if parsed.order:
        result["sortColumns"] = [
            {"field": column(ref), "descending": desc} for ref, desc in parsed.order
        ]
    result["workItems"] = [
        {"id": row["System.Id"], "url": f"{org_url}/_apis/wit/workItems/{row['System.Id']}"}
        for row in found
    ]
    return json_response(result)
