"""Work item templates: the Protocol their storage satisfies."""

from __future__ import annotations

from typing import Any, Protocol

from webhook.domain.models import Template
from webhook.storage.types import (
    BackfillResult,
    TemplateRecord,
)


class TemplateRepository(Protocol):
    """Work item templates and their backfill."""

    def create_template(self, data: dict[str, Any]) -> TemplateRecord:
        """Save a validated template."""
        ...

    def update_template(self, template_id: int, data: dict[str, Any]) -> TemplateRecord:
        """Change a template's fields."""
        ...

    def delete_template(self, template_id: int) -> None:
        """Delete a template (existing work items keep their link)."""
        ...

    def list_templates(self, page: int, per_page: int) -> tuple[list[TemplateRecord], int]:
        """Templates, oldest first."""
        ...

    def get_template(self, template_id: int) -> TemplateRecord:
        """One template with its times (Missing)."""
        ...

    def load_template(self, template_id: int) -> Template | None:
        """The domain template, or None."""
        ...

    def backfill_template(self, template_id: int, *, dry_run: bool) -> BackfillResult:
        """Apply a template to the risks already stored (SPEC 3.3 backfill)."""
        ...
