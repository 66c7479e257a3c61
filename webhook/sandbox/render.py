"""Render the sandbox model as Azure DevOps JSON (REST 7.1 bodies and hook resources)."""

from __future__ import annotations

import copy
from typing import Any

from .processes import FIELDS, FieldDef, TypeField, WorkItemTypeDef, field_by_name
from .state import COLLECTION_ID, Comment, Project, Revision, SandboxState, Update, WorkItem
from .wire import REVISED_DATE_OPEN, Identity, link
from .workitems import full_fields


def field_url(org_url: str, ref: str) -> str:
    """Return the URL of an organization field."""
    return f"{org_url}/_apis/wit/fields/{ref}"


def item_url(org_url: str, item: WorkItem) -> str:
    """Return the canonical REST URL of a work item (project id form, as ADO returns it)."""
    return f"{org_url}/{item.project.id}/_apis/wit/workItems/{item.id}"


def recyclebin_url(org_url: str, item: WorkItem) -> str:
    """Return the recycle-bin URL of a deleted work item."""
    return f"{org_url}/_apis/wit/recyclebin/{item.id}"


def legacy_html_url(org_url: str, item_id: int) -> str:
    """Return the `web/wi.aspx` link used in hook messages."""
    return f"{org_url}/web/wi.aspx?pcguid={COLLECTION_ID}&id={item_id}"


def _is_identity(ref: str) -> bool:
    fdef: FieldDef | None = FIELDS.get(ref.lower())
    return fdef is not None and fdef.kind == "identity"


def render_fields(
    values: dict[str, Any], org_url: str, *, identities: str = "ref"
) -> dict[str, Any]:
    """Render stored field values; identities become IdentityRef objects unless `"string"`."""
    out: dict[str, Any] = {}
    for ref, value in values.items():
        if identities == "ref" and value and _is_identity(ref):
            out[ref] = Identity.parse(str(value)).as_ref(org_url)
        else:
            out[ref] = value
    return out


def item_links(org_url: str, item: WorkItem, *, style: str = "rest") -> dict[str, Any]:
    """Return `_links` for a work item: `rest` (also created/commented) or `restored`."""
    base = item_url(org_url, item)
    project_base = f"{org_url}/{item.project.id}"
    type_link = link(f"{project_base}/_apis/wit/workItemTypes/{item.type.name}")
    if style == "restored":
        return {
            "self": link(base),
            "workItemUpdates": link(f"{base}/updates"),
            "workItemRevisions": link(f"{base}/revisions"),
            "workItemType": type_link,
            "fields": link(f"{org_url}/_apis/wit/fields"),
            "html": link(legacy_html_url(org_url, item.id)),
            "workItemHistory": link(f"{base}/history"),
        }
    return {
        "self": link(base),
        "workItemUpdates": link(f"{base}/updates"),
        "workItemRevisions": link(f"{base}/revisions"),
        "workItemComments": link(f"{base}/comments"),
        "html": link(f"{project_base}/_workitems/edit/{item.id}"),
        "workItemType": type_link,
        "fields": link(f"{project_base}/_apis/wit/fields"),
    }


def render_item(
    state: SandboxState,
    item: WorkItem,
    *,
    expand: str = "none",
    fields: list[str] | None = None,
    identities: str = "ref",
) -> dict[str, Any]:
    """Render a work item as GET/POST/PATCH `workitems` answer it."""
    org_url = state.org_url
    if fields:
        everything = full_fields(item)
        chosen = {}
        for ref in fields:
            fdef = field_by_name(ref)
            key = fdef.ref if fdef else ref
            if key in everything:
                chosen[key] = everything[key]
        values = chosen
    else:
        values = item.fields
    body: dict[str, Any] = {
        "id": item.id,
        "rev": item.rev,
        "fields": render_fields(values, org_url, identities=identities),
    }
    if expand.lower() in ("relations", "all") and item.relations:
        body["relations"] = copy.deepcopy(item.relations)
    body["_links"] = item_links(org_url, item)
    body["url"] = item_url(org_url, item)
    return body


def render_revision(
    state: SandboxState, item: WorkItem, revision: Revision, *, identities: str = "ref"
) -> dict[str, Any]:
    """Render one stored revision (`/revisions/{rev}` and hook `resource.revision`)."""
    base = item_url(state.org_url, item)
    body: dict[str, Any] = {
        "id": item.id,
        "rev": revision.rev,
        "fields": render_fields(revision.fields, state.org_url, identities=identities),
    }
    if revision.relations:
        body["relations"] = copy.deepcopy(revision.relations)
    body["_links"] = {
        "self": link(f"{base}/revisions/{revision.rev}"),
        "workItemRevisions": link(f"{base}/revisions"),
        "parent": link(base),
    }
    body["url"] = f"{base}/revisions/{revision.rev}"
    return body


def render_update(
    state: SandboxState, item: WorkItem, update: Update, *, identities: str = "ref"
) -> dict[str, Any]:
    """Render one stored update (`/updates/{id}`): deltas of the changed fields."""
    org_url = state.org_url
    base = item_url(org_url, item)
    fields: dict[str, Any] = {}
    for ref, entry in update.fields.items():
        if identities == "ref" and _is_identity(ref):
            fields[ref] = {k: Identity.parse(str(v)).as_ref(org_url) for k, v in entry.items()}
        else:
            fields[ref] = dict(entry)
    body: dict[str, Any] = {
        "id": update.id,
        "workItemId": item.id,
        "rev": update.rev,
        "revisedBy": update.by.as_revised_by(org_url),
        "revisedDate": _revised_at(item, update.rev),
        "fields": fields,
    }
    if update.relations:
        body["relations"] = copy.deepcopy(update.relations)
    body["_links"] = {
        "self": link(f"{base}/updates/{update.id}"),
        "workItemUpdates": link(f"{base}/updates"),
        "parent": link(base),
        "html": link(legacy_html_url(org_url, item.id)),
    }
    body["url"] = f"{base}/updates/{update.id}"
    return body


def _revised_at(item: WorkItem, rev: int) -> str:
    """Return when revision `rev` was superseded (open-ended for the latest)."""
    following = next((r for r in item.revisions if r.rev == rev + 1), None)
    return following.fields["System.ChangedDate"] if following else REVISED_DATE_OPEN


def render_comment(state: SandboxState, item: WorkItem, comment: Comment) -> dict[str, Any]:
    """Render a Comment (comments API 7.1-preview.4)."""
    org_url = state.org_url
    rendered = comment.text
    if comment.format == "markdown":
        from markdown_it import MarkdownIt

        rendered = MarkdownIt("commonmark").render(comment.text).strip()
    return {
        "workItemId": item.id,
        "id": comment.id,
        "version": comment.version,
        "text": comment.text,
        "renderedText": rendered,
        "format": comment.format,
        "createdBy": comment.created_by.as_ref(org_url),
        "createdDate": comment.created_date,
        "modifiedBy": comment.modified_by.as_ref(org_url),
        "modifiedDate": comment.modified_date,
        "isDeleted": comment.is_deleted,
        "mentions": [],
        "reactions": [],
        "url": f"{item_url(org_url, item)}/comments/{comment.id}",
    }


def render_deleted(
    state: SandboxState, item: WorkItem, *, with_resource: bool = False
) -> dict[str, Any]:
    """Render a WorkItemDelete (DELETE workitems/{id}, recycle bin GET/PATCH)."""
    org_url = state.org_url
    body: dict[str, Any] = {
        "id": item.id,
        "code": 200,
        "type": item.type.name,
        "name": item.fields.get("System.Title", ""),
        "project": item.project.name,
        "deletedDate": item.deleted_date,
        "deletedBy": item.deleted_by.as_string() if item.deleted_by else None,
        "url": recyclebin_url(org_url, item) if item.deleted else item_url(org_url, item),
        "resource": None,
    }
    if with_resource:
        body["resource"] = render_recycled(state, item)
    return body


def render_recycled(state: SandboxState, item: WorkItem) -> dict[str, Any]:
    """Render a work item as stored in the recycle bin (string identities, bin URLs)."""
    org_url = state.org_url
    return {
        "id": item.id,
        "rev": item.rev,
        "fields": render_fields(item.fields, org_url, identities="string"),
        "_links": {
            "self": link(recyclebin_url(org_url, item)),
            "workItemType": link(
                f"{org_url}/{item.project.id}/_apis/wit/workItemTypes/{item.type.name}"
            ),
            "fields": link(f"{org_url}/_apis/wit/fields"),
        },
        "url": recyclebin_url(org_url, item),
    }


def render_type_field(org_url: str, use: TypeField, *, expand: str = "none") -> dict[str, Any]:
    """Render a WorkItemTypeFieldWithReferences."""
    expand = expand.lower()
    allowed = [str(v) for v in use.allowed] if expand in ("allowedvalues", "all") else []
    body: dict[str, Any] = {
        "alwaysRequired": use.always_required,
        "defaultValue": use.default,
        "allowedValues": allowed,
        "dependentFields": [],
        "referenceName": use.field.ref,
        "name": use.field.name,
        "url": field_url(org_url, use.field.ref),
    }
    if use.field.help_text:
        body = {"helpText": use.field.help_text, **body}
    return body


def render_type(org_url: str, project: Project, wit: WorkItemTypeDef) -> dict[str, Any]:
    """Render a WorkItemType."""
    project_base = f"{org_url}/{project.id}"
    fields = [render_type_field(org_url, use, expand="all") for use in wit.fields.values()]
    names = [s.name for s in wit.states]
    return {
        "name": wit.name,
        "referenceName": wit.ref_name,
        "description": wit.description,
        "color": wit.color,
        "icon": {
            "id": wit.icon,
            "url": f"{org_url}/_apis/wit/workItemIcons/{wit.icon}?color={wit.color}",
        },
        "isDisabled": False,
        "xmlForm": "",
        "fields": [
            {k: f[k] for k in ("defaultValue", "alwaysRequired", "referenceName", "name", "url")}
            for f in fields
        ],
        "fieldInstances": [
            {k: f[k] for k in ("defaultValue", "alwaysRequired", "referenceName", "name", "url")}
            for f in fields
        ],
        "transitions": {
            "": [{"to": wit.initial_state.name, "actions": None}],
            **{
                name: [{"to": other, "actions": None} for other in names if other != name]
                for name in names
            },
        },
        "states": [render_state(s) for s in wit.states],
        "_links": {"self": link(f"{project_base}/_apis/wit/workItemTypes/{wit.name}")},
        "url": f"{project_base}/_apis/wit/workItemTypes/{wit.name}",
    }


def render_state(state_def: Any) -> dict[str, str]:
    """Render a WorkItemStateColor."""
    return {"name": state_def.name, "color": state_def.color, "category": state_def.category}


def render_project(org_url: str, project: Project, *, detailed: bool = False) -> dict[str, Any]:
    """Render a TeamProjectReference (or a TeamProject when `detailed`)."""
    body: dict[str, Any] = {
        "id": project.id,
        "name": project.name,
        "description": project.description,
        "url": f"{org_url}/_apis/projects/{project.id}",
        "state": "wellFormed",
        "revision": 11,
        "visibility": "private",
        "lastUpdateTime": project.last_update,
    }
    if detailed:
        body["_links"] = {
            "self": link(f"{org_url}/_apis/projects/{project.id}"),
            "collection": link(f"{org_url}/_apis/projectCollections/{COLLECTION_ID}"),
            "web": link(f"{org_url}/{project.name}"),
        }
        body["defaultTeam"] = {
            "id": project.id[::-1],
            "name": f"{project.name} Team",
            "url": f"{org_url}/_apis/projects/{project.id}/teams/{project.id[::-1]}",
        }
        body["capabilities"] = {
            "processTemplate": {
                "templateName": project.process.name,
                "templateTypeId": project.process.type_id,
            },
        }
    return body
