"""Azure DevOps connections: the Protocol their storage satisfies."""

from __future__ import annotations

from typing import Any, Protocol

from webhook.storage.types import (
    ConnectionRecord,
)


class ConnectionRepository(Protocol):
    """Azure DevOps connections (credentials encrypted at rest, never listed)."""

    def create_connection(
        self, name: str, organization_url: str, auth: dict[str, Any]
    ) -> ConnectionRecord:
        """Save a validated connection; credentials are encrypted."""
        ...

    def update_connection(
        self,
        connection_id: int,
        *,
        name: str | None = None,
        auth: dict[str, Any] | None = None,
        organization_url: str | None = None,
    ) -> ConnectionRecord:
        """Rename a connection and/or replace its organization URL or credentials."""
        ...

    def delete_connection(self, connection_id: int) -> None:
        """Delete a connection unless templates still use it."""
        ...

    def list_connections(self, page: int, per_page: int) -> tuple[list[ConnectionRecord], int]:
        """Connections (never their credentials)."""
        ...

    def get_connection(self, connection_id: int) -> ConnectionRecord:
        """One connection (never its credentials)."""
        ...

    def connection_credentials(self, connection_id: int) -> tuple[str, dict[str, Any]]:
        """(organization URL, decrypted auth) for calling Azure DevOps."""
        ...
