"""Scanner sources and their signing secrets (both engines)."""

from __future__ import annotations

import time

from webhook import clock
from webhook.crypto import new_source_secret
from webhook.storage.errors import AlreadyExists, Missing
from webhook.storage.sql.common import (
    SqlRepo,
    page_rows,
)
from webhook.storage.sql.db import Row
from webhook.storage.types import (
    SourceAuth,
    SourceRecord,
)

ROTATION_GRACE_SECONDS = 24 * 3600


# How long a process may answer from its copy of a source row (see Store.find_source).
SOURCE_CACHE_SECONDS = 5.0


class SqlSources(SqlRepo):
    """Scanner sources: create, rotate, and the cached lookup every delivery makes."""

    def _source_record(self, row: Row) -> SourceRecord:
        prev = row["previous_expires_ts"]
        valid = prev is not None and prev > self.db.now()
        return SourceRecord(
            id=row["id"],
            name=row["name"],
            callback_url=row["callback_url"],
            previous_secret_valid_until=clock.iso(prev) if valid else None,
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def create_source(self, name: str, callback_url: str | None) -> tuple[SourceRecord, str]:
        """Create a source with a fresh secret; return it and the secret (shown once)."""
        secret = new_source_secret()
        now = clock.iso(self.db.now())
        try:
            with self.db.write() as conn:
                row = conn.execute(
                    "INSERT INTO sources(name, callback_url, secret_enc, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?) RETURNING *",
                    (name, callback_url, self.box.encrypt(secret), now, now),
                ).fetchone()
        except self.db.integrity_errors:
            raise AlreadyExists(f"a source named {name!r} already exists") from None
        return self._source_record(row), secret

    def list_sources(self, page: int, per_page: int) -> tuple[list[SourceRecord], int]:
        """Sources, oldest first."""
        with self.db.read() as conn:
            rows, total = page_rows(conn, "SELECT * FROM sources", [], page, per_page, "id")
        return [self._source_record(r) for r in rows], total

    def get_source(self, source_id: int) -> SourceRecord:
        """One source (without its secret)."""
        row = self.db.conn.execute("SELECT * FROM sources WHERE id=?", (source_id,)).fetchone()
        if row is None:
            raise Missing(f"source {source_id} does not exist")
        return self._source_record(row)

    def rotate_source_secret(self, source_id: int) -> tuple[SourceRecord, str]:
        """Issue a new secret; the current one stays valid for 24 hours."""
        secret = new_source_secret()
        now = self.db.now()
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM sources WHERE id=?", (source_id,)).fetchone()
            if row is None:
                raise Missing(f"source {source_id} does not exist")
            conn.execute(
                "UPDATE sources SET previous_secret_enc=secret_enc, previous_expires_ts=?,"
                " secret_enc=?, updated_at=? WHERE id=?",
                (now + ROTATION_GRACE_SECONDS, self.box.encrypt(secret), clock.iso(now), source_id),
            )
            row = conn.execute("SELECT * FROM sources WHERE id=?", (source_id,)).fetchone()
        return self._source_record(row), secret

    def find_source(self, name: str, *, fresh: bool = False) -> SourceAuth | None:
        """The source with its currently valid secrets, or None.

        Every scanner request looks its source up, so rows are kept in process memory for
        SOURCE_CACHE_SECONDS. Sources are only ever created or rotated: a caller whose
        signature check fails asks again with `fresh=True`, so a new secret works at once;
        the old one's 24 h grace is checked against the clock on every call.
        """
        cached = self._source_rows.get(name)
        if cached is not None and not fresh and time.monotonic() - cached[0] < SOURCE_CACHE_SECONDS:
            row = cached[1]
        else:
            found = self.db.conn.execute(
                "SELECT id, name, callback_url, secret_enc, previous_secret_enc,"
                " previous_expires_ts FROM sources WHERE name=?",
                (name,),
            ).fetchone()
            if found is None:
                self._source_rows.pop(name, None)
                return None
            row = tuple(found)
            if len(self._source_rows) > 1024:
                self._source_rows.clear()
            self._source_rows[name] = (time.monotonic(), row)
        source_id, source_name, callback_url, secret_enc, previous_enc, previous_expires = row
        valid = [self._decrypt_cached(secret_enc)]
        if previous_enc and (previous_expires or 0) > self.db.now():
            valid.append(self._decrypt_cached(previous_enc))
        return SourceAuth(source_id, source_name, callback_url, tuple(valid))

    def _decrypt_cached(self, token: str) -> str:
        # Every scanner request needs its source's secret; Fernet decryption is the costly part,
        # so plaintexts are kept in process memory keyed by their (unique) ciphertext.
        cache = self._secret_cache
        secret = cache.get(token)
        if secret is None:
            if len(cache) > 1024:
                cache.clear()
            secret = cache[token] = self.box.decrypt(token)
        return secret
