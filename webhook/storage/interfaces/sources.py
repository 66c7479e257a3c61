"""Scanner sources: the Protocol their storage satisfies."""

from __future__ import annotations

from typing import Protocol

from webhook.storage.types import (
    SourceAuth,
    SourceRecord,
)


class SourceRepository(Protocol):
    """Scanner sources and their signing secrets."""

    def create_source(self, name: str, callback_url: str | None) -> tuple[SourceRecord, str]:
        """Create a source with a fresh secret; return it and the secret (shown once)."""
        ...

    def list_sources(self, page: int, per_page: int) -> tuple[list[SourceRecord], int]:
        """Sources, oldest first."""
        ...

    def get_source(self, source_id: int) -> SourceRecord:
        """One source (without its secret)."""
        ...

    def rotate_source_secret(self, source_id: int) -> tuple[SourceRecord, str]:
        """Issue a new secret; the current one stays valid for 24 hours."""
        ...

    def find_source(self, name: str, *, fresh: bool = False) -> SourceAuth | None:
        """The source with its currently valid secrets, or None."""
        ...
