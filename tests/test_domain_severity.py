"""Tests for webhook.domain.severity."""

import pytest

from webhook.domain.severity import (
    SEVERITIES,
    ado_priority_value,
    ado_severity_value,
    meets_threshold,
    normalize_severity,
    severity_label,
    severity_rank,
)


def test_severities_are_ordered_lowest_first():
    assert SEVERITIES == ("info", "low", "medium", "high", "critical")
    assert [severity_rank(s) for s in SEVERITIES] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("raw", ["high", "HIGH", "High", "hIgH"])
def test_normalize_is_case_insensitive(raw):
    assert normalize_severity(raw) == "high"


@pytest.mark.parametrize("raw", ["", " high", "high ", "severe", "urgent", "1", None, 3, b"high"])
def test_normalize_rejects_anything_else(raw):
    with pytest.raises(ValueError, match="unknown severity"):
        normalize_severity(raw)


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("threshold", SEVERITIES)
def test_meets_threshold_matrix(severity, threshold):
    expected = SEVERITIES.index(severity) >= SEVERITIES.index(threshold)
    assert meets_threshold(severity, threshold) is expected
    assert meets_threshold(severity.upper(), threshold.title()) is expected


def test_meets_threshold_rejects_unknown_values():
    with pytest.raises(ValueError):
        meets_threshold("high", "severe")
    with pytest.raises(ValueError):
        meets_threshold("severe", "high")


@pytest.mark.parametrize(
    ("severity", "label", "ado_severity", "priority"),
    [
        ("critical", "Critical", "1 - Critical", 1),
        ("high", "High", "2 - High", 2),
        ("medium", "Medium", "3 - Medium", 3),
        ("low", "Low", "4 - Low", 4),
        ("info", "Info", "4 - Low", 4),
    ],
)
def test_labels_and_azure_devops_values(severity, label, ado_severity, priority):
    assert severity_label(severity) == label
    assert severity_label(severity.upper()) == label
    assert ado_severity_value(severity) == ado_severity
    assert ado_priority_value(severity) == priority
    assert type(ado_priority_value(severity)) is int


def test_value_functions_reject_unknown_severity():
    for function in (severity_rank, severity_label, ado_severity_value, ado_priority_value):
        with pytest.raises(ValueError):
            function("blocker")
