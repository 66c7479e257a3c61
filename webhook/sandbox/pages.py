"""The stand-in's web page for one work item, for a person: `{org}/{project}/_workitems/edit/{id}`.

Azure DevOps answers a work item's `_links.html` address with its web form. This page shows the
item (type, state, reason, title, fields, rendered body, comments) and lets a person move it to
another state with a reason, as a named user; the change goes through the same code as a
person's edit in `Sandbox.set_state` (rules checked, a new revision, `workitem.updated` sent to
the service hooks). No authentication: the stand-in runs on loopback for tests and demos.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, redirect, render_template, request
from werkzeug.wrappers import Response

from .state import DEFAULT_PERSON, ORG_NAME, SandboxState
from .wire import Identity, SandboxError
from .workitems import set_fields

bp = Blueprint("pages", __name__, template_folder="templates")

SHOWN_FIELDS = (
    ("System.AssignedTo", "Assigned to"),
    ("System.AreaPath", "Area"),
    ("System.IterationPath", "Iteration"),
    ("System.Tags", "Tags"),
    ("Microsoft.VSTS.Common.Severity", "Severity"),
    ("Microsoft.VSTS.Common.Priority", "Priority"),
    ("System.ChangedBy", "Changed by"),
    ("System.ChangedDate", "Changed"),
)
BODY_FIELDS = ("Microsoft.VSTS.TCM.ReproSteps", "System.Description")

PAGE = "sandbox_work_item.html"


def _state() -> SandboxState:
    found: SandboxState = current_app.extensions["sandbox_state"]
    return found


def _render(
    state: SandboxState, project: str, item_id: int, status: int = 200, **extra: Any
) -> Response:
    with state.lock:
        proj = state.project(project)
        item = state.item(item_id, include_deleted=True)
        if item.project is not proj:
            raise SandboxError(
                404, f"TF401232: Work item {item_id} does not exist.", "WorkItemNotFound"
            )
        fields = dict(item.fields)
        current = fields.get("System.State")
        category = next((s.category for s in item.type.states if s.name == current), "")
        body = next((fields[f] for f in BODY_FIELDS if fields.get(f)), "")
        html = render_template(
            PAGE,
            org=ORG_NAME,
            item=item,
            fields=fields,
            category=category,
            shown=SHOWN_FIELDS,
            body=body,
            comments=[c for c in item.comments if not c.is_deleted],
            chosen_state=extra.pop("chosen_state", current),
            reason=extra.pop("reason", ""),
            person=extra.pop("person", DEFAULT_PERSON.as_string()),
            **extra,
        )
    return Response(html, status=status, content_type="text/html; charset=utf-8")


@bp.get(f"/{ORG_NAME}/<project>/_workitems/edit/<int:item_id>")
def work_item_page(project: str, item_id: int) -> Response:
    """The work item's web page."""
    return _render(_state(), project, item_id, saved=request.args.get("saved") == "1")


@bp.post(f"/{ORG_NAME}/<project>/_workitems/edit/<int:item_id>")
def change_state(project: str, item_id: int) -> Response:
    """Move the work item to the chosen state (with a reason) as the named person."""
    state = _state()
    new_state = request.form.get("state", "").strip()
    reason = request.form.get("reason", "").strip()
    person = request.form.get("changed_by", "").strip() or DEFAULT_PERSON.as_string()
    values: dict[str, Any] = {"System.State": new_state}
    if reason:
        values["System.Reason"] = reason
    try:
        with state.lock:
            proj = state.project(project)
            item = state.item(item_id)
            if item.project is not proj:
                raise SandboxError(
                    404, f"TF401232: Work item {item_id} does not exist.", "WorkItemNotFound"
                )
            set_fields(state, item, values, Identity.parse(person))
    except SandboxError as exc:
        return _render(
            state,
            project,
            item_id,
            400,
            error=exc.message,
            chosen_state=new_state,
            reason=reason,
            person=person,
        )
    return redirect(f"{request.path}?saved=1", code=303)
