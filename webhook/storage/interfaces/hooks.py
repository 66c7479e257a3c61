"""Service-hook subscriptions and events: the Protocol their storage satisfies."""

from __future__ import annotations

from typing import Any, Protocol

from webhook.storage.types import (
    HookAuth,
    HookRecord,
)


class HookRepository(Protocol):
    """Service-hook subscriptions and the events they deliver."""

    def hooks_for(self, connection_id: int, project: str) -> list[HookRecord]:
        """Hook rows of one connection and project."""
        ...

    def template_projects(self) -> list[tuple[int, str]]:
        """(connection id, project) pairs that templates file work items in."""
        ...

    def all_hooks(self) -> list[HookRecord]:
        """Every hook row (for the periodic check)."""
        ...

    def list_hooks(self, page: int, per_page: int) -> tuple[list[HookRecord], int]:
        """Hooks, oldest first."""
        ...

    def get_hook(self, hook_id: int) -> HookRecord:
        """One hook. Raises Missing when it does not exist."""
        ...

    def save_hook(
        self,
        *,
        connection_id: int,
        project: str,
        project_id: str,
        event_type: str,
        subscription_id: str,
        status: str,
        username: str,
        password_hash: str,
        healed: bool,
    ) -> HookRecord:
        """Create or replace the hook row for (connection, project, event type)."""
        ...

    def note_hook_status(self, hook_id: int, status: str, error: str | None = None) -> None:
        """Remember the live status last read from Azure DevOps."""
        ...

    def delete_hook(self, hook_id: int) -> None:
        """Forget a hook row."""
        ...

    def hook_credentials(self, username: str) -> HookAuth | None:
        """The hook a basic-auth user name belongs to (with its subscription and project)."""
        ...

    def record_hook_event(
        self,
        *,
        hook_id: int,
        connection_id: int,
        event_id: str,
        event_type: str,
        work_item_id: int,
        rev: int | None,
        change: dict[str, Any],
    ) -> str:
        """Record one delivery and the job that applies it: recorded | duplicate | not_ours."""
        ...
