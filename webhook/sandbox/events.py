"""Service hook events: subscription matching and payloads (AZURE_DEVOPS.md §1).

Payload shapes follow /work/shared/azure-devops-samples/workitem.*.json for resourceVersion
"1.0" (identities as `"Name <mail>"` strings, `revisedBy` an object). Other resource versions
get IdentityRef objects and no relation data, as aggregator-cli observed.
"""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

from .render import (
    item_links,
    item_url,
    legacy_html_url,
    recyclebin_url,
    render_fields,
    render_recycled,
    render_revision,
    render_update,
)
from .state import ACCOUNT_ID, COLLECTION_ID, Event, SandboxState, Subscription
from .wire import fmt_event_date, utcnow
from .workitems import split_tags

LATEST_RESOURCE_VERSION = "5.1-preview.3"


def _split(value: str) -> list[str]:
    return [v.strip().lower() for v in re.split(r"[,;]", value or "") if v.strip()]


def matches(sub: Subscription, event: Event) -> bool:
    """Tell whether `event` passes the subscription's publisher-input filters."""
    if sub.event_type != event.event_type:
        return False
    inputs = {k: (v or "") for k, v in sub.publisher_inputs.items()}
    item = event.item
    if inputs.get("projectId", "").lower() != item.project.id.lower():
        return False
    wanted_type = inputs.get("workItemType", "").strip()
    if wanted_type and wanted_type.lower() != item.type.name.lower():
        return False
    area = inputs.get("areaPath", "").strip().strip("\\").lower()
    item_area = str(item.fields.get("System.AreaPath", "")).lower()
    if area and item_area != area and not item_area.startswith(area + "\\"):
        return False
    tag = inputs.get("tag", "").strip().lower()
    if tag and tag not in {t.lower() for t in split_tags(item.fields.get("System.Tags"))}:
        return False
    changed = _split(inputs.get("changedFields", ""))
    if (
        event.event_type == "workitem.updated"
        and changed
        and event.update is not None
        and not {ref.lower() for ref in event.update.fields} & set(changed)
    ):
        return False
    pattern = inputs.get("commentPattern", "").strip().lower()
    return not (
        event.event_type == "workitem.commented"
        and pattern
        and event.comment
        and pattern not in event.comment.text.lower()
    )


def _plain(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", text or "")).strip()


def _messages(state: SandboxState, event: Event) -> tuple[dict[str, str], dict[str, str]]:
    """Build `message` and `detailedMessage` in text, html and markdown."""
    item = event.item
    fields = item.fields
    label = f"{item.type.name} #{item.id}"
    title = str(fields.get("System.Title", ""))
    who = event.by.display_name
    href = legacy_html_url(state.org_url, item.id)
    kind = event.event_type.split(".", 1)[1]
    if kind == "updated" and event.update and "System.State" in event.update.fields:
        verb = f"transitioned to {fields['System.State']} by {who}"
    else:
        verb = {
            "created": f"created by {who}",
            "updated": f"updated by {who}",
            "commented": f"commented on by {who}",
            "deleted": f"deleted by {who}.",
            "restored": f"restored by {who}.",
        }[kind]
    if kind == "deleted":
        text = f"{label} ({title}) {verb}"
        html_text = f"{label} ({html.escape(title)}) {verb}"
        markdown = f"[{label}]({title}) {verb}"
    else:
        text = f"{label} ({title}) {verb}\r\n({href})"
        html_text = f'<a href="{html.escape(href)}">{label}</a> ({html.escape(title)}) {verb}'
        markdown = f"[{label}]({href}) ({title}) {verb}"
    short = {"text": text, "html": html_text, "markdown": markdown}
    lines = _detail_lines(event)
    if kind == "commented" and event.comment:
        body = event.comment.text
        detailed = {
            "text": f"{text}\r\n\r\n{_plain(body)}\r\n",
            "html": f"{html_text}<br/>{body}",
            "markdown": f"{markdown}\r\n\r\n{_plain(body)}\r\n",
        }
    elif lines:
        detailed = {
            "text": f"{text}\r\n\r\n" + "".join(f"- {line}\r\n" for line in lines),
            "html": f"{html_text}<ul>\r\n"
            + "\r\n".join(f"<li>{html.escape(line)}</li>" for line in lines)
            + "</ul>",
            "markdown": f"{markdown}\r\n\r\n" + "".join(f"* {line}\r\n" for line in lines),
        }
    else:
        detailed = dict(short)
    return short, detailed


def _detail_lines(event: Event) -> list[str]:
    fields = event.item.fields
    kind = event.event_type.split(".", 1)[1]
    area = f"Area: {fields.get('System.AreaPath', '')}"
    iteration = f"Iteration: {fields.get('System.IterationPath', '')}"
    state = f"State: {fields.get('System.State', '')}"
    severity = fields.get("Microsoft.VSTS.Common.Severity")
    if kind == "created":
        assigned = str(fields.get("System.AssignedTo") or "").split(" <", 1)[0]
        lines = [
            area,
            iteration,
            state,
            f"Assigned to: {assigned}",
            f"Comment: {_plain(str(fields.get('System.History') or ''))}",
        ]
        return [*lines, f"Severity: {severity}"] if severity else lines
    if kind == "updated" and event.update:
        lines = []
        if "System.State" in event.update.fields:
            lines.append(f"New State: {fields['System.State']}")
        if "System.AssignedTo" in event.update.fields:
            assigned = str(fields.get("System.AssignedTo") or "").split(" <", 1)[0]
            lines.append(f"Assigned to: {assigned}")
        return lines
    if kind == "deleted":
        return [area, iteration, state]
    if kind == "restored":
        return [area, iteration, state, *([f"Severity: {severity}"] if severity else [])]
    return []


def _select(messages: dict[str, str], setting: str) -> dict[str, str] | None:
    setting = (setting or "all").strip().lower()
    if setting == "none":
        return None
    if setting in ("", "all"):
        return messages
    return {setting: messages[setting]} if setting in messages else messages


def _resource(state: SandboxState, sub: Subscription, event: Event) -> Any:
    version = sub.resource_version or LATEST_RESOURCE_VERSION
    identities = "string" if version == "1.0" else "ref"
    item = event.item
    org_url = state.org_url
    details = (sub.consumer_inputs.get("resourceDetailsToSend") or "all").lower()
    kind = event.event_type
    if details == "none":
        return None
    if details == "minimal":
        if kind == "workitem.updated" and event.update:
            return {
                "id": event.update.id,
                "workItemId": item.id,
                "rev": event.update.rev,
                "url": f"{item_url(org_url, item)}/updates/{event.update.id}",
            }
        url = (
            recyclebin_url(org_url, item) if kind == "workitem.deleted" else item_url(org_url, item)
        )
        return {"id": item.id, "rev": item.rev, "url": url}
    if kind == "workitem.deleted":
        return render_recycled(state, item)
    if kind == "workitem.updated" and event.update:
        update = render_update(state, item, event.update, identities=identities)
        latest = next(r for r in item.revisions if r.rev == event.update.rev)
        update["revision"] = render_revision(state, item, latest, identities=identities)
        if identities == "ref":
            update["revision"].pop("relations", None)
        return update
    rev = event.update.rev if event.update else item.rev
    revision = next((r for r in item.revisions if r.rev == rev), None)
    values = dict(revision.fields if revision else item.fields)
    body: dict[str, Any] = {"id": item.id, "rev": rev}
    if kind == "workitem.commented" and event.comment:
        history = values.pop("System.History", event.comment.text)
        values["System.Rev"] = rev
        values["System.History"] = history
        body["fields"] = render_fields(values, org_url, identities=identities)
        body["commentVersionRef"] = {
            "commentId": event.comment.id,
            "version": event.comment.version,
            "url": f"{item_url(org_url, item)}/comments/{event.comment.id}/versions/"
            f"{event.comment.version}",
        }
    else:
        body["fields"] = render_fields(values, org_url, identities=identities)
        relations = revision.relations if revision else item.relations
        if relations and identities == "string" and kind == "workitem.created":
            body["relations"] = [dict(r) for r in relations]
    style = "restored" if kind == "workitem.restored" else "rest"
    body["_links"] = item_links(org_url, item, style=style)
    body["url"] = item_url(org_url, item)
    return body


def build_payload(
    state: SandboxState,
    sub: Subscription,
    event: Event,
    event_id: str,
    created: str,
    notification_id: int,
) -> dict[str, Any]:
    """Build the JSON body POSTed to the subscription's consumer URL."""
    short, detailed = _messages(state, event)
    base = f"{state.org_url}/"
    inputs = sub.consumer_inputs
    return {
        "subscriptionId": sub.id,
        "notificationId": notification_id,
        "id": event_id,
        "eventType": event.event_type,
        "publisherId": "tfs",
        "message": _select(short, inputs.get("messagesToSend", "all")),
        "detailedMessage": _select(detailed, inputs.get("detailedMessagesToSend", "all")),
        "resource": _resource(state, sub, event),
        "resourceVersion": sub.resource_version or LATEST_RESOURCE_VERSION,
        "resourceContainers": {
            "collection": {"id": COLLECTION_ID, "baseUrl": base},
            "account": {"id": ACCOUNT_ID, "baseUrl": base},
            "project": {"id": event.item.project.id, "baseUrl": base},
        },
        "createdDate": created,
    }


def new_event_identity() -> tuple[str, str]:
    """Return a fresh event id and creation timestamp."""
    return str(uuid.uuid4()), fmt_event_date(utcnow())
