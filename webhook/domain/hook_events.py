"""Read what matters out of an Azure DevOps work item event (pure; tolerant of shape drift)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HANDLED = ("workitem.updated", "workitem.deleted", "workitem.restored")


@dataclass(frozen=True)
class WorkItemChange:
    event_type: str
    work_item_id: int
    rev: int | None
    state: str | None  # current state after the event (None: not in the payload)
    by: str | None
    at: str | None
    deleted: bool | None  # True on delete, False on restore, None otherwise


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


def _new_value(fields: dict[str, Any], name: str) -> Any:
    entry = fields.get(name)
    return entry.get("newValue") if isinstance(entry, dict) else None


def parse_change(event_type: str, resource: dict[str, Any]) -> WorkItemChange | None:
    """The work item change an event describes, or None for events we do not act on."""
    if event_type not in HANDLED or not isinstance(resource, dict):
        return None
    if event_type == "workitem.updated":
        work_item_id = _int(resource.get("workItemId"))
        revision = resource.get("revision") if isinstance(resource.get("revision"), dict) else {}
        current = revision.get("fields") if isinstance(revision.get("fields"), dict) else {}
        deltas = resource.get("fields") if isinstance(resource.get("fields"), dict) else {}
        state = current.get("System.State") or _new_value(deltas, "System.State")
        by = identity_name(resource.get("revisedBy")) or identity_name(
            current.get("System.ChangedBy")
        )
        at = current.get("System.ChangedDate") or _new_value(deltas, "System.ChangedDate")
        rev = _int(resource.get("rev")) or _int(revision.get("rev"))
        deleted = None
    else:
        fields = resource.get("fields") if isinstance(resource.get("fields"), dict) else {}
        work_item_id = _int(resource.get("id"))
        state = fields.get("System.State")
        by = identity_name(fields.get("System.ChangedBy"))
        at = fields.get("System.ChangedDate")
        rev = _int(resource.get("rev"))
        deleted = event_type == "workitem.deleted"
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
    )
