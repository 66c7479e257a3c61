"""What a change of a linked work item means for its risk (webhook.domain.work_item_changes)."""

from __future__ import annotations

import pytest

from webhook.domain.sync_plan import CONTENT_CHANGED, JobSpec, WrittenContent
from webhook.domain.work_item_changes import (
    LinkedItem,
    WorkItemChange,
    catch_up_after_link,
    is_stale,
    plan_work_item_change,
    replay_skipped,
    restores,
)

ITEM = LinkedItem(ado_id=7, rev=5, deleted=False, type="Bug", project="P")
BINNED = LinkedItem(ado_id=7, rev=5, deleted=True, type="Bug", project="P")


def change(**kw: object) -> WorkItemChange:
    base: dict[str, object] = {"rev": 6, "state": None, "category": None, "by": None, "at": None}
    return WorkItemChange(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rev", "check_rev", "allow_same_rev", "stale"),
    [
        (4, True, False, True),  # older than applied
        (5, True, False, True),  # the echo of what was applied
        (5, True, True, False),  # current truth at the same rev (deletion keeps the rev)
        (4, False, False, False),  # no rev check asked for
        (None, True, False, False),  # no rev known
        (6, True, False, False),
    ],
)
def test_a_change_is_stale_only_when_older_than_what_was_applied(
    rev: int | None, check_rev: bool, allow_same_rev: bool, stale: bool
) -> None:
    assert is_stale(ITEM, change(rev=rev, check_rev=check_rev, allow_same_rev=allow_same_rev)) is (
        stale
    )


def test_closing_the_item_resolves_the_risk_and_calls_the_scanner_back() -> None:
    plan = plan_work_item_change(
        ITEM,
        change(state="Closed", category="Completed", by="Ann"),
        risk_status="open",
        has_callback=True,
    )
    assert plan.new_status == "resolved"
    assert plan.history == [
        (
            "status_changed",
            {"from": "open", "to": "resolved", "state": "Closed", "by": "Ann", "via": "hook"},
        )
    ]
    assert plan.jobs == [JobSpec("callback", "callback", {"status": "resolved"})]


@pytest.mark.parametrize(
    ("status", "category", "new_status"),
    [
        ("resolved", "Proposed", "open"),
        ("open", "Removed", "removed"),
        ("open", "InProgress", None),
    ],
)
def test_the_state_category_decides_the_status(
    status: str, category: str, new_status: str | None
) -> None:
    plan = plan_work_item_change(
        ITEM, change(state="S", category=category), risk_status=status, has_callback=False
    )
    assert plan.new_status == new_status
    assert plan.jobs == []  # no callback URL, no callback


def test_a_deletion_is_recorded_with_who_and_when_and_changes_no_status() -> None:
    plan = plan_work_item_change(
        ITEM,
        change(
            deleted=True, deleted_by="Bob", deleted_at="2024-01-02T03:04:05Z", origin="reconcile"
        ),
        risk_status="open",
        has_callback=True,
    )
    detail = {"id": 7, "by": "Bob", "via": "reconcile", "at": "2024-01-02T03:04:05Z"}
    assert plan.history == [("work_item_deleted", detail)]
    assert (plan.new_status, plan.jobs) == (None, [])


def test_a_restore_replays_what_was_skipped_and_nothing_else_does() -> None:
    skipped = [JobSpec("scanner_resolved", "ado", {})]
    assert restores(BINNED, change(deleted=False))
    assert not restores(ITEM, change(deleted=False))
    assert not restores(BINNED, change(deleted=None))
    plan = plan_work_item_change(
        BINNED, change(deleted=False), risk_status="open", has_callback=False, replay=skipped
    )
    assert plan.history == [("work_item_restored", {"id": 7, "via": "hook"})]
    assert plan.jobs == skipped
    unchanged = plan_work_item_change(
        ITEM, change(deleted=False), risk_status="open", has_callback=False, replay=skipped
    )
    assert unchanged.history == [] and unchanged.jobs == []


def test_type_and_project_moves_are_recorded() -> None:
    plan = plan_work_item_change(
        ITEM,
        change(work_item_type="Task", project="Q"),
        risk_status="open",
        has_callback=False,
    )
    assert plan.history == [
        ("work_item_type_changed", {"from": "Bug", "to": "Task"}),
        ("work_item_moved", {"from": "P", "to": "Q"}),
    ]


def test_skipped_severity_changes_collapse_into_one_from_what_the_item_shows() -> None:
    skipped = [
        {"kind": "severity_changed", "lane": "ado", "payload": {"from": "low", "to": "high"}},
        {"kind": "content_changed", "lane": "ado", "payload": {}},
        {"kind": "severity_changed", "lane": "ado", "payload": {"from": "high", "to": "critical"}},
        {"kind": None, "payload": {}},  # not a job: ignored
    ]
    assert replay_skipped(skipped, "critical") == [
        JobSpec("severity_changed", "ado", {"from": "low", "to": "critical"}),
        JobSpec("content_changed", "ado", {}),
    ]
    # Back where the item was: no severity change at all.
    assert replay_skipped(skipped[:1], "low") == []


@pytest.mark.parametrize(
    ("severity", "status", "item_hash", "kinds"),
    [
        ("high", "open", "h1", []),  # nothing changed meanwhile
        ("high", "open", "h2", [CONTENT_CHANGED]),
        ("critical", "open", "h2", ["severity_changed"]),  # the update brings the content
        ("high", "resolved", "h1", ["scanner_resolved"]),
        ("low", "resolved", "h2", ["severity_changed", "scanner_resolved"]),
    ],
)
def test_a_link_catches_up_with_what_the_scanner_changed_meanwhile(
    severity: str, status: str, item_hash: str, kinds: list[str]
) -> None:
    jobs = catch_up_after_link(
        severity=severity,
        status=status,
        item_hash=item_hash,
        rendered_severity="high",
        written=WrittenContent("t", "b", "h1"),
    )
    assert [j.kind for j in jobs] == kinds


def test_an_adopted_item_with_unknown_content_gets_a_content_update() -> None:
    jobs = catch_up_after_link(
        severity="high",
        status="open",
        item_hash="h1",
        rendered_severity="high",
        written=WrittenContent(None, None, None),
    )
    assert [j.kind for j in jobs] == [CONTENT_CHANGED]
