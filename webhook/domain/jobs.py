"""Job kinds and lanes: the names the database stores for recorded outside work (pure).

The string values are stored in the ``jobs`` table (``kind``, and the lane suffix after
``risk:<id>:``); they must never change. Both are ``StrEnum``, so a member compares equal to
(and serializes as) its stored string.
"""

from __future__ import annotations

from enum import StrEnum


class JobKind(StrEnum):
    """What a recorded job does; the worker has one handler per kind."""

    CREATE_WORK_ITEM = "create_work_item"
    SEVERITY_CHANGED = "severity_changed"
    # The scanner changed what a linked risk says: rewrite the item's body (and title) once the
    # changes of WEBHOOK_CONTENT_SYNC_SECONDS are gathered (SPEC 4, "Content stays current").
    CONTENT_CHANGED = "content_changed"
    SCANNER_RESOLVED = "scanner_resolved"
    SCANNER_REOPENED = "scanner_reopened"
    CALLBACK = "callback"
    APPLY_HOOK_EVENT = "apply_hook_event"


class Lane(StrEnum):
    """A risk's ordered queue: a job waits while an earlier job of its lane is unfinished.

    The store prefixes the suffix with the risk (``risk:<id>:ado``), or, for events from Azure
    DevOps, with the work item (``wi:<connection>:<id>:ado-in``)."""

    ADO = "ado"
    CALLBACK = "callback"
    ADO_IN = "ado-in"
