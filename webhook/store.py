"""Compatibility facade: `Store` is the SQLite storage (`webhook.storage.sqlite`).

Kept so that callers move to the repositories (`webhook.storage.interfaces`) one at a time;
new code imports from `webhook.storage` instead.
"""

from __future__ import annotations

from webhook.storage.constants import ASSETS_IN_LIST
from webhook.storage.errors import AlreadyExists, InUse, Missing, StorageError
from webhook.storage.sqlite.common import (
    JOB_LEASE_SECONDS,
    link_from_row,
    risk_from_row,
    template_from_row,
)
from webhook.storage.sqlite.storage import SqliteStorage
from webhook.storage.types import (
    HookAuth,
    IngestOutcome,
    Job,
    Lease,
    SourceAuth,
    WorkItemChange,
    WorkItemLink,
)

Store = SqliteStorage
StoreError = StorageError

__all__ = [
    "ASSETS_IN_LIST",
    "JOB_LEASE_SECONDS",
    "AlreadyExists",
    "HookAuth",
    "InUse",
    "IngestOutcome",
    "Job",
    "Lease",
    "Missing",
    "SourceAuth",
    "Store",
    "StoreError",
    "WorkItemChange",
    "WorkItemLink",
    "link_from_row",
    "risk_from_row",
    "template_from_row",
]
