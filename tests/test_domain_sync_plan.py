"""Tests for webhook.domain.sync_plan: content rewrites of linked risks, backfill matching."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from webhook.domain.models import Asset, Risk, Template
from webhook.domain.severity import SEVERITIES
from webhook.domain.sync_plan import (
    CONTENT_CHANGED,
    CREATE_WORK_ITEM,
    SEVERITY_CHANGED,
    PreviousRisk,
    backfill_rules,
    content_hash,
    item_content_hash,
    plan_risk_change,
)
from webhook.domain.templates import choose_template


def make_risk(**fields) -> Risk:
    values = {"id": None, "source": "sast", "key": "K-1", "name": "SQLi", "severity": "high"}
    return Risk(**{**values, **fields})


def previous_of(risk: Risk, **overrides) -> PreviousRisk:
    prev = PreviousRisk(
        id=7,
        severity=risk.severity,
        status="open",
        scanner_status="open",
        content_hash=content_hash(risk),
        item_hash=item_content_hash(risk),
    )
    return replace(prev, **overrides)


def plan(old: Risk, new: Risk, *, has_work_item=True, content_pending=False, item_hash=...):
    previous = previous_of(old) if item_hash is ... else previous_of(old, item_hash=item_hash)
    return plan_risk_change(
        previous,
        new,
        incoming_hash=content_hash(new),
        templates=[],
        has_work_item=has_work_item,
        create_pending=False,
        has_callback=False,
        incoming_item_hash=item_content_hash(new),
        content_pending=content_pending,
        content_delay=60.0,
    )


def kinds(change) -> list[str]:
    return [job.kind for job in change.jobs]


def test_a_content_change_of_a_linked_risk_plans_one_delayed_rewrite() -> None:
    old = make_risk(evidence="GET /a")
    for new in (
        make_risk(evidence="GET /b"),
        make_risk(assets=[Asset("host", "db2")]),
        make_risk(definition="**new**"),
        make_risk(url="https://scanner.example/f/2"),
        make_risk(name="SQLi (renamed)"),
    ):
        change = plan(old, new)
        assert kinds(change) == [CONTENT_CHANGED]
        assert change.jobs[0].delay == 60.0 and change.jobs[0].lane == "ado"
        assert not change.supersedes_content


def test_changes_within_the_window_coalesce_into_the_pending_rewrite() -> None:
    change = plan(make_risk(evidence="a"), make_risk(evidence="b"), content_pending=True)
    assert kinds(change) == [] and not change.supersedes_content


def test_no_rewrite_without_a_work_item_or_without_a_content_change() -> None:
    assert kinds(plan(make_risk(evidence="a"), make_risk(evidence="b"), has_work_item=False)) == []
    # Tags are not shown in the body: updated, but nothing to rewrite.
    change = plan(make_risk(tags=["a"]), make_risk(tags=["b"]))
    assert change.action == "updated" and kinds(change) == []


def test_a_risk_stored_before_item_hashes_existed_gets_its_rewrite() -> None:
    change = plan(make_risk(evidence="a"), make_risk(evidence="b"), item_hash=None)
    assert kinds(change) == [CONTENT_CHANGED]


def test_a_severity_change_carries_the_content_in_its_own_update() -> None:
    old, new = make_risk(evidence="a"), make_risk(evidence="b", severity="critical")
    change = plan(old, new)
    assert kinds(change) == [SEVERITY_CHANGED] and not change.supersedes_content
    # A rewrite waiting from an earlier report is dropped: the severity update brings it.
    change = plan(old, new, content_pending=True)
    assert kinds(change) == [SEVERITY_CHANGED] and change.supersedes_content


def test_a_scanner_resolution_carries_the_content_too() -> None:
    change = plan(make_risk(evidence="a"), make_risk(evidence="b", status="resolved"))
    assert kinds(change) == ["scanner_resolved"]


# ---- backfill ------------------------------------------------------------------------------

SOURCES = ("sast", "dast", "sca")

templates_strategy = st.lists(
    st.builds(
        lambda auto, threshold, sources: (auto, threshold, sources),
        st.booleans(),
        st.sampled_from(SEVERITIES),
        st.one_of(st.none(), st.just(()), st.lists(st.sampled_from(SOURCES), max_size=3)),
    ),
    min_size=1,
    max_size=5,
)


def _matches(rules, severity: str, source: str) -> bool:
    for rule in rules:
        if rule.severity != severity:
            continue
        if rule.only_sources is not None:
            if source in rule.only_sources:
                return True
        elif source not in rule.except_sources:
            return True
    return False


@given(templates_strategy)
def test_backfill_rules_agree_with_template_choice(specs) -> None:
    templates = [
        Template(
            id=i + 1,
            name=f"t{i}",
            connection_id=1,
            project="P",
            work_item_type="Bug",
            auto_create=auto,
            severity_threshold=threshold,
            sources=tuple(sources) if sources is not None else None,
        )
        for i, (auto, threshold, sources) in enumerate(specs)
    ]
    for template in templates:
        rules = backfill_rules(templates, template)
        for severity in SEVERITIES:
            for source in (*SOURCES, "other"):
                chosen = choose_template(templates, severity=severity, source=source)
                expected = chosen is not None and chosen.id == template.id
                assert _matches(rules, severity, source) == expected, (template, severity, source)


def test_backfill_of_a_template_split_by_threshold_and_sources() -> None:
    bugs = Template(1, "bugs", 1, "AppSec", "Bug", True, "high")
    tasks = Template(2, "tasks", 1, "Platform", "Task", True, "low")
    dast = Template(3, "dast", 1, "Web", "Bug", True, "critical", sources=("dast",))
    manual = Template(4, "manual", 1, "P", "Bug", False, "info")
    everything = [bugs, tasks, dast, manual]
    assert {
        (r.severity, r.only_sources, r.except_sources) for r in backfill_rules(everything, bugs)
    } == {("high", None, frozenset()), ("critical", None, frozenset({"dast"}))}
    assert [r.severity for r in backfill_rules(everything, tasks)] == ["low", "medium"]
    assert backfill_rules(everything, manual) == []  # template choice never picks it
    # A create is planned by the same choice at ingestion.
    change = plan_risk_change(
        None,
        make_risk(severity="critical", source="dast"),
        incoming_hash="x",
        templates=everything,
        has_work_item=False,
        create_pending=False,
        has_callback=False,
    )
    assert [(j.kind, j.payload) for j in change.jobs] == [(CREATE_WORK_ITEM, {"template_id": 3})]
