"""The storage contract (tests/storage_contract.py) run against the PostgreSQL implementation:
one fresh database for the module, emptied before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet

from tests.pg import fresh_database, require_postgres
from tests.storage_contract import *  # noqa: F403  (the contract's tests, collected here)
from webhook.crypto import SecretBox
from webhook.storage import migrate_storage, open_storage
from webhook.storage.interfaces import Storage
from webhook.storage.postgres.storage import PostgresStorage


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this module."""
    require_postgres()
    with fresh_database("adowh_contract") as url:
        migrate_storage(url)
        yield url


@pytest.fixture
def storage(database_url: str) -> Iterator[Storage]:
    """An empty PostgreSQL storage (every table truncated, identities restarted)."""
    opened = open_storage(database_url, SecretBox((Fernet.generate_key().decode(),)))
    assert isinstance(opened, PostgresStorage)
    opened.postgres.truncate_all()
    yield opened
    opened.postgres.close()


@pytest.fixture
def peer(database_url: str) -> Iterator[Storage]:
    """A second storage object over the same database: another node, its own pool."""
    opened = open_storage(database_url, SecretBox((Fernet.generate_key().decode(),)))
    assert isinstance(opened, PostgresStorage)
    yield opened
    opened.postgres.close()
