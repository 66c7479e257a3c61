"""Risk severities: canonical names, ordering and their Azure DevOps field values."""

from __future__ import annotations

SEVERITIES: tuple[str, ...] = ("info", "low", "medium", "high", "critical")
"""Canonical severities, lowest first."""

_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

# Allowed values of Microsoft.VSTS.Common.Severity (AZURE_DEVOPS.md 3.2); Basic has no "info".
_ADO_SEVERITY = {
    "critical": "1 - Critical",
    "high": "2 - High",
    "medium": "3 - Medium",
    "low": "4 - Low",
    "info": "4 - Low",
}

# Microsoft.VSTS.Common.Priority is an integer 1..4 (SPEC 4, "Types without Severity").
_ADO_PRIORITY = {"critical": 1, "high": 2, "medium": 3, "low": 4, "info": 4}


def normalize_severity(severity: str) -> str:
    """Return the canonical lower-case severity, or raise ValueError."""
    if isinstance(severity, str):
        canonical = severity.lower()
        if canonical in _RANK:
            return canonical
    raise ValueError(f"unknown severity {severity!r}; expected one of {', '.join(SEVERITIES)}")


def severity_rank(severity: str) -> int:
    """Return the position of a severity in SEVERITIES (info is 0, critical is 4)."""
    return _RANK[normalize_severity(severity)]


def meets_threshold(severity: str, threshold: str) -> bool:
    """Return True when severity is at or above threshold."""
    return severity_rank(severity) >= severity_rank(threshold)


def severity_label(severity: str) -> str:
    """Return the display label of a severity, e.g. "High"."""
    return normalize_severity(severity).capitalize()


def ado_severity_value(severity: str) -> str:
    """Return the Microsoft.VSTS.Common.Severity value for a severity, e.g. "2 - High"."""
    return _ADO_SEVERITY[normalize_severity(severity)]


def ado_priority_value(severity: str) -> int:
    """Return the Microsoft.VSTS.Common.Priority value (1..4) for a severity."""
    return _ADO_PRIORITY[normalize_severity(severity)]
