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


def test_a_hosts_wall_clock_step_moves_no_stored_time(storage: Storage) -> None:
    """On PostgreSQL stored times are the server's: a worker whose host clock went back 600 s
    repairs nothing (SQLite moves pending due times back instead: tests/test_leases.py)."""
    from webhook.domain.sync_plan import JobSpec

    storage.jobs.enqueue([JobSpec("callback", "out", {}, 30.0)], lane="source:sast")
    before = storage.jobs.list_jobs("pending", 1, 10)[0][0].next_attempt_at
    assert storage.operations.note_clock_offset("boot-1", 1000.0) == 0.0
    assert storage.operations.note_clock_offset("boot-1", 400.0) == 0.0  # went back 600 s
    assert storage.jobs.list_jobs("pending", 1, 10)[0][0].next_attempt_at == before
    assert storage.jobs.claim_jobs("w1", limit=10) == []  # still due in 30 s, not now


def test_an_idle_worker_wakes_when_another_node_records_jobs(
    storage: Storage, peer: Storage
) -> None:
    """LISTEN/NOTIFY (SPEC 6): a worker waiting for jobs on one node wakes when a commit on
    another node records jobs (True), not after its one-second recheck (False), and a commit
    that records no job wakes nobody."""
    import threading
    import time

    from webhook.domain.sync_plan import JobSpec

    assert storage.jobs.wait_for_jobs(0.05) is True  # the first wait opens the listener
    woke: list[tuple[bool, float]] = []

    def wait() -> None:
        start = time.monotonic()
        woke.append((storage.jobs.wait_for_jobs(0.05), time.monotonic() - start))

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.2)
    peer.sources.create_source("sast", None)  # no job: no wake-up
    time.sleep(0.2)
    with peer.unit_of_work() as uow:
        uow.jobs.enqueue([JobSpec("callback", "out")], lane="source:sast")
        uow.jobs.enqueue([JobSpec("callback", "out")], lane="source:sast")
    waiter.join(timeout=5)
    assert woke and woke[0][0] is True  # a notification, not the recheck's timeout (False)
    assert woke[0][1] > 0.35  # not woken by the commit without jobs at 0.2 s
