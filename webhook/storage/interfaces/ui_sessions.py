"""Admin UI sessions: the Protocol their storage satisfies."""

from __future__ import annotations

from typing import Protocol

from webhook.domain.ui_sessions import SignInCheck
from webhook.storage.types import (
    OrganizationPause,
)


class UiSessionRepository(Protocol):
    """Admin UI sessions, sign-in throttling, and the Overview figures."""

    def create_session(self, session_id: str) -> None:
        """Record a new signed-in session (and forget sessions that have ended)."""
        ...

    def session_alive(self, session_id: str) -> bool:
        """True when the session exists and has neither expired nor idled out; touches it."""
        ...

    def end_session(self, session_id: str) -> None:
        """Delete a session: its cookie, wherever copied, no longer signs anyone in."""
        ...

    def sign_in_allowed(self, client: str) -> SignInCheck:
        """Whether `client` (an address) may try a sign-in now."""
        ...

    def record_sign_in_failure(self, client: str) -> SignInCheck:
        """Count a failed sign-in; return whether the next try must wait."""
        ...

    def clear_sign_in_failures(self, client: str) -> None:
        """Forget an address's failures after it signed in."""
        ...

    def open_risks_by_severity(self) -> dict[str, int]:
        """{severity: number of open risks}."""
        ...

    def work_items_per_day(self, days: int) -> list[tuple[str, int]]:
        """[(YYYY-MM-DD, work items filed that UTC day)] for the last `days` days, oldest first."""
        ...

    def paused_organizations(self) -> list[OrganizationPause]:
        """Organizations Azure DevOps asked to wait (pauses that have not ended), by URL."""
        ...
