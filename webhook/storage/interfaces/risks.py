"""Risks and ingestion: the Protocol their storage satisfies."""

from __future__ import annotations

from typing import Any, Protocol

from webhook.domain.models import Risk
from webhook.storage.types import (
    IngestOutcome,
    RiskDetail,
    RiskSummary,
    SourceAuth,
)


class RiskRepository(Protocol):
    """Risks, their history, and ingestion of scanner deliveries."""

    def record_risks(self, source: SourceAuth, webhook_id: str, risks: list[Risk]) -> IngestOutcome:
        """Store a scanner delivery and the work it implies in one transaction (or replay it)."""
        ...

    def list_risks(
        self, filters: dict[str, str], page: int, per_page: int
    ) -> tuple[list[RiskSummary], int]:
        """Risks matching the filters, newest first, with their work item (bounded assets)."""
        ...

    def get_risk(self, risk_id: int) -> RiskDetail:
        """One risk with all its assets, its full text and sync history."""
        ...

    def load_risk(self, risk_id: int) -> Risk | None:
        """The domain risk, or None when it was deleted."""
        ...

    def count_risks(self) -> int:
        """How many risks are stored."""
        ...

    def get_risk_summary(self, risk_id: int) -> RiskSummary | None:
        """A risk as the list endpoint shows it, or None."""
        ...

    def add_history(self, risk_id: int, event: str, detail: dict[str, Any]) -> None:
        """Append one entry to a risk's sync history."""
        ...
