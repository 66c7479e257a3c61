"""Work item links: the Protocol their storage satisfies."""

from __future__ import annotations

from typing import Any, Protocol

from webhook.domain.sync_plan import WrittenContent
from webhook.storage.types import (
    Job,
    JobRecord,
    WorkItemChange,
    WorkItemLink,
)


class WorkItemRepository(Protocol):
    """Links between risks and Azure DevOps work items, and changes seen there."""

    def work_item_for(self, risk_id: int) -> WorkItemLink | None:
        """The work item linked to a risk, if any."""
        ...

    def work_item_owner(self, connection_id: int, ado_id: int) -> int | None:
        """The risk an Azure DevOps work item is linked to, if any."""
        ...

    def request_work_item(self, risk_id: int, template_id: int) -> JobRecord:
        """Manual export: record a create job unless the risk already has (or awaits) an item."""
        ...

    def link_work_item(
        self,
        risk_id: int,
        *,
        connection_id: int,
        template_id: int | None,
        project: str,
        work_item_type: str,
        item: dict[str, Any],
        tag: str,
        adopted: bool,
        state_category: str | None,
        rendered_severity: str,
        job: Job | None = None,
        written: WrittenContent | None = None,
    ) -> bool:
        """Record the work item created (or adopted) for a risk, plus catch-up work."""
        ...

    def record_work_item_state(
        self,
        risk_id: int,
        *,
        rev: int,
        state: str | None,
        state_category: str | None,
        changed_at: str | None = None,
        title: str | None = None,
        body_hash: str | None = None,
    ) -> None:
        """Remember the newest revision we wrote or read (so its echo is ignored), and the title /
        body hash that write set (None: that part was not written).
        """
        ...

    def linked_work_items(
        self, connection_id: int, project: str, *, include_deleted: bool = False
    ) -> dict[int, WorkItemLink]:
        """Work items linked to risks in one project, by Azure DevOps id."""
        ...

    def linked_projects(self, *, include_deleted: bool = False) -> list[tuple[int, str]]:
        """(connection id, project) pairs that have linked work items."""
        ...

    def apply_work_item_change(self, risk_id: int, change: WorkItemChange) -> bool:
        """Apply a state change seen in Azure DevOps; False when stale (rev already applied)."""
        ...

    def apply_hook_changes(self, changes: list[tuple[Job, WorkItemChange | None]]) -> None:
        """Apply several claimed hook-event jobs and mark them done, all in one transaction."""
        ...

    def note_skipped_while_deleted(self, job: Job) -> bool:
        """Record in the risk's history that a job found its work item deleted."""
        ...
