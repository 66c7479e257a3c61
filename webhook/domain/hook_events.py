"""Read what matters out of an Azure DevOps work item event (pure; tolerant of shape drift)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HANDLED = ("workitem.updated", "workitem.deleted", "workitem.restored")
KNOWN_EVENT_TYPES = (
    "workitem.created",
    "workitem.updated",
    "workitem.deleted",
    "workitem.restored",
    "workitem.commented",
)
"""The work item event types of publisher `tfs` (AZURE_DEVOPS.md 1.1)."""


@dataclass(frozen=True)
class WorkItemChange:
    event_type: str
    work_item_id: int
    rev: int | None
    state: str | None  # current state after the event (None: not in the payload)
    by: str | None
    at: str | None
    deleted: bool | None  # True on delete, False on restore, None otherwise
    work_item_type: str | None = None  # System.WorkItemType the event reports (None: absent)
    project: str | None = None  # System.TeamProject the event reports (None: absent)
    reason: str | None = None  # System.Reason after the event (why the state is what it is)


_MAX_INT = 2**63 - 1  # SQLite INTEGER; Azure DevOps ids and revisions are far smaller


def _int(value: Any) -> int | None:
    """Numbers arrive as JSON numbers in real payloads and as strings in the doc samples.

    None for anything else, including numbers no SQLite INTEGER holds (a poisoned delivery
    must be ignored, not fail and be retried).
    """
    number: int | None = None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and len(value) <= 40 and value.strip().lstrip("-").isdigit():
        number = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    return number if number is not None and -_MAX_INT <= number <= _MAX_INT else None


def identity_name(value: Any) -> str | None:
    """`"Name <mail>"` (resourceVersion 1.0) or an IdentityRef object (REST, newer versions)."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict):
        name = value.get("displayName") or value.get("name")
        unique = value.get("uniqueName")
        if name and unique and "<" not in str(name):
            return f"{name} <{unique}>"
        return str(name or unique) if (name or unique) else None
    return None


def _dict(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (shape drift is tolerated)."""
    return value if isinstance(value, dict) else {}


def _new_value(fields: dict[str, Any], name: str) -> Any:
    entry = fields.get(name)
    return entry.get("newValue") if isinstance(entry, dict) else None


def parse_change(event_type: str, resource: dict[str, Any]) -> WorkItemChange | None:
    """The work item change an event describes, or None for events we do not act on."""
    if event_type not in HANDLED or not isinstance(resource, dict):
        return None
    if event_type == "workitem.updated":
        work_item_id = _int(resource.get("workItemId"))
        revision = _dict(resource.get("revision"))
        current = _dict(revision.get("fields"))
        deltas = _dict(resource.get("fields"))
        state = current.get("System.State") or _new_value(deltas, "System.State")
        by = identity_name(resource.get("revisedBy")) or identity_name(
            current.get("System.ChangedBy")
        )
        at = current.get("System.ChangedDate") or _new_value(deltas, "System.ChangedDate")
        rev = _int(resource.get("rev")) or _int(revision.get("rev"))
        deleted = None
        work_item_type = current.get("System.WorkItemType") or _new_value(
            deltas, "System.WorkItemType"
        )
        project = current.get("System.TeamProject") or _new_value(deltas, "System.TeamProject")
        reason = current.get("System.Reason") or _new_value(deltas, "System.Reason")
    else:
        fields = _dict(resource.get("fields"))
        work_item_id = _int(resource.get("id"))
        state = fields.get("System.State")
        by = identity_name(fields.get("System.ChangedBy"))
        at = fields.get("System.ChangedDate")
        rev = _int(resource.get("rev"))
        deleted = event_type == "workitem.deleted"
        work_item_type = fields.get("System.WorkItemType")
        project = fields.get("System.TeamProject")
        reason = fields.get("System.Reason")
    if work_item_id is None or work_item_id <= 0:
        return None
    return WorkItemChange(
        event_type=event_type,
        work_item_id=work_item_id,
        rev=rev,
        state=state if isinstance(state, str) and state else None,
        by=by,
        at=at if isinstance(at, str) else None,
        deleted=deleted,
        work_item_type=_text(work_item_type),
        project=_text(project),
        reason=_text(reason),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def event_label(event_type: Any) -> str:
    """The `event_type` metric label: a known work item event type, else "other".

    Any authenticated caller may send any string; labelling by it would let one caller create
    unbounded metric series.
    """
    return event_type if event_type in KNOWN_EVENT_TYPES else "other"


def _same(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def delivery_mismatch(
    envelope: dict[str, Any],
    change: WorkItemChange | None,
    *,
    subscription_id: str | None,
    project_id: str | None,
    project: str,
) -> str | None:
    """Why a delivery does not belong to the subscription whose credentials it carries, or None.

    SPEC 3.2: a delivery whose `subscriptionId` is not the registered subscription, or whose
    project is not that subscription's project, is acknowledged and ignored. The envelope's
    `subscriptionId` and `resourceContainers.project.id` are in real deliveries but not in the
    documentation samples (AZURE_DEVOPS.md 1.1), so an absent value is not a mismatch; the
    project name in the event's `System.TeamProject` is checked as well when present.
    """
    sent_sub = envelope.get("subscriptionId")
    if (
        isinstance(sent_sub, str)
        and sent_sub
        and subscription_id
        and not _same(sent_sub, subscription_id)
    ):
        return "subscriptionId is not the subscription registered for these credentials"
    containers = envelope.get("resourceContainers")
    container = containers.get("project") if isinstance(containers, dict) else None
    sent_project_id = container.get("id") if isinstance(container, dict) else None
    if isinstance(sent_project_id, str) and sent_project_id and project_id:
        if not _same(sent_project_id, project_id):
            return "the event's project is not the subscription's project"
        return None
    # No project id to compare (names can change, ids cannot): fall back to the name.
    if change is not None and change.project and project and not _same(change.project, project):
        return "the work item's project is not the subscription's project"
    return None
