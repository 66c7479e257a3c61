"""Work item state categories and the risk status decisions that follow from them.

States are classified only by the category Azure DevOps reports for them (AZURE_DEVOPS.md 9),
never by their names.
"""

from __future__ import annotations

from dataclasses import dataclass

from webhook.domain.models import RISK_STATUSES, WorkItemTypeInfo

PROPOSED = "Proposed"
IN_PROGRESS = "InProgress"
RESOLVED = "Resolved"
COMPLETED = "Completed"
REMOVED = "Removed"

CATEGORIES: tuple[str, ...] = (PROPOSED, IN_PROGRESS, RESOLVED, COMPLETED, REMOVED)
"""State categories as the states API spells them."""

CLOSE_CATEGORIES: tuple[str, ...] = (RESOLVED, COMPLETED)
"""Categories a work item is moved into when the scanner resolves its risk."""

REOPEN_CATEGORIES: tuple[str, ...] = (PROPOSED, IN_PROGRESS)
"""Categories a work item is moved back into on a regression."""

SCANNER_STATUSES: tuple[str, ...] = ("open", "resolved")

_STATUS_BY_CATEGORY = {
    PROPOSED: "open",
    IN_PROGRESS: "open",
    RESOLVED: "resolved",
    COMPLETED: "resolved",
    REMOVED: "removed",
}
_CATEGORY_BY_KEY = {c.casefold(): c for c in CATEGORIES}


def normalize_category(category: str) -> str:
    """Return the canonical spelling of a category ("In Progress" -> "InProgress")."""
    key = category.replace(" ", "").casefold() if isinstance(category, str) else None
    if key in _CATEGORY_BY_KEY:
        return _CATEGORY_BY_KEY[key]
    raise ValueError(f"unknown state category {category!r}")


def classify_state(state_name: str, type_info: WorkItemTypeInfo) -> str | None:
    """Return the category of a state of this type, or None when the type does not list it."""
    for state in type_info.states:
        if state.name == state_name:
            return state.category
    wanted = state_name.casefold()
    for state in type_info.states:
        if state.name.casefold() == wanted:
            return state.category
    # Unknown: the cached type is stale or the state was just added. Refresh and retry; a
    # guess from the name ("Done", "Closed", ...) would be wrong for custom processes.
    return None


def risk_status_for_category(category: str) -> str:
    """Return the risk status a category means: open, resolved or removed."""
    return _STATUS_BY_CATEGORY[normalize_category(category)]


def first_state_in(type_info: WorkItemTypeInfo, categories: tuple[str, ...]) -> str | None:
    """Return the first state, in the type's order, whose category is one of categories."""
    wanted = {normalize_category(c) for c in categories}
    for state in type_info.states:
        try:
            if normalize_category(state.category) in wanted:
                return state.name
        except ValueError:
            continue
    return None


@dataclass(frozen=True)
class ScannerDecision:
    """What a scanner report changes: the risk's combined status and the work item action."""

    new_status: str
    action: str | None  # None | "comment_resolved" | "reopen"
    reason: str


def decide_scanner_status_change(
    previous_scanner_status: str | None, new_scanner_status: str, current_status: str | None
) -> ScannerDecision:
    """Decide a scanner report's effect (SPEC 4, "Scanner says resolved / reopened").

    previous_scanner_status is what the scanner said last time (None if never recorded);
    current_status is the risk's combined status, or None for a risk seen for the first time.

    | previous       | new      | current             | new status | action           |
    |----------------|----------|---------------------|------------|------------------|
    | (any)          | open     | None (new risk)     | open       | None             |
    | (any)          | resolved | None (new risk)     | resolved   | None             |
    | None or open   | open     | open/resolved/rem.  | unchanged  | None             |
    | None or open   | resolved | open                | resolved   | comment_resolved |
    | None or open   | resolved | resolved / removed  | unchanged  | comment_resolved |
    | resolved       | resolved | open/resolved/rem.  | unchanged  | None             |
    | resolved       | open     | open/resolved/rem.  | open       | reopen           |

    An existing risk without a recorded scanner status counts as reported open (the default),
    so a person's resolution is never undone by the scanner merely still reporting the risk.
    When a person already closed the item, the scanner's "resolved" is still commented on but
    the person's status (resolved or removed) stays. A regression is a reopen even when the item
    is already open again (the comment is still posted; the worker moves the item only when its
    state is not in the Proposed/InProgress categories).
    """
    if previous_scanner_status not in (None, *SCANNER_STATUSES):
        raise ValueError(f"unknown scanner status {previous_scanner_status!r}")
    if new_scanner_status not in SCANNER_STATUSES:
        raise ValueError(f"unknown scanner status {new_scanner_status!r}")
    if current_status is None:
        return ScannerDecision(new_scanner_status, None, "new risk")
    if current_status not in RISK_STATUSES:
        raise ValueError(f"unknown risk status {current_status!r}")
    previous = previous_scanner_status or "open"
    if previous == new_scanner_status:
        return ScannerDecision(current_status, None, f"scanner still reports {previous}")
    if new_scanner_status == "resolved":
        status = "resolved" if current_status == "open" else current_status
        return ScannerDecision(status, "comment_resolved", "scanner no longer reports the risk")
    return ScannerDecision("open", "reopen", "scanner reports the risk again (regression)")


def decide_ado_state_change(current_status: str, category: str) -> str | None:
    """Return the risk's new status after its work item moved into category, or None if same."""
    if current_status not in RISK_STATUSES:
        raise ValueError(f"unknown risk status {current_status!r}")
    status = risk_status_for_category(category)
    return None if status == current_status else status
