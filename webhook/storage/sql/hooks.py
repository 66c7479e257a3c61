"""Service-hook subscriptions and the events they deliver (both engines)."""

from __future__ import annotations

from typing import Any

from webhook import clock
from webhook.domain.jobs import JobKind, Lane
from webhook.domain.sync_plan import (
    JobSpec,
)
from webhook.storage.errors import Missing
from webhook.storage.sql.common import (
    SqlRepo,
    page_rows,
)
from webhook.storage.sql.db import Connection, Row
from webhook.storage.types import (
    HookAuth,
    HookRecord,
)


class SqlHooks(SqlRepo):
    """Hook rows, their credentials, and recording deliveries (deduplicated by event id)."""

    @staticmethod
    def _hook(row: Row) -> HookRecord:
        return HookRecord(
            id=row["id"],
            connection_id=row["connection_id"],
            project=row["project"],
            project_id=row["project_id"],
            event_type=row["event_type"],
            subscription_id=row["subscription_id"],
            status=row["status"],
            heal_count=row["heal_count"],
            last_checked_at=row["last_checked_at"],
            last_healed_at=row["last_healed_at"],
            last_error=row["last_error"],
        )

    def hooks_for(self, connection_id: int, project: str) -> list[HookRecord]:
        """Hook rows of one connection and project."""
        rows = self.db.conn.execute(
            "SELECT * FROM hooks WHERE connection_id=? AND project=? ORDER BY id",
            (connection_id, project),
        ).fetchall()
        return [self._hook(r) for r in rows]

    def template_projects(self) -> list[tuple[int, str]]:
        """(connection id, project) pairs that templates file work items in."""
        return [
            (r[0], r[1])
            for r in self.db.conn.execute(
                "SELECT DISTINCT connection_id, project FROM templates"
                " ORDER BY connection_id, project"
            )
        ]

    def all_hooks(self) -> list[HookRecord]:
        """Every hook row (for the periodic check)."""
        rows = self.db.conn.execute("SELECT * FROM hooks ORDER BY id").fetchall()
        return [self._hook(r) for r in rows]

    def list_hooks(self, page: int, per_page: int) -> tuple[list[HookRecord], int]:
        """Hooks, oldest first."""
        with self.db.read() as conn:
            rows, total = page_rows(conn, "SELECT * FROM hooks", [], page, per_page, "id")
        return [self._hook(r) for r in rows], total

    def get_hook(self, hook_id: int) -> HookRecord:
        """One hook row."""
        row = self.db.conn.execute("SELECT * FROM hooks WHERE id=?", (hook_id,)).fetchone()
        if row is None:
            raise Missing(f"hook {hook_id} does not exist")
        return self._hook(row)

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
        now = clock.iso(self.db.now())
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO hooks(connection_id, project, project_id, event_type, subscription_id,"
                " status, username, password_hash, last_checked_at, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(connection_id, project, event_type) DO UPDATE SET"
                " project_id=excluded.project_id, subscription_id=excluded.subscription_id,"
                " status=excluded.status, username=excluded.username,"
                " password_hash=excluded.password_hash, last_checked_at=excluded.last_checked_at,"
                " last_error=NULL, updated_at=excluded.updated_at",
                (
                    connection_id,
                    project,
                    project_id,
                    event_type,
                    subscription_id,
                    status,
                    username,
                    password_hash,
                    now,
                    now,
                    now,
                ),
            )
            if healed:
                conn.execute(
                    "UPDATE hooks SET heal_count=heal_count+1, last_healed_at=?"
                    " WHERE connection_id=? AND project=? AND event_type=?",
                    (now, connection_id, project, event_type),
                )
            row = conn.execute(
                "SELECT * FROM hooks WHERE connection_id=? AND project=? AND event_type=?",
                (connection_id, project, event_type),
            ).fetchone()
        return self._hook(row)

    def note_hook_status(self, hook_id: int, status: str, error: str | None = None) -> None:
        """Remember the live status last read from Azure DevOps."""
        with self.db.write() as conn:
            conn.execute(
                "UPDATE hooks SET status=?, last_error=?, last_checked_at=? WHERE id=?",
                (status, error, clock.iso(self.db.now()), hook_id),
            )

    def delete_hook(self, hook_id: int) -> None:
        """Forget a hook row."""
        with self.db.write() as conn:
            conn.execute("DELETE FROM hooks WHERE id=?", (hook_id,))

    def hook_credentials(self, username: str) -> HookAuth | None:
        """The hook a basic-auth user name belongs to (with its subscription and project)."""
        row = self.db.conn.execute(
            "SELECT id, connection_id, password_hash, subscription_id, project, project_id"
            " FROM hooks WHERE username=?",
            (username,),
        ).fetchone()
        if row is None:
            return None
        return HookAuth(
            hook_id=row["id"],
            connection_id=row["connection_id"],
            password_hash=row["password_hash"],
            subscription_id=row["subscription_id"],
            project=row["project"],
            project_id=row["project_id"],
        )

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
        """Record one delivery and the job that applies it: recorded | duplicate | not_ours.

        Raises Missing when hook `hook_id` does not exist (deleted since its credentials were
        checked); a duplicate is only an event id already recorded.

        Shares its transaction with concurrent deliveries in this process (group commit).
        """
        now = self.db.now()

        def record(conn: Connection) -> str:
            try:
                # Only the event id's uniqueness is "already seen"; the hook reference
                # (a foreign key) still fails the statement when the hook row is gone.
                cur = conn.execute(
                    "INSERT INTO hook_events(event_id, hook_id, event_type, work_item_id, rev,"
                    " received_ts) VALUES (?,?,?,?,?,?) ON CONFLICT(event_id) DO NOTHING",
                    (event_id, hook_id, event_type, work_item_id, rev, now),
                )
            except self.db.integrity_errors:
                raise Missing(f"hook {hook_id} does not exist") from None
            if cur.rowcount == 0:
                return "duplicate"
            row = conn.execute(
                "SELECT risk_id FROM work_items WHERE connection_id=? AND ado_id=?",
                (connection_id, work_item_id),
            ).fetchone()
            if row is None:
                return "not_ours"
            self._add_jobs(
                conn,
                row["risk_id"],
                [
                    JobSpec(
                        JobKind.APPLY_HOOK_EVENT,
                        Lane.ADO_IN,
                        {"event_type": event_type, "rev": rev, **change},
                    )
                ],
                now,
                lane_prefix=f"wi:{connection_id}:{work_item_id}",
            )
            return "recorded"

        return self.db.write_grouped(record)
