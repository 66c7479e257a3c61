"""Tests for webhook.domain.models, and the domain package's import rule."""

import ast
import dataclasses
import sys
from pathlib import Path

import pytest

from webhook.domain.models import Asset, Risk, Template, WorkItemState, WorkItemTypeInfo

DOMAIN = Path(__file__).resolve().parents[1] / "webhook" / "domain"
ALLOWED_THIRD_PARTY = {"nh3", "markdown_it", "webhook"}


def make_template(**overrides):
    values = {
        "id": 1,
        "name": "Security bugs",
        "connection_id": 7,
        "project": "Fabrikam",
        "work_item_type": "Bug",
        "auto_create": True,
        "severity_threshold": "high",
    }
    values.update(overrides)
    return Template(**values)


def test_risk_defaults_and_canonical_severity():
    risk = Risk(id=None, source="scanner", key="k", name="n", severity="CRITICAL")
    assert risk.severity == "critical"
    assert risk.status == "open"
    assert risk.assets == [] and risk.tags == []
    assert risk.url is risk.project is risk.definition is None
    other = Risk(id=None, source="scanner", key="k2", name="n", severity="low")
    other.assets.append(Asset("g", "i"))
    assert risk.assets == []  # no shared mutable default


def test_risk_rejects_unknown_severity_and_status():
    with pytest.raises(ValueError, match="severity"):
        Risk(id=1, source="s", key="k", name="n", severity="blocker")
    with pytest.raises(ValueError, match="status"):
        Risk(id=1, source="s", key="k", name="n", severity="low", status="closed")


@pytest.mark.parametrize("status", ["open", "resolved", "removed"])
def test_risk_accepts_every_combined_status(status):
    assert Risk(id=1, source="s", key="k", name="n", severity="low", status=status).status == status


def test_asset_is_frozen_and_hashable():
    asset = Asset(group="hosts", identifier="10.0.0.1")
    assert {asset, Asset("hosts", "10.0.0.1")} == {asset}
    with pytest.raises(dataclasses.FrozenInstanceError):
        asset.group = "other"  # type: ignore[misc]


def test_template_defaults():
    template = make_template()
    assert template.sources is None
    assert template.title_format == "{name}"
    assert template.tags == ()
    assert template.fields == {}
    assert template.area_path is template.iteration_path is None
    assert template.close_on_resolve is False


def test_template_canonicalises_threshold_and_copies_collections():
    fields = {"Custom.Team": "Red"}
    template = make_template(
        severity_threshold="Medium", sources=["a", "b"], tags=["x"], fields=fields
    )
    assert template.severity_threshold == "medium"
    assert template.sources == ("a", "b")
    assert template.tags == ("x",)
    fields["Custom.Team"] = "Blue"
    assert template.fields == {"Custom.Team": "Red"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        template.name = "other"  # type: ignore[misc]
    assert dataclasses.replace(template, id=2).fields == {"Custom.Team": "Red"}
    assert dataclasses.asdict(template)["sources"] == ("a", "b")


def test_template_rejects_unknown_threshold():
    with pytest.raises(ValueError):
        make_template(severity_threshold="severe")


def test_work_item_type_info_freezes_collections():
    info = WorkItemTypeInfo(
        name="Bug",
        states=[WorkItemState("New", "Proposed")],  # type: ignore[arg-type]
        field_names={"System.Title"},  # type: ignore[arg-type]
        required_fields=["System.Title"],  # type: ignore[arg-type]
    )
    assert info.states == (WorkItemState("New", "Proposed"),)
    assert info.field_names == frozenset({"System.Title"})
    assert info.required_fields == frozenset({"System.Title"})
    assert hash(info) == hash(
        WorkItemTypeInfo(
            "Bug",
            (WorkItemState("New", "Proposed"),),
            frozenset({"System.Title"}),
            frozenset({"System.Title"}),
        )
    )


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted(DOMAIN.glob("*.py")), ids=lambda p: p.name)
def test_domain_imports_only_stdlib_nh3_and_markdown_it(path):
    foreign = {
        root
        for root in _imported_roots(path)
        if root not in sys.stdlib_module_names and root not in ALLOWED_THIRD_PARTY
    }
    assert not foreign, f"{path.name} imports {sorted(foreign)}"


@pytest.mark.parametrize("path", sorted(DOMAIN.glob("*.py")), ids=lambda p: p.name)
def test_domain_imports_nothing_from_the_rest_of_the_app(path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "webhook":
                assert node.module.startswith("webhook.domain"), node.module
        elif isinstance(node, ast.ImportFrom):
            assert node.level <= 1, f"{path.name} reaches outside the domain package"
