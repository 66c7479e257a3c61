"""Decide what outside work a change to a risk implies (pure; the store records the result)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from webhook.domain.jobs import JobKind, Lane
from webhook.domain.models import Risk, Template
from webhook.domain.severity import SEVERITIES, meets_threshold, severity_rank
from webhook.domain.states import decide_scanner_status_change
from webhook.domain.templates import choose_template

# Job kinds and lanes under their historical names (webhook.domain.jobs has the enums).
CREATE_WORK_ITEM = JobKind.CREATE_WORK_ITEM
SEVERITY_CHANGED = JobKind.SEVERITY_CHANGED
CONTENT_CHANGED = JobKind.CONTENT_CHANGED
SCANNER_RESOLVED = JobKind.SCANNER_RESOLVED
SCANNER_REOPENED = JobKind.SCANNER_REOPENED
CALLBACK = JobKind.CALLBACK
APPLY_HOOK_EVENT = JobKind.APPLY_HOOK_EVENT

ADO_LANE = Lane.ADO
CALLBACK_LANE = Lane.CALLBACK


@dataclass(frozen=True)
class JobSpec:
    kind: str
    lane: str  # lane suffix; the store prefixes it with the risk id
    payload: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0  # seconds from now until the job is due


@dataclass(frozen=True)
class PreviousRisk:
    id: int
    severity: str
    status: str
    scanner_status: str
    content_hash: str
    item_hash: str | None = None  # item_content_hash when stored (None: stored before it existed)


@dataclass(frozen=True)
class WrittenContent:
    """What the service wrote to a work item's title and body (stored on its link).

    `item_hash` is item_content_hash of the risk it was rendered from. Each is None when
    unknown, e.g. for an item adopted from an earlier attempt.
    """

    title: str | None
    body_hash: str | None
    item_hash: str | None


@dataclass(frozen=True)
class RiskChange:
    action: str  # created | updated | unchanged
    status: str
    scanner_status: str
    resolution_by_scanner: bool
    jobs: tuple[JobSpec, ...]
    history: tuple[tuple[str, dict[str, Any]], ...]
    # A pending content_changed job of the risk is made redundant by a job planned here (every
    # update of an item brings its content up to date in the same revision): drop it.
    supersedes_content: bool = False


def content_hash(risk: Risk) -> str:
    """Hash of everything the scanner sent, to tell `updated` from `unchanged` (hex SHA-256).

    Never raises on text: validation refuses lone surrogates (webhook.schemas.Text), but should
    one slip through, "surrogatepass" still gives each distinct text its own stable hash.
    """
    return _digest({**_shown(risk), "status": risk.status, "tags": list(risk.tags)})


def item_content_hash(risk: Risk) -> str:
    """Hash of what a risk's work item shows (title and body): a change of it means a rewrite.

    Source and key never change for a stored risk; status and tags are not part of the body.
    """
    return _digest(_shown(risk))


def _shown(risk: Risk) -> dict[str, Any]:
    """What a risk's work item shows of it (title and body), as plain JSON values."""
    return {
        "name": risk.name,
        "severity": risk.severity,
        "url": risk.url,
        "definition": risk.definition,
        "evidence": risk.evidence,
        "proof": risk.proof,
        "remediation": risk.remediation,
        "assets": [[a.group, a.identifier] for a in risk.assets],
        "project": risk.project,
    }


def _digest(canonical: dict[str, Any]) -> str:
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


def plan_risk_change(
    previous: PreviousRisk | None,
    incoming: Risk,
    *,
    incoming_hash: str,
    templates: list[Template],
    has_work_item: bool,
    create_pending: bool,
    has_callback: bool,
    incoming_item_hash: str | None = None,
    content_pending: bool = False,
    content_delay: float = 0.0,
) -> RiskChange:
    """Work out the new status and the jobs implied by a scanner report of one risk.

    `incoming.status` is what the scanner reports (open/resolved). `incoming_item_hash` is
    item_content_hash(incoming); when it differs from the stored one and the risk has a work
    item, a CONTENT_CHANGED job is planned `content_delay` seconds ahead (WEBHOOK_CONTENT_SYNC_
    SECONDS) — unless one is pending already (`content_pending`: it reads the newest content
    when it runs, so changes coalesce) or another job planned here updates the item anyway.
    """
    if previous is not None and previous.content_hash == incoming_hash:
        return RiskChange("unchanged", previous.status, previous.scanner_status, False, (), ())

    decision = decide_scanner_status_change(
        previous.scanner_status if previous else None,
        incoming.status,
        previous.status if previous else None,
    )
    status = decision.new_status
    jobs: list[JobSpec] = []
    history: list[tuple[str, dict[str, Any]]] = []
    action = "created" if previous is None else "updated"
    history.append((f"risk_{action}", {"severity": incoming.severity, "status": status}))

    if previous is not None and previous.severity != incoming.severity:
        history.append(("severity_changed", {"from": previous.severity, "to": incoming.severity}))
        if has_work_item:
            jobs.append(
                JobSpec(
                    SEVERITY_CHANGED,
                    ADO_LANE,
                    {"from": previous.severity, "to": incoming.severity},
                )
            )

    if decision.action == "comment_resolved" and has_work_item:
        jobs.append(JobSpec(SCANNER_RESOLVED, ADO_LANE, {}))
    elif decision.action == "reopen":
        history.append(("scanner_regression", {}))
        if has_work_item:
            jobs.append(JobSpec(SCANNER_REOPENED, ADO_LANE, {}))

    if status == "open" and not has_work_item and not create_pending:
        template = choose_template(templates, severity=incoming.severity, source=incoming.source)
        if template is not None:
            jobs.append(JobSpec(CREATE_WORK_ITEM, ADO_LANE, {"template_id": template.id}))

    if previous is not None and status != previous.status:
        history.append(("status_changed", {"from": previous.status, "to": status, "by": "scanner"}))
        if has_callback:
            jobs.append(JobSpec(CALLBACK, CALLBACK_LANE, {"status": status}))

    # Every update of the item carries its current content, so a content change rides along
    # with a severity or status update instead of costing a revision of its own.
    updates_item = any(j.lane == ADO_LANE and j.kind != CREATE_WORK_ITEM for j in jobs)
    content_changed = (
        previous is not None
        and has_work_item
        and (previous.item_hash is None or previous.item_hash != incoming_item_hash)
    )
    if content_changed and not updates_item and not content_pending:
        jobs.append(JobSpec(CONTENT_CHANGED, ADO_LANE, {}, delay=content_delay))

    resolution_by_scanner = status == "resolved" and (previous is None or previous.status != status)
    return RiskChange(
        action,
        status,
        incoming.status,
        resolution_by_scanner,
        tuple(jobs),
        tuple(history),
        supersedes_content=updates_item and content_pending,
    )


@dataclass(frozen=True)
class BackfillRule:
    """Risks of one severity that a template's backfill takes (see backfill_rules).

    only_sources None means any source except `except_sources`.
    """

    severity: str
    only_sources: tuple[str, ...] | None
    except_sources: frozenset[str]


def backfill_rules(templates: list[Template], template: Template) -> list[BackfillRule]:
    """The (severity, source) conditions under which template choice picks `template` now.

    Template choice (SPEC 4) only ever picks auto-create templates: the highest threshold met
    wins, ties to the lowest id. A template that would win for a severity loses it, for its
    sources, to every auto-create template ranked above it whose threshold that severity meets.
    Agrees with choose_template for every severity and source; an empty list matches nothing.
    """
    if not template.auto_create:
        return []
    rank = severity_rank(template.severity_threshold)
    better = [
        t
        for t in templates
        if t.auto_create
        and t.id != template.id
        and (severity_rank(t.severity_threshold), -t.id) > (rank, -template.id)
    ]
    rules: list[BackfillRule] = []
    for severity in SEVERITIES:
        if not meets_threshold(severity, template.severity_threshold):
            continue
        winners = [t for t in better if meets_threshold(severity, t.severity_threshold)]
        if any(not t.sources for t in winners):
            continue  # a better template takes every source
        taken = frozenset(s for t in winners for s in t.sources or ())
        if template.sources:
            only = tuple(s for s in dict.fromkeys(template.sources) if s not in taken)
            if only:
                rules.append(BackfillRule(severity, only, frozenset()))
        else:
            rules.append(BackfillRule(severity, None, taken))
    return rules
