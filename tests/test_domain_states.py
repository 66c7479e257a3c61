"""Tests for webhook.domain.states."""

import pytest

from webhook.domain.models import WorkItemState, WorkItemTypeInfo
from webhook.domain.states import (
    CATEGORIES,
    CLOSE_CATEGORIES,
    REOPEN_CATEGORIES,
    ScannerDecision,
    classify_state,
    decide_ado_state_change,
    decide_scanner_status_change,
    first_state_in,
    normalize_category,
    risk_status_for_category,
)


def make_type(*states):
    return WorkItemTypeInfo(
        name="T",
        states=tuple(WorkItemState(name, category) for name, category in states),
        field_names=frozenset({"System.Title"}),
        required_fields=frozenset(),
    )


# Default processes, AZURE_DEVOPS.md section 9.
BASIC_ISSUE = make_type(("To Do", "Proposed"), ("Doing", "InProgress"), ("Done", "Completed"))
AGILE_BUG = make_type(
    ("New", "Proposed"), ("Active", "InProgress"), ("Resolved", "Resolved"), ("Closed", "Completed")
)
SCRUM_BUG = make_type(
    ("New", "Proposed"),
    ("Approved", "Proposed"),
    ("Committed", "InProgress"),
    ("Done", "Completed"),
    ("Removed", "Removed"),
)
# A custom process where names would mislead a guess.
CUSTOM = make_type(
    ("Triage", "Proposed"),
    ("Closed", "InProgress"),  # deliberately misleading name
    ("Fixed", "Completed"),
    ("Won't fix", "Removed"),
)


def test_categories():
    assert CATEGORIES == ("Proposed", "InProgress", "Resolved", "Completed", "Removed")
    assert CLOSE_CATEGORIES == ("Resolved", "Completed")
    assert REOPEN_CATEGORIES == ("Proposed", "InProgress")


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("InProgress", "InProgress"), ("In Progress", "InProgress"), ("inprogress", "InProgress"),
     ("completed", "Completed"), ("Removed", "Removed")],
)  # fmt: skip
def test_normalize_category(raw, canonical):
    assert normalize_category(raw) == canonical


@pytest.mark.parametrize("raw", ["Done", "Closed", "", None])
def test_normalize_category_rejects_unknown(raw):
    with pytest.raises(ValueError):
        normalize_category(raw)


def test_classify_state_by_category_not_name():
    assert classify_state("Closed", AGILE_BUG) == "Completed"
    assert classify_state("Closed", CUSTOM) == "InProgress"
    assert classify_state("Won't fix", CUSTOM) == "Removed"
    assert classify_state("Approved", SCRUM_BUG) == "Proposed"


def test_classify_state_case_insensitive_fallback_prefers_exact_match():
    assert classify_state("closed", AGILE_BUG) == "Completed"
    assert classify_state("DOING", BASIC_ISSUE) == "InProgress"
    odd = make_type(("done", "InProgress"), ("Done", "Completed"))
    assert classify_state("Done", odd) == "Completed"
    assert classify_state("done", odd) == "InProgress"


def test_classify_unknown_state_is_none_never_a_guess():
    assert classify_state("Done", AGILE_BUG) is None
    assert classify_state("Resolved", BASIC_ISSUE) is None
    assert classify_state("", AGILE_BUG) is None


@pytest.mark.parametrize(
    ("category", "status"),
    [("Proposed", "open"), ("InProgress", "open"), ("In Progress", "open"),
     ("Resolved", "resolved"), ("Completed", "resolved"), ("Removed", "removed")],
)  # fmt: skip
def test_risk_status_for_category(category, status):
    assert risk_status_for_category(category) == status


def test_risk_status_for_unknown_category_raises():
    with pytest.raises(ValueError):
        risk_status_for_category("Done")


@pytest.mark.parametrize(
    ("type_info", "close", "reopen"),
    [(BASIC_ISSUE, "Done", "To Do"), (AGILE_BUG, "Resolved", "New"), (SCRUM_BUG, "Done", "New"),
     (CUSTOM, "Fixed", "Triage")],
)  # fmt: skip
def test_first_state_in_keeps_type_order(type_info, close, reopen):
    assert first_state_in(type_info, CLOSE_CATEGORIES) == close
    assert first_state_in(type_info, REOPEN_CATEGORIES) == reopen


def test_first_state_in_without_a_match():
    assert first_state_in(AGILE_BUG, ("Removed",)) is None
    assert first_state_in(make_type(), CLOSE_CATEGORIES) is None


def test_first_state_in_skips_states_with_unknown_categories():
    odd = make_type(("Limbo", "Mystery"), ("Done", "Completed"))
    assert first_state_in(odd, ("Completed",)) == "Done"
    assert first_state_in(odd, ("In Progress", "Completed")) == "Done"


# --- scanner status decisions: every row of the table -----------------------------------

STATUSES = ("open", "resolved", "removed")


@pytest.mark.parametrize("previous", [None, "open", "resolved"])
@pytest.mark.parametrize("new", ["open", "resolved"])
def test_new_risk_takes_the_scanner_status_without_action(previous, new):
    decision = decide_scanner_status_change(previous, new, None)
    assert (decision.new_status, decision.action) == (new, None)


@pytest.mark.parametrize("previous", [None, "open"])
@pytest.mark.parametrize("current", STATUSES)
def test_scanner_keeps_reporting_open_changes_nothing(previous, current):
    # Includes "a person resolved or removed the item": no flip-flop against people.
    decision = decide_scanner_status_change(previous, "open", current)
    assert (decision.new_status, decision.action) == (current, None)


@pytest.mark.parametrize("previous", [None, "open"])
@pytest.mark.parametrize(
    ("current", "status"), [("open", "resolved"), ("resolved", "resolved"), ("removed", "removed")]
)
def test_scanner_says_resolved(previous, current, status):
    decision = decide_scanner_status_change(previous, "resolved", current)
    assert (decision.new_status, decision.action) == (status, "comment_resolved")


@pytest.mark.parametrize("current", STATUSES)
def test_scanner_repeats_resolved_changes_nothing(current):
    decision = decide_scanner_status_change("resolved", "resolved", current)
    assert (decision.new_status, decision.action) == (current, None)


@pytest.mark.parametrize("current", STATUSES)
def test_regression_reopens(current):
    decision = decide_scanner_status_change("resolved", "open", current)
    assert (decision.new_status, decision.action) == ("open", "reopen")


def test_decision_is_a_frozen_value_with_a_reason():
    decision = decide_scanner_status_change("resolved", "open", "resolved")
    assert decision == ScannerDecision("open", "reopen", decision.reason)
    assert "regression" in decision.reason
    with pytest.raises(AttributeError):
        decision.action = None  # type: ignore[misc]


@pytest.mark.parametrize(
    ("previous", "new", "current"),
    [("closed", "open", "open"), (None, "removed", "open"), (None, "open", "closed"),
     ("open", "Resolved", "open")],
)  # fmt: skip
def test_scanner_decision_rejects_unknown_values(previous, new, current):
    with pytest.raises(ValueError):
        decide_scanner_status_change(previous, new, current)


# --- Azure DevOps state decisions ----------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "category", "expected"),
    [
        ("open", "Proposed", None),
        ("open", "InProgress", None),
        ("open", "Resolved", "resolved"),
        ("open", "Completed", "resolved"),
        ("open", "Removed", "removed"),
        ("resolved", "Proposed", "open"),
        ("resolved", "InProgress", "open"),
        ("resolved", "Resolved", None),
        ("resolved", "Completed", None),
        ("resolved", "Removed", "removed"),
        ("removed", "Proposed", "open"),
        ("removed", "InProgress", "open"),
        ("removed", "Completed", "resolved"),
        ("removed", "Removed", None),
    ],
)
def test_decide_ado_state_change(current, category, expected):
    assert decide_ado_state_change(current, category) == expected


def test_decide_ado_state_change_rejects_unknown_values():
    with pytest.raises(ValueError):
        decide_ado_state_change("closed", "Completed")
    with pytest.raises(ValueError):
        decide_ado_state_change("open", "Done")
