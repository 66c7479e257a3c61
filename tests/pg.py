"""PostgreSQL for tests: the server named by WEBHOOK_TEST_POSTGRES_URL, and a fresh database
per test module.

`require_postgres()` skips the calling test (one line saying how to run it) when no server is
reachable, or fails it when WEBHOOK_REQUIRE_POSTGRES=1 (as .ci/run sets, so those tests cannot
be skipped silently there). `fresh_database(prefix)` creates `<prefix>_<random>` on that server
and drops it afterwards; `fresh_database_fixture(prefix)` makes that a module-scoped fixture.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from webhook.domain.database_url import redact_url

SERVER_VARIABLE = "WEBHOOK_TEST_POSTGRES_URL"
REQUIRE_VARIABLE = "WEBHOOK_REQUIRE_POSTGRES"
EXAMPLE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@cache
def _probe() -> tuple[str | None, str]:
    """(server URL, "") when reachable, else (None, one line saying why not)."""
    url = os.environ.get(SERVER_VARIABLE, "").strip()
    if not url:
        return None, f"PostgreSQL not reachable: set {SERVER_VARIABLE}={EXAMPLE_URL}"
    try:
        with psycopg.connect(url, connect_timeout=2, autocommit=True):
            pass
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"PostgreSQL not reachable at {redact_url(url)} ({SERVER_VARIABLE}): {first}"
    return url, ""


def postgres_server_url() -> str | None:
    """The test server's URL from WEBHOOK_TEST_POSTGRES_URL; None when it is unset or no
    server answers within 2 s (checked once per test process)."""
    return _probe()[0]


def require_postgres() -> str:
    """The test server's URL, or skip the test with one line saying how to run it (fail
    instead when WEBHOOK_REQUIRE_POSTGRES=1)."""
    url, why = _probe()
    if url is None:
        if os.environ.get(REQUIRE_VARIABLE, "").strip() == "1":
            pytest.fail(f"{why} ({REQUIRE_VARIABLE}=1)", pytrace=False)
        pytest.skip(why)
    return url


def database_url(server_url: str, name: str) -> str:
    """`server_url` naming database `name` instead of its own."""
    return urlsplit(server_url)._replace(path=f"/{name}").geturl()


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """Create the empty database `<prefix>_<8 hex digits>` on the test server, yield its URL,
    and drop it afterwards (WITH (FORCE): connections still open are ended). Skips or fails
    as `require_postgres` does when no server is reachable."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", prefix):
        raise ValueError(f"database prefix {prefix!r}: use lower-case letters, digits and _")
    server = require_postgres()
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(server, name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def fresh_database_fixture(prefix: str, *, scope: Any = "module") -> Callable[..., Any]:
    """A pytest fixture (module-scoped by default) yielding the URL of a fresh database
    (see fresh_database). Assign it to a name in the test module:
    `pg_url = fresh_database_fixture("webhook_jobs")`."""

    @pytest.fixture(scope=scope)
    def _fixture() -> Iterator[str]:
        with fresh_database(prefix) as url:
            yield url

    return _fixture
