"""Plain domain objects: risks, templates and what Azure DevOps tells us about a type."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.domain.severity import normalize_severity

RISK_STATUSES: tuple[str, ...] = ("open", "resolved", "removed")
"""Combined status of a risk (scanner's and people's view together)."""


@dataclass(frozen=True)
class Asset:
    """One impacted asset of a risk."""

    group: str
    identifier: str


@dataclass
class Risk:
    """A security finding reported by a scanner."""

    id: int | None
    source: str
    key: str
    name: str
    severity: str
    status: str = "open"
    url: str | None = None
    definition: str | None = None
    evidence: str | None = None
    proof: str | None = None
    remediation: str | None = None
    assets: list[Asset] = field(default_factory=list)
    project: str | None = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Canonicalise the severity and check the status."""
        self.severity = normalize_severity(self.severity)
        if self.status not in RISK_STATUSES:
            raise ValueError(f"unknown risk status {self.status!r}")


@dataclass(frozen=True)
class Template:
    """How risks become work items: where, of which type, with which fields."""

    id: int
    name: str
    connection_id: int
    project: str
    work_item_type: str
    auto_create: bool
    severity_threshold: str
    sources: tuple[str, ...] | None = None
    title_format: str = "{name}"
    tags: tuple[str, ...] = ()
    area_path: str | None = None
    iteration_path: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    close_on_resolve: bool = False

    def __post_init__(self) -> None:
        """Canonicalise the threshold; copy the collections (lists are accepted)."""
        object.__setattr__(self, "severity_threshold", normalize_severity(self.severity_threshold))
        if self.sources is not None:
            object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "fields", dict(self.fields))


@dataclass(frozen=True)
class WorkItemState:
    """A state of a work item type and its category (Proposed, InProgress, ...)."""

    name: str
    category: str


@dataclass(frozen=True)
class WorkItemTypeInfo:
    """What the service needs to know about a work item type, as read from Azure DevOps."""

    name: str
    states: tuple[WorkItemState, ...]
    field_names: frozenset[str]
    required_fields: frozenset[str]

    def __post_init__(self) -> None:
        """Freeze the collections (lists and sets are accepted)."""
        object.__setattr__(self, "states", tuple(self.states))
        object.__setattr__(self, "field_names", frozenset(self.field_names))
        object.__setattr__(self, "required_fields", frozenset(self.required_fields))
