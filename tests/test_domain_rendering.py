"""Tests for webhook.domain.rendering: safe HTML bodies, JSON Patch documents, comments."""

import json
import time
from html.parser import HTMLParser

import pytest

from webhook.domain import rendering
from webhook.domain.models import Asset, Risk, Template, WorkItemState, WorkItemTypeInfo
from webhook.domain.rendering import (
    MAX_ASSET_ROWS,
    MAX_BODY_LENGTH,
    MAX_MARKDOWN_CHARS,
    body_digest,
    body_field,
    build_content_update,
    build_create_patch,
    build_severity_change,
    build_status_comment,
    comment_has_marker,
    link_for,
    render_body,
    render_markdown,
    written_content,
)
from webhook.domain.templates import format_title, utf16_length

# Spelled out here rather than imported so that widening the allow-list fails a test.
SAFE_TAGS = {
    "p", "br", "a", "b", "strong", "i", "em", "code", "pre", "ul", "ol", "li", "h1", "h2",
    "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "blockquote", "hr",
    "div", "span",
}  # fmt: skip
SAFE_SCHEMES = ("http://", "https://", "mailto:")

BASE_FIELDS = {"System.Title", "System.Description", "System.Tags", "System.AreaPath",
               "System.IterationPath", "Microsoft.VSTS.Common.Priority"}  # fmt: skip
AGILE_BUG = WorkItemTypeInfo(
    "Bug",
    (WorkItemState("New", "Proposed"), WorkItemState("Closed", "Completed")),
    frozenset(BASE_FIELDS | {"Microsoft.VSTS.TCM.ReproSteps", "Microsoft.VSTS.Common.Severity"}),
    frozenset({"System.Title"}),
)
BASIC_ISSUE = WorkItemTypeInfo(
    "Issue",
    (WorkItemState("To Do", "Proposed"), WorkItemState("Done", "Completed")),
    frozenset(BASE_FIELDS),
    frozenset({"System.Title"}),
)
BARE_TYPE = WorkItemTypeInfo(
    "Note", (), frozenset({"System.Title", "System.Description", "System.Tags"}), frozenset()
)
TAG = "adowh-inst-42"
# A risk page people can open (the web UI's); never the admin API, which needs the token.
RISK_LINK = "https://webhook.example/ui/risks/42"


class Inspector(HTMLParser):
    """Collect the elements, attributes, text and comments of an HTML fragment."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[str] = []
        self.others: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.texts.append(data)

    def handle_comment(self, data):
        self.others.append(f"comment {data}")

    def handle_decl(self, decl):
        self.others.append(f"decl {decl}")

    def handle_pi(self, data):
        self.others.append(f"pi {data}")

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.elements if tag == name]


def assert_safe(html: str) -> Inspector:
    """Fail unless html holds only allow-listed elements, attributes and URLs."""
    assert "\x00" not in html
    page = Inspector(html)
    assert page.others == []
    for tag, attrs in page.elements:
        assert tag in SAFE_TAGS, f"unexpected <{tag}>"
        allowed = {"href", "title", "rel"} if tag == "a" else set()
        assert set(attrs) <= allowed, f"unexpected attributes on <{tag}>: {attrs}"
        for name in attrs:
            assert not name.startswith("on") and name != "style"
        if tag == "a":
            href = (attrs.get("href") or "").strip().lower()
            assert href == "" or href.startswith(SAFE_SCHEMES), href
            assert attrs.get("rel") == "noopener noreferrer"
    return page


def make_risk(**overrides) -> Risk:
    values = {
        "id": 42,
        "source": "zap",
        "key": "ZAP-1",
        "name": "SQL injection",
        "severity": "high",
        "url": "https://scanner.example/risks/ZAP-1",
        "project": "Shop",
    }
    values.update(overrides)
    return Risk(**values)


def make_template(**overrides) -> Template:
    values = {
        "id": 1,
        "name": "Security bugs",
        "connection_id": 1,
        "project": "Fabrikam",
        "work_item_type": "Bug",
        "auto_create": True,
        "severity_threshold": "high",
    }
    values.update(overrides)
    return Template(**values)


def fields_of(ops):
    return {
        op["path"].removeprefix("/fields/"): op["value"] for op in ops if "/fields/" in op["path"]
    }


# --- adversarial input ---------------------------------------------------------------------

PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    '<a href="jAvAsCrIpT:alert(1)">x</a>',
    "[x](&#106;avascript:alert(1))",
    '<a href="&#106;avascript:alert(1)">x</a>',
    "[x](java\tscript:alert(1))",
    "[x](%6Aavascript:alert(1))",
    "<javascript:alert(1)>",
    '<http://example.com/" onmouseover="alert(1)>',
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](vbscript:msgbox(1))",
    "[x](//evil.example/relative)",
    "[ref]\n\n[ref]: javascript:alert(1)",
    "![x](javascript:alert(1))",
    "![pixel](https://evil.example/pixel.png)",
    "<svg onload=alert(1)><circle/></svg>",
    "<style>body{display:none}</style>",
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    "<object data=x></object><embed src=x>",
    "<math><mi xlink:href=javascript:alert(1)>x</mi></math>",
    '<a href="http://ok.example" onclick="alert(1)" style="color:red">ok</a>',
    '[x](https://ok.example/"onmouseover="alert(1))',
    "<div><b><i>unclosed <p style='color:red'><table><tr><td>",
    "</pre></td></tr></table></h2><script>alert(1)</script><pre>",
    "\x00<scr\x00ipt>alert(1)</scr\x00ipt>\x00",
    "<!-- comment --><!DOCTYPE html><?php echo 1; ?><![CDATA[x]]>",
    "```html\n<script>alert(1)</script>\n```",
    "    <img src=x onerror=alert(1)>",
    "| <img src=x onerror=alert(1)> | b |\n|---|---|\n| [x](javascript:1) | <script> |",
    "<a href='https://ok.example'>" * 50 + "<b>" * 500,
    "&lt;script&gt;alert(1)&lt;/script&gt; &amp;lt;",
    "\u202e\ufeff\u200b\x07\x1b[31m\x85\ud800",
]
TEXT_FIELDS = ["name", "source", "key", "project", "definition", "evidence", "proof", "remediation"]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_adversarial_text_in_every_field_stays_inert(payload):
    for field_name in TEXT_FIELDS:
        risk = make_risk(**{field_name: payload})
        assert_safe(render_body(risk, risk_link=RISK_LINK))
    risk = make_risk(assets=[Asset(payload, payload)], url=payload, tags=[payload])
    assert_safe(render_body(risk, risk_link=payload))
    ops = build_create_patch(risk, make_template(), AGILE_BUG, tracking_tag=TAG, risk_link=payload)
    assert_safe(fields_of(ops)["Microsoft.VSTS.TCM.ReproSteps"])
    assert "\n" not in fields_of(ops)["System.Title"]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_adversarial_text_in_comments_stays_inert(payload):
    risk = make_risk(source=payload, url=payload)
    _, comment = build_severity_change(
        risk, "high", "critical", AGILE_BUG, risk_link=payload, marker=payload
    )
    assert_safe(comment)
    for kind in ("scanner_resolved", "scanner_reopened"):
        assert_safe(build_status_comment(kind, risk, risk_link=payload, marker=payload))


def test_raw_html_in_markdown_is_shown_as_text():
    page = assert_safe(render_markdown("Look: <img src=x onerror=alert(1)> and <b>bold</b>"))
    assert "<img src=x onerror=alert(1)>" in page.text
    assert "<b>bold</b>" in page.text
    assert page.tags("img") == [] and page.tags("b") == []


def test_unsafe_markdown_links_are_not_links():
    sources = [
        "[x](javascript:alert(1))",
        "[x](&#106;avascript:alert(1))",
        "<javascript:alert(1)>",
        "[x](data:text/html,hi)",
        "[x](/relative)",
    ]
    for source in sources:
        page = assert_safe(render_markdown(source))
        assert page.tags("a") == [], source


def test_markdown_images_become_plain_links():
    page = assert_safe(render_markdown("![diagram](https://docs.example/d.png)"))
    assert page.tags("a")[0]["href"] == "https://docs.example/d.png"
    assert "diagram" in page.text


def test_markdown_features():
    source = (
        "# Title\n\nSome **bold**, *italic* and `code`.\n\n"
        "- one\n- two\n\n1. first\n\n> quoted\n\n---\n\n"
        "```\nblock <x>\n```\n\n"
        "| a | b |\n|:--|--:|\n| 1 | 2 |\n\n"
        '[safe](https://example.com/a?b=1&c=2 "Example") <https://auto.example> <me@example.com>'
    )
    page = assert_safe(render_markdown(source))
    tags = {tag for tag, _ in page.elements}
    assert {"h1", "strong", "em", "code", "ul", "ol", "li", "blockquote", "hr", "pre", "table",
            "thead", "tbody", "tr", "th", "td", "a"} <= tags  # fmt: skip
    links = page.tags("a")
    assert links[0]["href"] == "https://example.com/a?b=1&c=2"
    assert links[0]["title"] == "Example"
    assert links[1]["href"] == "https://auto.example"
    assert links[2]["href"] == "mailto:me@example.com"
    assert "block <x>" in page.text
    assert all(attrs == {} for tag, attrs in page.elements if tag in ("th", "td"))


def test_deeply_nested_markdown_is_bounded():
    assert_safe(render_markdown("> " * 10_000 + "deep"))
    assert_safe(render_markdown("".join("  " * i + "- x\n" for i in range(300))))


# --- body content ---------------------------------------------------------------------------


def test_body_has_link_summary_assets_and_sections():
    risk = make_risk(
        definition="A **classic** injection.",
        evidence="GET /?q=' OR 1=1 --\n  indented <tag>",
        proof="HTTP/1.1 500",
        remediation="Use *parameterized* queries.",
        assets=[Asset("hosts", "10.0.0.1"), Asset("urls", "https://shop.example/login")],
    )
    html = render_body(risk, risk_link=RISK_LINK)
    page = assert_safe(html)
    assert page.tags("a")[0]["href"] == "https://scanner.example/risks/ZAP-1"
    text = page.text
    for expected in ("SQL injection", "High", "zap", "Shop", "ZAP-1", "Impacted assets (2)",
                     "hosts", "10.0.0.1", "https://shop.example/login", "Definition", "Evidence",
                     "Proof", "Remediation", "HTTP/1.1 500"):  # fmt: skip
        assert expected in text, expected
    assert "GET /?q=' OR 1=1 --\n  indented <tag>" in text  # preformatted, verbatim
    assert len(page.tags("pre")) == 2
    assert page.tags("strong") and page.tags("em")
    assert len(page.tags("tr")) == 4 + 1 + 2  # summary rows, asset header, asset rows


def test_body_omits_empty_sections():
    page = assert_safe(render_body(make_risk(project=None, evidence="  "), risk_link=None))
    for absent in ("Project", "Impacted assets", "Definition", "Evidence", "Proof", "Remediation"):
        assert absent not in page.text


def test_link_back_prefers_the_risk_url_then_risk_link():
    assert link_for(make_risk(), RISK_LINK) == "https://scanner.example/risks/ZAP-1"
    assert link_for(make_risk(url=None), RISK_LINK) == RISK_LINK
    assert link_for(make_risk(url="javascript:alert(1)"), RISK_LINK) == RISK_LINK
    assert link_for(make_risk(url="ftp://x"), None) is None
    assert link_for(make_risk(url='https://x/" onclick="a'), "data:text/html,x") is None
    assert link_for(make_risk(url="HTTPS://Scanner.example/x"), None) == "HTTPS://Scanner.example/x"
    page = assert_safe(render_body(make_risk(url=None), risk_link=None))
    assert page.tags("a") == []


def test_asset_rows_are_capped():
    assets = [Asset("hosts", f"10.0.{i // 256}.{i % 256}") for i in range(10_000)]
    html = render_body(make_risk(assets=assets), risk_link=None)
    page = assert_safe(html)
    assert len(page.tags("tr")) == 4 + 1 + MAX_ASSET_ROWS
    assert f"… and {10_000 - MAX_ASSET_ROWS:,} more" in page.text
    assert "Impacted assets (10,000)" in page.text


def test_nul_and_control_characters_are_removed():
    risk = make_risk(name="a\x00b\x1bc", evidence="x\x00y\x0bz\tw", definition="p\x00q")
    page = assert_safe(render_body(risk, risk_link=None))
    assert "abc" in page.text and "xyz\tw" in page.text and "\x1b" not in page.text


def test_huge_evidence_is_truncated_visibly():
    evidence = "<" * (256 * 1024)  # escaping multiplies it by four
    html = render_body(make_risk(evidence=evidence), risk_link=None)
    assert utf16_length(html) <= MAX_BODY_LENGTH
    page = assert_safe(html)
    assert "truncated: showing the first" in page.text
    assert "of 262,144 characters" in page.text
    shown = Inspector(html).texts
    assert any(len(chunk) > 100_000 and set(chunk) == {"<"} for chunk in shown)


def test_everything_huge_at_once_stays_under_the_limit():
    big = "<&>" * (256 * 1024 // 3)
    markdown = ("* item **bold** [l](https://x.example/a) <b>\n" * 6000)[: 256 * 1024]
    assets = [Asset("g" * 300, "<id>" * 250) for _ in range(10_000)]
    risk = make_risk(
        name="n" * 1000, definition=markdown, evidence=big, proof=big, remediation=markdown,
        assets=assets,
    )  # fmt: skip
    html = render_body(risk, risk_link=None)
    assert utf16_length(html) <= MAX_BODY_LENGTH
    page = assert_safe(html)
    for heading in ("Impacted assets (10,000)", "Definition", "Evidence", "Proof", "Remediation"):
        assert heading in page.text
    assert page.text.count("truncated: showing the first") == 4
    assert "more" in page.text


def test_astral_characters_count_double_against_the_limit():
    emoji = "😀" * (256 * 1024)
    html = render_body(make_risk(evidence=emoji, proof=emoji), risk_link=None)
    assert len(html) < utf16_length(html) <= MAX_BODY_LENGTH
    assert_safe(html)


def test_small_bodies_are_not_truncated():
    risk = make_risk(evidence="e" * 100_000, proof="p" * 100_000, definition="d" * 100_000)
    page = assert_safe(render_body(risk, risk_link=None))
    assert "truncated" not in page.text
    assert "e" * 100_000 in page.text


# --- JSON Patch for creation ----------------------------------------------------------------


def test_body_field_choice():
    assert body_field(AGILE_BUG) == "Microsoft.VSTS.TCM.ReproSteps"
    assert body_field(BASIC_ISSUE) == "System.Description"


def test_create_patch_for_agile_bug():
    risk = make_risk(tags=["pci", "PCI"], definition="d")
    template = make_template(
        title_format="[{severity}] {name}",
        tags=("security",),
        area_path="Fabrikam\\Security",
        iteration_path="Fabrikam\\Sprint 9",
    )
    ops = build_create_patch(risk, template, AGILE_BUG, tracking_tag=TAG, risk_link=RISK_LINK)
    json.dumps(ops)
    assert all(op["op"] == "add" for op in ops)
    assert [op["path"] for op in ops] == [
        "/fields/System.Title",
        "/fields/Microsoft.VSTS.TCM.ReproSteps",
        "/fields/Microsoft.VSTS.Common.Severity",
        "/fields/System.Tags",
        "/fields/System.AreaPath",
        "/fields/System.IterationPath",
        "/relations/-",
    ]
    fields = fields_of(ops)
    assert fields["System.Title"] == "[High] SQL injection"
    assert fields["Microsoft.VSTS.Common.Severity"] == "2 - High"
    assert fields["System.Tags"] == "security; pci; high; adowh-inst-42"
    assert fields["System.AreaPath"] == "Fabrikam\\Security"
    assert fields["Microsoft.VSTS.TCM.ReproSteps"] == render_body(risk, risk_link=RISK_LINK)
    assert ops[-1]["value"] == {
        "rel": "Hyperlink",
        "url": "https://scanner.example/risks/ZAP-1",
        "attributes": {"comment": "Security finding in zap"},
    }


def test_create_patch_for_a_type_without_severity_uses_integer_priority():
    ops = build_create_patch(
        make_risk(severity="critical"), make_template(), BASIC_ISSUE, tracking_tag=TAG,
        risk_link=None,
    )  # fmt: skip
    fields = fields_of(ops)
    assert "Microsoft.VSTS.Common.Severity" not in fields
    assert fields["Microsoft.VSTS.Common.Priority"] == 1
    assert type(fields["Microsoft.VSTS.Common.Priority"]) is int
    assert "System.Description" in fields
    assert "Microsoft.VSTS.TCM.ReproSteps" not in fields


def test_create_patch_sends_only_fields_the_type_has():
    template = make_template(area_path="A", iteration_path="I")
    ops = build_create_patch(make_risk(), template, BARE_TYPE, tracking_tag=TAG, risk_link=None)
    assert set(fields_of(ops)) == {"System.Title", "System.Description", "System.Tags"}


def test_template_fields_fill_in_but_never_override_the_finding():
    template = make_template(
        area_path="Fabrikam\\Security",
        fields={
            "system.title": "hijacked",
            "System.Tags": "no-tracking",
            "Microsoft.VSTS.TCM.ReproSteps": "<p>other</p>",
            "Microsoft.VSTS.Common.Severity": "4 - Low",
            "System.AreaPath": "Fabrikam\\Elsewhere",
            "Microsoft.VSTS.Common.Priority": 1,
            "Custom.NotOnType": "sent anyway",
            "Odd/Name~1": "x",
        },
    )
    ops = build_create_patch(make_risk(), template, AGILE_BUG, tracking_tag=TAG, risk_link=None)
    fields = fields_of(ops)
    assert fields["System.Title"] == "SQL injection"
    assert TAG in fields["System.Tags"]
    assert fields["Microsoft.VSTS.TCM.ReproSteps"].startswith("<h2>")
    assert fields["Microsoft.VSTS.Common.Severity"] == "2 - High"
    assert fields["System.AreaPath"] == "Fabrikam\\Security"
    assert fields["Microsoft.VSTS.Common.Priority"] == 1  # the service does not set it on a Bug
    assert fields["Custom.NotOnType"] == "sent anyway"
    assert fields["Odd~1Name~01"] == "x"  # RFC 6901 escaping
    assert sum(1 for op in ops if op["path"] == "/fields/System.Title") == 1


def test_template_area_path_in_fields_is_used_when_no_attribute():
    template = make_template(fields={"System.AreaPath": "Fabrikam\\Elsewhere"})
    ops = build_create_patch(make_risk(), template, AGILE_BUG, tracking_tag=TAG, risk_link=None)
    assert fields_of(ops)["System.AreaPath"] == "Fabrikam\\Elsewhere"


def test_relation_uses_risk_link_when_the_risk_url_is_not_http():
    risk = make_risk(url="javascript:alert(1)", source="trivy")
    ops = build_create_patch(
        risk, make_template(), AGILE_BUG, tracking_tag=TAG, risk_link=RISK_LINK
    )
    assert ops[-1]["value"]["url"] == RISK_LINK
    assert ops[-1]["value"]["attributes"]["comment"] == "Security finding in trivy"
    ops = build_create_patch(risk, make_template(), AGILE_BUG, tracking_tag=TAG, risk_link=None)
    assert all(op["path"] != "/relations/-" for op in ops)


def test_title_follows_format_title():
    risk = make_risk(name="x\n" * 300)
    template = make_template(title_format="{source}: {name}")
    ops = build_create_patch(risk, template, AGILE_BUG, tracking_tag=TAG, risk_link=None)
    assert fields_of(ops)["System.Title"] == format_title("{source}: {name}", risk)


# --- severity change and status comments ----------------------------------------------------


def test_severity_change_on_a_bug():
    ops, comment = build_severity_change(
        make_risk(severity="critical"), "high", "critical", AGILE_BUG,
        risk_link=RISK_LINK, marker="ado-webhook event 123",
    )  # fmt: skip
    assert ops == [
        {"op": "add", "path": "/fields/Microsoft.VSTS.Common.Severity", "value": "1 - Critical"}
    ]
    page = assert_safe(comment)
    assert "Severity changed from High to Critical" in page.text
    assert page.tags("a")[0]["href"] == "https://scanner.example/risks/ZAP-1"
    assert comment_has_marker(comment, "ado-webhook event 123")
    assert not comment_has_marker(comment, "ado-webhook event 124")


def test_severity_change_on_types_without_severity():
    ops, _ = build_severity_change(
        make_risk(), "medium", "LOW", BASIC_ISSUE, risk_link=None, marker="m"
    )
    assert ops == [{"op": "add", "path": "/fields/Microsoft.VSTS.Common.Priority", "value": 4}]
    ops, comment = build_severity_change(
        make_risk(url=None), "info", "medium", BARE_TYPE, risk_link=None, marker="m"
    )
    assert ops == []
    page = assert_safe(comment)
    assert "Severity changed from Info to Medium" in page.text
    assert page.tags("a") == []


def test_marker_is_escaped_and_still_detected():
    marker = "ado-webhook <b>event</b> & 'quoted' \"x\""
    _, comment = build_severity_change(
        make_risk(), "low", "high", AGILE_BUG, risk_link=None, marker=marker
    )
    page = assert_safe(comment)
    assert page.tags("b") == []
    assert marker in page.text
    assert comment_has_marker(comment, marker)


@pytest.mark.parametrize(
    ("kind", "sentence"),
    [
        ("scanner_resolved", "The scanner no longer reports this finding (source zap)."),
        ("scanner_reopened", "The scanner reports this finding again (source zap): reopening."),
    ],
)
def test_status_comments(kind, sentence):
    comment = build_status_comment(kind, make_risk(), risk_link=RISK_LINK, marker="evt 9")
    page = assert_safe(comment)
    assert sentence in page.text
    assert page.tags("a")[0]["href"] == "https://scanner.example/risks/ZAP-1"
    assert comment_has_marker(comment, "evt 9")


def test_status_comment_rejects_unknown_kind():
    with pytest.raises(ValueError):
        build_status_comment("closed", make_risk(), risk_link=None, marker="m")


def test_comment_has_marker():
    assert comment_has_marker(
        "<p>done</p><p><em>ado-webhook event 7</em></p>", "ado-webhook event 7"
    )
    assert comment_has_marker("a &amp; b &lt;c&gt;", "a & b <c>")
    assert comment_has_marker("plain a & b", "a & b")
    assert not comment_has_marker("ado-webhook event 70", "ado-webhook event 7")
    assert not comment_has_marker("ado-webhook event 17", "event 1")
    assert comment_has_marker("<em>ado-webhook event 7</em>", "ado-webhook event 7")
    assert comment_has_marker("(event 7)", "event 7")
    assert not comment_has_marker("anything", "")
    assert not comment_has_marker("", "m")


# --- content updates (SPEC 4, "Content stays current") ----------------------------------------


def patch_fields(ops) -> dict:
    return {op["path"].removeprefix("/fields/"): op["value"] for op in ops if op["op"] == "add"}


def test_a_content_update_rewrites_the_changed_body_without_a_comment():
    old = make_risk(evidence="GET /a", assets=[Asset("host", "db1")])
    new = make_risk(evidence="GET /b", assets=[Asset("host", "db2")], definition="New *words*")
    last = body_digest(render_body(old, risk_link=None))
    update = build_content_update(
        new, AGILE_BUG, title="SQL injection", last_title="SQL injection",
        last_body_hash=last, risk_link=None,
    )  # fmt: skip
    fields = patch_fields(update.ops)
    assert set(fields) == {"Microsoft.VSTS.TCM.ReproSteps"}  # no comment, no title
    body = assert_safe(fields["Microsoft.VSTS.TCM.ReproSteps"]).text
    assert "GET /b" in body and "db2" in body and "GET /a" not in body and "db1" not in body
    assert update.body_hash == body_digest(fields["Microsoft.VSTS.TCM.ReproSteps"])
    assert update.title is None
    # Nothing differs from what was last written: no update at all.
    same = build_content_update(
        new, AGILE_BUG, title="SQL injection", last_title="SQL injection",
        last_body_hash=update.body_hash, risk_link=None,
    )  # fmt: skip
    assert same.ops == () and same.body_hash is None and same.title is None


def test_a_content_update_writes_the_body_field_the_type_has():
    update = build_content_update(
        make_risk(evidence="x"), BASIC_ISSUE, title=None, last_title=None,
        last_body_hash=None, risk_link=None,
    )  # fmt: skip
    assert set(patch_fields(update.ops)) == {"System.Description"}
    bare = WorkItemTypeInfo("Note", (), frozenset({"System.Title"}), frozenset())
    assert (
        build_content_update(
            make_risk(), bare, title=None, last_title=None, last_body_hash=None, risk_link=None
        ).ops
        == ()
    )


def test_the_title_is_rewritten_only_while_people_left_it_alone():
    risk = make_risk(name="SQL injection (renamed)")
    last = body_digest(render_body(risk, risk_link=None))
    untouched = build_content_update(
        risk, AGILE_BUG, title="SQL injection (renamed)", last_title="SQL injection",
        last_body_hash=last, current_title="SQL injection", current_rev=5, risk_link=None,
    )  # fmt: skip
    # Guarded by the revision that was read: a person's edit in between fails the update.
    assert untouched.ops[0] == {"op": "test", "path": "/rev", "value": 5}
    assert patch_fields(untouched.ops) == {"System.Title": "SQL injection (renamed)"}
    assert untouched.title == "SQL injection (renamed)"
    for current in ("Ann's title", None):  # edited by a person, or not read
        edited = build_content_update(
            risk, AGILE_BUG, title="SQL injection (renamed)", last_title="SQL injection",
            last_body_hash=None, current_title=current, current_rev=6, risk_link=None,
        )  # fmt: skip
        assert set(patch_fields(edited.ops)) == {"Microsoft.VSTS.TCM.ReproSteps"}
        assert edited.title is None and all(op["op"] != "test" for op in edited.ops)
    # Unknown last title (template gone, or an item from before titles were remembered).
    for title, last_title in (("New", None), (None, "Old")):
        kept = build_content_update(
            risk, AGILE_BUG, title=title, last_title=last_title, last_body_hash=last,
            current_title=last_title, current_rev=6, risk_link=None,
        )  # fmt: skip
        assert kept.ops == ()


def test_a_severity_change_shows_in_the_body():
    high = make_risk(severity="high")
    critical = make_risk(severity="critical")
    update = build_content_update(
        critical, AGILE_BUG, title=None, last_title=None,
        last_body_hash=body_digest(render_body(high, risk_link=None)), risk_link=None,
    )  # fmt: skip
    page = Inspector(patch_fields(update.ops)["Microsoft.VSTS.TCM.ReproSteps"])
    assert "Critical" in page.text and "High" not in page.text


def test_written_content_of_a_create_patch_matches_a_later_content_update():
    risk = make_risk(evidence="e", definition="d")
    template = make_template(title_format="[{severity}] {name}")
    patch = build_create_patch(risk, template, AGILE_BUG, tracking_tag=TAG, risk_link=None)
    written = written_content(patch, item_hash="h")
    assert written.title == format_title(template.title_format, risk)
    assert written.item_hash == "h"
    assert written.body_hash == body_digest(render_body(risk, risk_link=None))
    again = build_content_update(
        risk, AGILE_BUG, title=written.title, last_title=written.title,
        last_body_hash=written.body_hash, risk_link=None,
    )  # fmt: skip
    assert again.ops == ()


def test_links_come_only_from_the_scanner_url_when_the_service_has_no_page_to_offer():
    page = assert_safe(render_body(make_risk(url=None), risk_link=None))
    assert page.tags("a") == []
    page = assert_safe(render_body(make_risk(url="https://scanner.example/f/9"), risk_link=None))
    assert [a["href"] for a in page.tags("a")] == ["https://scanner.example/f/9"]
    ops = build_create_patch(make_risk(url=None), make_template(), AGILE_BUG, tracking_tag=TAG,
                             risk_link=None)  # fmt: skip
    assert not [op for op in ops if op["path"] == "/relations/-"]


# --- bounded rendering work ------------------------------------------------------------------

N = 256 * 1024
# markdown-it-py spends ~7 µs a character on these (pure Python, linear but slow).
HOSTILE_MARKDOWN = {
    "brackets": "[" * N,
    "image brackets": "![" * (N // 2),
    "emphasis runs": "*a" * (N // 2),
    "mixed emphasis": "*_" * (N // 2),
    "nested strong": "**a" * (N // 3),
    "link references": "[a]" * (N // 3) + "\n\n[a]: https://x.example/\n",
    "unclosed links": "[a](" * (N // 4),
    "line breaks": "a\n" * (N // 2),
    "entities": "&" * N,
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_MARKDOWN))
def test_hostile_markdown_costs_bounded_work_per_field(kind, monkeypatch):
    text = HOSTILE_MARKDOWN[kind]
    fed: list[int] = []
    real = rendering._MD.render

    def counting(src, env=None):
        fed.append(len(src))
        return real(src, env)

    monkeypatch.setattr(rendering._MD, "render", counting)
    risk = make_risk(definition=text, remediation=text)
    started = time.process_time()
    html = render_body(risk, risk_link=None)
    seconds = time.process_time() - started
    # Complexity guard: each field's Markdown is rendered from at most the cap, a few times.
    assert sum(fed) <= 2 * 3 * MAX_MARKDOWN_CHARS, fed
    assert seconds < 2 * 1.0, f"{seconds:.2f} s of CPU for two 256 KiB Markdown fields"
    page = assert_safe(html)
    assert utf16_length(html) <= MAX_BODY_LENGTH
    # Nothing silently lost: the rest is there as plain text, or the cut is announced.
    if "truncated" not in page.text:
        assert page.text.count(text[-50:].strip() or text[:50]) >= 2
        assert "The rest is shown as plain text" in page.text


def test_markdown_is_rendered_for_the_head_and_the_rest_is_preformatted():
    head = "Intro with **bold**.\n\n" + "x" * (MAX_MARKDOWN_CHARS // 2) + "\n\n"
    tail = "*not emphasis* <b>not bold</b> [not](https://a.example) " * 2_000
    page = assert_safe(render_body(make_risk(definition=head + tail), risk_link=None))
    assert page.tags("strong")  # the head is Markdown
    assert "*not emphasis* <b>not bold</b> [not](https://a.example)" in page.text  # verbatim
    assert not page.tags("b") and len(page.tags("a")) == 1  # only the scanner link
    assert "The rest is shown as plain text" in page.text
