"""Storage interfaces: one Protocol per aggregate, and `Storage` that holds them all.

Implementations (today `webhook.storage.sqlite`, later PostgreSQL) satisfy these; the contract
suite `tests/storage_contract.py` checks their guarantees once for all of them. Values crossing
these interfaces are the dataclasses of `webhook.storage.types` and `webhook.domain.models`,
or primitives; errors are those of `webhook.storage.errors` (Missing, AlreadyExists, InUse,
StorageBusy).

Unit of work: every verb that changes state is one transaction, and it records the jobs that
change implies in that same transaction (a delivery and its sync jobs, a link and its catch-up
jobs, a work item change and its callback). A transaction may be shared by concurrent callers
(group commit in `record_risks` and `record_hook_event`); each caller's part is all or nothing.

A unit of work (`Storage.unit_of_work`) spans repositories when a caller outside storage
makes a state change and the jobs it implies with several verbs.

Transition note: sources answer dataclasses (`SourceRecord`) that webhook/schemas.py dumps; a
few verbs still answer the API's dictionaries (`list_risks`, `get_template`, ...) and are to
follow.
"""

from __future__ import annotations

from webhook.storage.constants import JOB_LEASE_SECONDS
from webhook.storage.interfaces.connections import ConnectionRepository
from webhook.storage.interfaces.hooks import HookRepository
from webhook.storage.interfaces.jobs import JobRepository
from webhook.storage.interfaces.operations import OperationsRepository
from webhook.storage.interfaces.risks import RiskRepository
from webhook.storage.interfaces.sources import SourceRepository
from webhook.storage.interfaces.storage import Storage
from webhook.storage.interfaces.templates import TemplateRepository
from webhook.storage.interfaces.ui_sessions import UiSessionRepository
from webhook.storage.interfaces.work_items import WorkItemRepository

__all__ = [
    "JOB_LEASE_SECONDS",
    "ConnectionRepository",
    "HookRepository",
    "JobRepository",
    "OperationsRepository",
    "RiskRepository",
    "SourceRepository",
    "Storage",
    "TemplateRepository",
    "UiSessionRepository",
    "WorkItemRepository",
]
