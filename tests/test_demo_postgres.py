"""`ado-webhook demo` on PostgreSQL never writes into a database that holds data."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.pg import fresh_database, require_postgres
from tests.test_demo import run_demo
from webhook.storage import migrate_storage

pytestmark = pytest.mark.e2e


def test_demo_refuses_a_database_that_holds_data(tmp_path: Path) -> None:
    """The demo writes demo data with a throwaway key: never into a real installation."""
    require_postgres()
    with fresh_database("adowh_demo") as url:
        _refused(url, tmp_path)


def _refused(url: str, tmp_path: Path) -> None:
    migrate_storage(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sources(name, secret_enc, created_at, updated_at) VALUES"
            " ('prod-scanner', 'x', '2026-01-01', '2026-01-01')"
        )
    done = run_demo(tmp_path, url)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "already holds data (table sources)" in done.stderr
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM connections").fetchone() == (0,)
