"""Tests for webhook.domain.templates."""

import re

import pytest

from tests.fakes import BUG
from webhook.domain.models import Risk, Template, WorkItemState, WorkItemTypeInfo
from webhook.domain.templates import (
    MAX_TAGS,
    adoption_problems,
    build_tags,
    choose_template,
    clean_tag,
    fields_set_by_service,
    format_title,
    has_tag,
    is_reserved_tag,
    legacy_tracking_tag,
    missing_required_fields,
    split_tags,
    tracking_tag,
    utf16_length,
    validate_title_format,
)

AGILE_BUG = WorkItemTypeInfo(
    name="Bug",
    states=BUG.states,  # the Agile Bug's states: New, Active, Resolved, Closed
    field_names=frozenset(
        {
            "System.Title",
            "System.Description",
            "System.Tags",
            "System.AreaPath",
            "System.IterationPath",
            "Microsoft.VSTS.TCM.ReproSteps",
            "Microsoft.VSTS.Common.Severity",
            "Microsoft.VSTS.Common.Priority",
            "Microsoft.VSTS.Common.ValueArea",
        }
    ),
    required_fields=frozenset({"System.Title"}),
)
BASIC_ISSUE = WorkItemTypeInfo(
    name="Issue",
    states=(
        WorkItemState("To Do", "Proposed"),
        WorkItemState("Doing", "InProgress"),
        WorkItemState("Done", "Completed"),
    ),
    field_names=frozenset(
        {
            "System.Title",
            "System.Description",
            "System.Tags",
            "System.AreaPath",
            "System.IterationPath",
            "Microsoft.VSTS.Common.Priority",
        }
    ),
    required_fields=frozenset({"System.Title"}),
)


def make_template(id=1, threshold="high", **overrides):
    values = {
        "id": id,
        "name": f"t{id}",
        "connection_id": 1,
        "project": "Fabrikam",
        "work_item_type": "Bug",
        "auto_create": True,
        "severity_threshold": threshold,
    }
    values.update(overrides)
    return Template(**values)


def make_risk(**overrides):
    values = {
        "id": 42,
        "source": "zap",
        "key": "ZAP-1",
        "name": "SQL injection",
        "severity": "high",
        "project": "Shop",
    }
    values.update(overrides)
    return Risk(**values)


# --- choose_template ---------------------------------------------------------------------


def test_choose_template_routes_by_highest_threshold_met():
    bug = make_template(1, "high")
    task = make_template(2, "medium")
    templates = [task, bug]
    assert choose_template(templates, severity="critical", source="zap") is bug
    assert choose_template(templates, severity="high", source="zap") is bug
    assert choose_template(templates, severity="medium", source="zap") is task
    assert choose_template(templates, severity="low", source="zap") is None
    assert choose_template(templates, severity="INFO", source="zap") is None


def test_choose_template_ties_go_to_the_lowest_id():
    templates = [make_template(9, "high"), make_template(3, "high"), make_template(5, "high")]
    assert choose_template(templates, severity="critical", source="zap").id == 3


def test_choose_template_ignores_templates_without_auto_create():
    manual = make_template(1, "critical", auto_create=False)
    auto = make_template(2, "low")
    assert choose_template([manual, auto], severity="critical", source="zap") is auto
    assert choose_template([manual], severity="critical", source="zap") is None


def test_choose_template_filters_on_sources_when_set():
    zap_only = make_template(1, "critical", sources=("zap",))
    everyone = make_template(2, "info", sources=None)
    empty = make_template(3, "medium", sources=())
    templates = [zap_only, everyone, empty]
    assert choose_template(templates, severity="critical", source="zap") is zap_only
    assert choose_template(templates, severity="critical", source="trivy") is empty
    assert choose_template(templates, severity="low", source="trivy") is everyone
    assert choose_template(templates, severity="critical", source="ZAP") is empty


def test_choose_template_with_no_templates():
    assert choose_template([], severity="critical", source="zap") is None


# --- format_title ------------------------------------------------------------------------


def test_default_title_is_the_name():
    assert format_title("{name}", make_risk()) == "SQL injection"


def test_every_placeholder():
    title = format_title("[{severity}] {source}/{project}/{key}: {name}", make_risk())
    assert title == "[High] zap/Shop/ZAP-1: SQL injection"


def test_code_scanner_style_title():
    fmt = "Scanner - Project '{project}' contains issue '{name}'"
    assert (
        format_title(fmt, make_risk()) == "Scanner - Project 'Shop' contains issue 'SQL injection'"
    )


def test_missing_project_is_empty():
    assert format_title("{project}|{name}", make_risk(project=None)) == "|SQL injection"


@pytest.mark.parametrize(
    "fmt",
    [
        "{name.__class__}",
        "{name!r}",
        "{name:>300}",
        "{0}",
        "{}",
        "{unknown}",
        "{{name}",
        "{ name }",
    ],
)
def test_unknown_placeholders_stay_literal_and_nothing_is_evaluated(fmt):
    title = format_title(fmt, make_risk())
    assert "class" not in title.replace("__class__", "") and "<" not in title
    assert len(title) <= 255
    for literal in re.findall(r"\{[^{}]*\}", fmt):
        if literal not in ("{name}",):
            assert literal in title


def test_substituted_values_are_not_expanded_again():
    risk = make_risk(name="{key} and {name.__class__}")
    assert format_title("{name}", risk) == "{key} and {name.__class__}"


def test_title_is_single_line_and_whitespace_collapsed():
    risk = make_risk(name="  SQL\ninjection\r\n\tin   login\x00\x0b form ")
    assert format_title("{name}", risk) == "SQL injection in login form"


def test_title_cut_to_255_with_ellipsis():
    risk = make_risk(name="x" * 1000)
    title = format_title("{name}", risk)
    assert len(title) == 255
    assert title.endswith("…")
    assert format_title("{name}", make_risk(name="y" * 255)) == "y" * 255
    assert format_title("{name}", make_risk(name="y" * 256)) == "y" * 254 + "…"


def test_title_cut_counts_utf16_code_units():
    risk = make_risk(name="😀" * 200)
    title = format_title("{name}", risk)
    assert utf16_length(title) <= 255
    assert title.endswith("…")
    assert set(title[:-1]) == {"😀"}


def test_empty_title_falls_back():
    assert format_title("   ", make_risk()) == "SQL injection"
    assert format_title("{project}", make_risk(project=None)) == "SQL injection"
    assert format_title("{name}", make_risk(name=" \n ")) == "ZAP-1"
    assert format_title("{name}", make_risk(name=" ", key=" ")) == "Security finding"


def test_validate_title_format():
    assert validate_title_format("{name}") == []
    assert validate_title_format("{severity} {source} {project} {key} {name}") == []
    assert validate_title_format("no placeholders") == []
    assert validate_title_format("{name.__class__} {x} {x} {} {Name}") == [
        "{name.__class__}",
        "{x}",
        "{}",
        "{Name}",
    ]


# --- fields set by the service / required fields -----------------------------------------


def test_fields_set_for_agile_bug():
    template = make_template(area_path="Fabrikam\\Sec", fields={"Custom.Team": "Red"})
    assert fields_set_by_service(template, AGILE_BUG) == {
        "System.Title",
        "Microsoft.VSTS.TCM.ReproSteps",
        "Microsoft.VSTS.Common.Severity",
        "System.Tags",
        "System.AreaPath",
        "Custom.Team",
    }


def test_fields_set_for_basic_issue():
    template = make_template(iteration_path="Fabrikam\\Sprint 1")
    assert fields_set_by_service(template, BASIC_ISSUE) == {
        "System.Title",
        "System.Description",
        "Microsoft.VSTS.Common.Priority",
        "System.Tags",
        "System.IterationPath",
    }


def test_fields_the_type_lacks_do_not_count():
    bare = WorkItemTypeInfo("Odd", (), frozenset({"System.Title"}), frozenset())
    template = make_template(area_path="A", iteration_path="I")
    assert fields_set_by_service(template, bare) == {"System.Title"}


def test_missing_required_fields():
    info = WorkItemTypeInfo(
        "Bug",
        AGILE_BUG.states,
        AGILE_BUG.field_names | {"Custom.Team", "Custom.Owner"},
        frozenset(
            {
                "System.Title",
                "Microsoft.VSTS.TCM.ReproSteps",
                "Microsoft.VSTS.Common.Severity",
                "System.AreaPath",
                "Custom.Team",
                "Custom.Owner",
            }
        ),
    )
    assert missing_required_fields(make_template(), info) == [
        "Custom.Owner",
        "Custom.Team",
        "System.AreaPath",
    ]
    complete = make_template(area_path="F\\A", fields={"custom.team": "x", "Custom.Owner": "y"})
    assert missing_required_fields(complete, info) == []


def test_required_priority_on_a_bug_is_not_set_by_the_service():
    info = WorkItemTypeInfo(
        "Bug",
        AGILE_BUG.states,
        AGILE_BUG.field_names,
        frozenset({"System.Title", "Microsoft.VSTS.Common.Priority"}),
    )
    assert missing_required_fields(make_template(), info) == ["Microsoft.VSTS.Common.Priority"]


# --- tags --------------------------------------------------------------------------------


KEY = bytes(range(32))


def test_tracking_tag_carries_a_mac_of_installation_and_risk_id():
    tag = tracking_tag("inst-01_a", 42, KEY)
    assert re.fullmatch(r"adowh-inst-01_a-42-[0-9a-f]{16}", tag), tag
    # Stable: the same inputs always give the same tag (it is looked up on retries).
    assert tracking_tag("inst-01_a", 42, KEY) == tag
    # Each input changes the MAC: a scanner knowing the shape still cannot write the tag.
    others = {
        tracking_tag("inst-01_a", 43, KEY),
        tracking_tag("inst-01_b", 42, KEY),
        tracking_tag("inst-01_a", 42, bytes(32)),
    }
    assert len({t.rsplit("-", 1)[1] for t in others | {tag}}) == 4
    assert tracking_tag("x", 0, KEY).startswith("adowh-x-0-")


def test_legacy_tracking_tag_keeps_the_old_shape():
    assert legacy_tracking_tag("inst-01_a", 42) == "adowh-inst-01_a-42"
    assert legacy_tracking_tag("x", 0) == "adowh-x-0"


@pytest.mark.parametrize("installation_id", ["", "a;b", "a'b", 'a"b', "a b", "a" * 65, None, "é"])
def test_tracking_tag_rejects_unsafe_installation_ids(installation_id):
    with pytest.raises(ValueError):
        tracking_tag(installation_id, 1, KEY)
    with pytest.raises(ValueError):
        legacy_tracking_tag(installation_id, 1)


@pytest.mark.parametrize("risk_id", [-1, True, "1", 1.0, None])
def test_tracking_tag_rejects_bad_risk_ids(risk_id):
    with pytest.raises(ValueError):
        tracking_tag("inst", risk_id, KEY)


@pytest.mark.parametrize("key", [b"", b"short", "a" * 32, None])
def test_tracking_tag_rejects_short_or_missing_keys(key):
    with pytest.raises(ValueError):
        tracking_tag("inst", 1, key)


@pytest.mark.parametrize(
    "tag",
    [
        "adowh-1a2b3c4d-7",  # the issue's forged tag: a victim's legacy tracking tag
        "adowh-1a2b3c4d-7-0123456789abcdef",
        "ADOWH-x",
        "  AdOwH-x",
        "\x00adowh-x",  # control characters never reach Azure DevOps
        "\tadowh-x",
        "\uff41\uff44\uff4f\uff57\uff48-x",  # full-width look-alike (NFKC)
        "adowh-",
    ],
)
def test_reserved_tags(tag):
    assert is_reserved_tag(tag)


@pytest.mark.parametrize("tag", ["adowh", "adowh x", "my-adowh-x", "Security", "a dowh-x", ""])
def test_tags_outside_the_reserved_namespace(tag):
    assert not is_reserved_tag(tag)


def test_build_tags_order_dedup_and_cleaning():
    tags = build_tags(
        ["Security", "team;red", " spaced   out "],
        ["security", "PCI", "", ";", "High", "adowh-i-1"],
        severity="HIGH",
        tracking="adowh-i-1",
    )
    assert tags == ["Security", "team red", "spaced out", "PCI", "high", "adowh-i-1"]
    assert all(";" not in tag for tag in tags)


def test_build_tags_keeps_severity_and_tracking_tag_within_the_limit():
    tags = build_tags([f"t{i}" for i in range(150)], ["r"], severity="info", tracking="adowh-i-9")
    assert len(tags) == MAX_TAGS
    assert tags[-2:] == ["info", "adowh-i-9"]


def test_build_tags_never_writes_a_reserved_tag_but_the_tracking_tag():
    # Templates and risks stored before reserved tags were refused must not smuggle one in.
    tracking = "adowh-i-9-0123456789abcdef"
    tags = build_tags(
        ["Security", "ADOWH-i-8", " adowh-i-7 "],
        ["adowh-i-10", "PCI", "\uff41\uff44\uff4f\uff57\uff48-i-11", "adowh-i-9-0123456789ABCDEF"],
        severity="high",
        tracking=tracking,
    )
    assert tags == ["Security", "PCI", "high", tracking]


def test_clean_tag():
    assert clean_tag(" a;b\n c\x00 ") == "a b c"


def test_split_and_has_tag():
    value = "Security; high; adowh-i-12"
    assert split_tags(value) == ["Security", "high", "adowh-i-12"]
    assert split_tags(None) == [] and split_tags("") == []
    assert has_tag(value, "ADOWH-I-12")
    assert not has_tag(value, "adowh-i-1")  # no substring match
    assert not has_tag(None, "adowh-i-1")


def adoption_fields(tags: str, project: str = "AppSec", type_name: str = "Bug") -> dict:
    return {"System.Tags": tags, "System.TeamProject": project, "System.WorkItemType": type_name}


ADOPT = {"installation_id": "i1", "project": "AppSec", "work_item_type": "Bug"}


def test_adoption_accepts_the_item_an_earlier_attempt_made():
    tag = "adowh-i1-7-0123456789abcdef"
    assert adoption_problems(adoption_fields(f"high; {tag}"), tag=tag, **ADOPT) == []
    # Names and tags compare as Azure DevOps compares them: case-insensitively.
    fields = adoption_fields(f"High; {tag.upper()}", "appsec", "bug")
    assert adoption_problems(fields, tag=tag, **ADOPT) == []


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        # An attacker's item: its own tracking tag plus the victim's forged legacy tag.
        (adoption_fields("adowh-i1-6; adowh-i1-7; high"), "other tracking tags: adowh-i1-6"),
        # Found by a looser CONTAINS, but the tag itself is not on it.
        (adoption_fields("adowh-i1-70; high"), "does not carry the tag adowh-i1-7"),
        (adoption_fields(None), "does not carry"),
        (adoption_fields("adowh-i1-7", project="Other"), "is in project 'Other'"),
        (adoption_fields("adowh-i1-7", type_name="Task"), "is a 'Task', not a 'Bug'"),
    ],
)
def test_adoption_refuses_items_of_doubtful_provenance(fields, reason):
    problems = adoption_problems(fields, tag="adowh-i1-7", **ADOPT)
    assert any(reason in p for p in problems), problems


def test_adoption_ignores_tracking_tags_of_other_installations():
    fields = adoption_fields("adowh-i2-7; adowh-i1-7")
    assert adoption_problems(fields, tag="adowh-i1-7", **ADOPT) == []
