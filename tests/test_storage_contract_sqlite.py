"""The storage contract (tests/storage_contract.py) run against the SQLite implementation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.storage_contract import *  # noqa: F403  (the contract's tests, collected here)
from webhook.crypto import SecretBox
from webhook.storage import migrate_storage, open_storage
from webhook.storage.interfaces import Storage


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    """A fresh, migrated, empty SQLite storage."""
    path = tmp_path / "contract.db"
    migrate_storage(path)
    opened = open_storage(path, SecretBox((Fernet.generate_key().decode(),)))
    yield opened
    opened.db.close()


@pytest.fixture
def peer(storage: Storage) -> Iterator[Storage]:
    """A second storage object over the same database file (another process's, say)."""
    opened = open_storage(storage.location, SecretBox((Fernet.generate_key().decode(),)))
    yield opened
    opened.db.close()  # type: ignore[attr-defined]
