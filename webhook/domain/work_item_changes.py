"""What a change of a linked work item means for its risk, and the work that follows a link.

Pure decisions (stdlib only): storage reads the facts, asks these functions, and writes the
answer (history entries and jobs) in the same transaction. SPEC 4, "Status back from Azure
DevOps": a work item's state category decides the risk's status; a deleted item is never
recreated, and what could not be done while it was deleted is done when it is restored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from webhook.domain.jobs import JobKind, Lane
from webhook.domain.states import decide_ado_state_change
from webhook.domain.sync_plan import CONTENT_CHANGED, JobSpec, WrittenContent

SKIPPED_EVENT = "work_item_update_skipped"
"""History event of a job that found its work item deleted (replayed on restore)."""


@dataclass(frozen=True)
class WorkItemChange:
    """A change of a linked work item seen in Azure DevOps (hook event, or its current truth).

    `rev` orders changes: with `check_rev` a change whose rev is at or below the one applied
    last is stale and skipped; `allow_same_rev` also applies one at the same rev (the current
    truth read from Azure DevOps: deletion and restore do not change the rev). `work_item_type`
    and `project`, when given, are the item's type and project now (a person may change both).
    `deleted_by`/`deleted_at` say who moved the item to the recycle bin, and when.
    """

    rev: int | None
    state: str | None
    category: str | None
    by: str | None
    at: str | None
    deleted: bool | None = None
    check_rev: bool = True
    origin: str = "hook"
    allow_same_rev: bool = False
    work_item_type: str | None = None
    project: str | None = None
    deleted_by: str | None = None
    deleted_at: str | None = None
    reason: str | None = None  # System.Reason with the state (e.g. "Fixed", "Verified")


@dataclass(frozen=True)
class LinkedItem:
    """What the service knows of a linked work item before a change is applied."""

    ado_id: int
    rev: int
    deleted: bool
    type: str
    project: str


@dataclass(frozen=True)
class ChangePlan:
    """What applying a WorkItemChange amounts to.

    `new_status` is the risk's new status (None: unchanged); `history` the entries to append
    (event, detail) in order; `jobs` the work it implies (a callback, the replay of what was
    skipped while the item was deleted).
    """

    new_status: str | None
    history: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    jobs: list[JobSpec] = field(default_factory=list)


def is_stale(item: LinkedItem, change: WorkItemChange) -> bool:
    """Whether `change` is older than what was applied (only when it asks for the rev check)."""
    rev = change.rev
    if not change.check_rev or rev is None:
        return False
    return rev < item.rev or (rev == item.rev and not change.allow_same_rev)


def restores(item: LinkedItem, change: WorkItemChange) -> bool:
    """Whether `change` brings a deleted item back from the recycle bin."""
    return change.deleted is not None and item.deleted and not change.deleted


def plan_work_item_change(
    item: LinkedItem,
    change: WorkItemChange,
    *,
    risk_status: str,
    has_callback: bool,
    replay: Iterable[JobSpec] = (),
) -> ChangePlan:
    """The history and jobs a (non-stale) change of a linked item implies.

    `risk_status` is the risk's status now, `has_callback` whether its source has a callback
    URL, `replay` the jobs skipped while the item was deleted (see `replay_skipped`), used
    only when the change restores it. Raises ValueError for an unknown risk status.
    """
    history: list[tuple[str, dict[str, Any]]] = []
    jobs: list[JobSpec] = []
    if change.deleted is not None and bool(change.deleted) != item.deleted:
        if change.deleted:
            detail: dict[str, Any] = {
                "id": item.ado_id,
                "by": change.deleted_by,
                "via": change.origin,
            }
            if change.deleted_at:
                detail["at"] = change.deleted_at
            history.append(("work_item_deleted", detail))
        else:
            history.append(("work_item_restored", {"id": item.ado_id, "via": change.origin}))
            jobs.extend(replay)
    new_type = change.work_item_type
    if new_type and new_type != item.type:
        history.append(("work_item_type_changed", {"from": item.type, "to": new_type}))
    new_project = change.project
    if new_project and new_project != item.project:
        history.append(("work_item_moved", {"from": item.project, "to": new_project}))
    category = change.category
    new_status = decide_ado_state_change(risk_status, category) if category else None
    if new_status is not None:
        history.append(
            (
                "status_changed",
                {
                    "from": risk_status,
                    "to": new_status,
                    "state": change.state,
                    "by": change.by,
                    "via": change.origin,
                },
            )
        )
        if has_callback:
            jobs.append(JobSpec(JobKind.CALLBACK, Lane.CALLBACK, {"status": new_status}))
    return ChangePlan(new_status, history, jobs)


def replay_skipped(skipped: Iterable[dict[str, Any]], severity_now: str | None) -> list[JobSpec]:
    """The jobs to perform now that a risk's item is back, in the order they were skipped.

    `skipped` holds the details of the SKIPPED_EVENT entries since the last deletion (`kind`,
    `lane`, `payload`), oldest first. Severity changes become one change from the severity the
    item last showed to `severity_now` (none if it is back where it was).
    """
    jobs: list[JobSpec] = []
    severity_from: str | None = None
    for detail in skipped:
        kind, payload = detail.get("kind"), detail.get("payload") or {}
        if not isinstance(kind, str):
            continue
        if kind == "severity_changed":
            if severity_from is None:
                severity_from = payload.get("from")
                if severity_from and severity_now and severity_from != severity_now:
                    jobs.append(
                        JobSpec(
                            kind,
                            detail.get("lane") or "ado",
                            {"from": severity_from, "to": severity_now},
                        )
                    )
            continue
        jobs.append(JobSpec(kind, detail.get("lane") or "ado", payload))
    return jobs


def catch_up_after_link(
    *,
    severity: str,
    status: str,
    item_hash: str | None,
    rendered_severity: str,
    written: WrittenContent,
) -> list[JobSpec]:
    """The work a new link implies: the scanner may have changed the risk while Azure DevOps
    was creating its item.

    `severity`, `status` and `item_hash` are the risk's now; `rendered_severity` and `written`
    what the create wrote. A severity change or a resolution is queued (each update brings
    the content along); otherwise a content update when the content differs (or is unknown).
    """
    catch_up: list[JobSpec] = []
    if severity != rendered_severity:
        catch_up.append(
            JobSpec("severity_changed", "ado", {"from": rendered_severity, "to": severity})
        )
    if status == "resolved":
        catch_up.append(JobSpec("scanner_resolved", "ado", {}))
    if not catch_up and (written.item_hash is None or written.item_hash != item_hash):
        catch_up.append(JobSpec(CONTENT_CHANGED, "ado", {}))
    return catch_up
