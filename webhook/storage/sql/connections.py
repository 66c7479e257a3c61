"""Azure DevOps connections and their encrypted credentials (both engines)."""

from __future__ import annotations

import json
from typing import Any

from webhook import clock
from webhook.storage.errors import AlreadyExists, InUse, Missing
from webhook.storage.sql.common import (
    SqlRepo,
    page_rows,
)
from webhook.storage.sql.db import Row
from webhook.storage.types import ConnectionAuthInfo, ConnectionRecord


def _register_auth(auth: dict[str, Any]) -> None:
    """Let the log redaction filter know a credential's secret parts."""
    from webhook.logs import register_secret

    for name in ("token", "client_secret"):
        if auth.get(name):
            register_secret(str(auth[name]))


class SqlConnections(SqlRepo):
    """Connections; credentials are encrypted at rest and never listed."""

    @staticmethod
    def _connection_record(row: Row) -> ConnectionRecord:
        auth = ConnectionAuthInfo(type=row["auth_type"])
        if row["auth_type"] == "service_principal":
            auth = ConnectionAuthInfo(
                type=row["auth_type"], tenant_id=row["tenant_id"], client_id=row["client_id"]
            )
        return ConnectionRecord(
            id=row["id"],
            name=row["name"],
            organization_url=row["organization_url"],
            auth=auth,
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def create_connection(
        self, name: str, organization_url: str, auth: dict[str, Any]
    ) -> ConnectionRecord:
        """Save a validated connection; credentials are encrypted."""
        _register_auth(auth)
        now = clock.iso(self.db.now())
        try:
            with self.db.write() as conn:
                row = conn.execute(
                    "INSERT INTO connections(name, organization_url, auth_type, auth_enc,"
                    " tenant_id, client_id, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)"
                    " RETURNING *",
                    (
                        name,
                        organization_url,
                        auth["type"],
                        self.box.encrypt(json.dumps(auth)),
                        auth.get("tenant_id"),
                        auth.get("client_id"),
                        now,
                        now,
                    ),
                ).fetchone()
        except self.db.integrity_errors:
            raise AlreadyExists(f"a connection named {name!r} already exists") from None
        return self._connection_record(row)

    def update_connection(
        self,
        connection_id: int,
        *,
        name: str | None = None,
        auth: dict[str, Any] | None = None,
        organization_url: str | None = None,
    ) -> ConnectionRecord:
        """Rename a connection and/or replace its organization URL or credentials."""
        if auth is not None:
            _register_auth(auth)
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM connections WHERE id=?", (connection_id,)).fetchone()
            if row is None:
                raise Missing(f"connection {connection_id} does not exist")
            try:
                if name is not None:
                    conn.execute("UPDATE connections SET name=? WHERE id=?", (name, connection_id))
            except self.db.integrity_errors:
                raise AlreadyExists(f"a connection named {name!r} already exists") from None
            if organization_url is not None:
                conn.execute(
                    "UPDATE connections SET organization_url=? WHERE id=?",
                    (organization_url, connection_id),
                )
            if auth is not None:
                conn.execute(
                    "UPDATE connections SET auth_type=?, auth_enc=?, tenant_id=?, client_id=?"
                    " WHERE id=?",
                    (
                        auth["type"],
                        self.box.encrypt(json.dumps(auth)),
                        auth.get("tenant_id"),
                        auth.get("client_id"),
                        connection_id,
                    ),
                )
            conn.execute(
                "UPDATE connections SET updated_at=? WHERE id=?",
                (clock.iso(self.db.now()), connection_id),
            )
            row = conn.execute("SELECT * FROM connections WHERE id=?", (connection_id,)).fetchone()
        return self._connection_record(row)

    def delete_connection(self, connection_id: int) -> None:
        """Delete a connection unless templates still use it."""
        with self.db.write() as conn:
            if (
                conn.execute("SELECT 1 FROM connections WHERE id=?", (connection_id,)).fetchone()
                is None
            ):
                raise Missing(f"connection {connection_id} does not exist")
            used = conn.execute(
                "SELECT name FROM templates WHERE connection_id=?", (connection_id,)
            ).fetchall()
            if used:
                names = ", ".join(r["name"] for r in used)
                raise InUse(f"connection {connection_id} is used by templates: {names}")
            hooks = conn.execute(
                "SELECT count(*) FROM hooks WHERE connection_id=?", (connection_id,)
            ).fetchone()[0]
            if hooks:
                raise InUse(
                    f"connection {connection_id} has {hooks} service hook subscription(s); "
                    "remove them with DELETE /admin/hooks/<id> first"
                )
            conn.execute("DELETE FROM connections WHERE id=?", (connection_id,))

    def list_connections(self, page: int, per_page: int) -> tuple[list[ConnectionRecord], int]:
        """Connections (never their credentials)."""
        with self.db.read() as conn:
            rows, total = page_rows(conn, "SELECT * FROM connections", [], page, per_page, "id")
        return [self._connection_record(r) for r in rows], total

    def get_connection(self, connection_id: int) -> ConnectionRecord:
        """One connection (never its credentials)."""
        row = self.db.conn.execute(
            "SELECT * FROM connections WHERE id=?", (connection_id,)
        ).fetchone()
        if row is None:
            raise Missing(f"connection {connection_id} does not exist")
        return self._connection_record(row)

    def connection_credentials(self, connection_id: int) -> tuple[str, dict[str, Any]]:
        """(organization URL, decrypted auth) for calling Azure DevOps."""
        row = self.db.conn.execute(
            "SELECT organization_url, auth_enc FROM connections WHERE id=?", (connection_id,)
        ).fetchone()
        if row is None:
            raise Missing(f"connection {connection_id} does not exist")
        auth = json.loads(self.box.decrypt(row["auth_enc"]))
        _register_auth(auth)
        return row["organization_url"], auth
