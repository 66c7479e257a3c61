"""Storage verbs of the admin web UI over either engine: its own tables (sessions, failed sign-ins)
and the read-only figures the Overview page shows. Views never speak SQL; the session and
throttling policy is `webhook.domain.ui_sessions`.
"""

from __future__ import annotations

from webhook import clock
from webhook.domain.ui_sessions import (
    FAILURE_MEMORY_SECONDS,
    MAX_LOCK_SECONDS,
    SESSION_IDLE_SECONDS,
    SESSION_MAX_SECONDS,
    SESSION_TOUCH_SECONDS,
    SignInCheck,
    lock_seconds,
    session_hash,
)
from webhook.storage.sql.db import SqlDatabase
from webhook.storage.types import OrganizationPause


class SqlUiSessions:
    """Sessions, sign-in throttling and Overview figures over the service's database."""

    def __init__(self, db: SqlDatabase) -> None:
        self.db = db

    # ---- sessions -----------------------------------------------------------------------

    def create_session(self, session_id: str) -> None:
        """Record a new signed-in session (and forget sessions that have ended)."""
        now = self.db.now()
        with self.db.write() as conn:
            conn.execute(
                "DELETE FROM ui_sessions WHERE expires_ts <= ? OR last_seen_ts <= ?",
                (now, now - SESSION_IDLE_SECONDS),
            )
            conn.execute(
                "INSERT INTO ui_sessions(id_hash, created_ts, last_seen_ts, expires_ts)"
                " VALUES (?,?,?,?)",
                (session_hash(session_id), now, now, now + SESSION_MAX_SECONDS),
            )

    def session_alive(self, session_id: str) -> bool:
        """True when the session exists and has neither expired nor idled out; touches it."""
        now = self.db.now()
        key = session_hash(session_id)
        row = self.db.conn.execute(
            "SELECT last_seen_ts, expires_ts FROM ui_sessions WHERE id_hash=?", (key,)
        ).fetchone()
        if row is None:
            return False
        if row["expires_ts"] <= now or row["last_seen_ts"] + SESSION_IDLE_SECONDS <= now:
            self.end_session(session_id)
            return False
        if now - row["last_seen_ts"] >= SESSION_TOUCH_SECONDS:
            with self.db.write() as conn:
                conn.execute("UPDATE ui_sessions SET last_seen_ts=? WHERE id_hash=?", (now, key))
        return True

    def end_session(self, session_id: str) -> None:
        """Delete a session: its cookie, wherever copied, no longer signs anyone in."""
        with self.db.write() as conn:
            conn.execute("DELETE FROM ui_sessions WHERE id_hash=?", (session_hash(session_id),))

    # ---- sign-in throttling -------------------------------------------------------------

    def sign_in_allowed(self, client: str) -> SignInCheck:
        """Whether `client` (an address) may try a sign-in now."""
        row = self.db.conn.execute(
            "SELECT locked_until_ts FROM ui_sign_in_failures WHERE client=?", (client,)
        ).fetchone()
        now = self.db.now()
        if row is None or row["locked_until_ts"] <= now:
            return SignInCheck(True)
        return SignInCheck(False, max(1, int(row["locked_until_ts"] - now + 0.999)))

    def record_sign_in_failure(self, client: str) -> SignInCheck:
        """Count a failed sign-in; return whether the next try must wait."""
        now = self.db.now()
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT failures, last_failure_ts FROM ui_sign_in_failures WHERE client=?",
                (client,),
            ).fetchone()
            failures = 1
            if row is not None and now - row["last_failure_ts"] < FAILURE_MEMORY_SECONDS:
                failures = row["failures"] + 1
            wait = lock_seconds(failures)
            conn.execute(
                "INSERT INTO ui_sign_in_failures(client, failures, last_failure_ts,"
                " locked_until_ts) VALUES (?,?,?,?) ON CONFLICT(client) DO UPDATE SET"
                " failures=excluded.failures, last_failure_ts=excluded.last_failure_ts,"
                " locked_until_ts=excluded.locked_until_ts",
                (client, failures, now, now + wait),
            )
            conn.execute(
                "DELETE FROM ui_sign_in_failures WHERE last_failure_ts < ?",
                (now - FAILURE_MEMORY_SECONDS - MAX_LOCK_SECONDS,),
            )
        return SignInCheck(wait == 0, int(wait))

    def clear_sign_in_failures(self, client: str) -> None:
        """Forget an address's failures after it signed in."""
        with self.db.write() as conn:
            conn.execute("DELETE FROM ui_sign_in_failures WHERE client=?", (client,))

    # ---- Overview figures ---------------------------------------------------------------

    def open_risks_by_severity(self) -> dict[str, int]:
        """{severity: number of open risks}."""
        rows = self.db.conn.execute(
            "SELECT severity, count(*) AS n FROM risks WHERE status='open' GROUP BY severity"
        ).fetchall()
        return {r["severity"]: int(r["n"]) for r in rows}

    def work_items_per_day(self, days: int) -> list[tuple[str, int]]:
        """[(YYYY-MM-DD, work items filed that UTC day)] for the last `days` days, oldest first."""
        now = self.db.now()
        dates = [clock.iso(now - 86400 * back)[:10] for back in range(days - 1, -1, -1)]
        rows = self.db.conn.execute(
            "SELECT substr(created_at, 1, 10) AS day, count(*) AS n FROM work_items"
            " WHERE created_at >= ? GROUP BY day",
            (dates[0],),
        ).fetchall()
        counts = {r["day"]: int(r["n"]) for r in rows}
        return [(day, counts.get(day, 0)) for day in dates]

    def paused_organizations(self) -> list[OrganizationPause]:
        """Organizations Azure DevOps asked to wait (pauses that have not ended), by URL."""
        rows = self.db.conn.execute(
            "SELECT organization_url, paused_until_ts FROM org_pauses"
            " WHERE paused_until_ts > ? ORDER BY organization_url",
            (self.db.now(),),
        ).fetchall()
        return [
            OrganizationPause(
                organization_url=r["organization_url"],
                until_ts=r["paused_until_ts"] - self.db.clock_offset(),
            )
            for r in rows
        ]


UiStore = SqlUiSessions
