"""Decide what outside work a change to a risk implies (pure; the store records the result)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from webhook.domain.models import Risk, Template
from webhook.domain.states import decide_scanner_status_change
from webhook.domain.templates import choose_template

# Job kinds the worker knows how to perform.
CREATE_WORK_ITEM = "create_work_item"
SEVERITY_CHANGED = "severity_changed"
SCANNER_RESOLVED = "scanner_resolved"
SCANNER_REOPENED = "scanner_reopened"
CALLBACK = "callback"
APPLY_HOOK_EVENT = "apply_hook_event"

ADO_LANE = "ado"
CALLBACK_LANE = "callback"


@dataclass(frozen=True)
class JobSpec:
    kind: str
    lane: str  # lane suffix; the store prefixes it with the risk id
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreviousRisk:
    id: int
    severity: str
    status: str
    scanner_status: str
    content_hash: str


@dataclass(frozen=True)
class RiskChange:
    action: str  # created | updated | unchanged
    status: str
    scanner_status: str
    resolution_by_scanner: bool
    jobs: tuple[JobSpec, ...]
    history: tuple[tuple[str, dict[str, Any]], ...]


def content_hash(risk: Risk) -> str:
    """Hash of everything the scanner sent, to tell `updated` from `unchanged` (hex SHA-256).

    Never raises on text: validation refuses lone surrogates (webhook.schemas.Text), but should
    one slip through, "surrogatepass" still gives each distinct text its own stable hash.
    """
    canonical = {
        "name": risk.name,
        "severity": risk.severity,
        "status": risk.status,
        "url": risk.url,
        "definition": risk.definition,
        "evidence": risk.evidence,
        "proof": risk.proof,
        "remediation": risk.remediation,
        "assets": [[a.group, a.identifier] for a in risk.assets],
        "project": risk.project,
        "tags": list(risk.tags),
    }
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
) -> RiskChange:
    """Work out the new status and the jobs implied by a scanner report of one risk.

    `incoming.status` is what the scanner reports (open/resolved).
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

    resolution_by_scanner = status == "resolved" and (previous is None or previous.status != status)
    return RiskChange(
        action, status, incoming.status, resolution_by_scanner, tuple(jobs), tuple(history)
    )
