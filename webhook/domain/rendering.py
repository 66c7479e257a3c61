"""Work item content: the sanitized HTML body, JSON Patch documents and comments."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape, unescape
from typing import Any

import nh3
from markdown_it import MarkdownIt

from webhook.domain.models import Risk, Template, WorkItemTypeInfo
from webhook.domain.severity import ado_priority_value, ado_severity_value, severity_label
from webhook.domain.sync_plan import WrittenContent
from webhook.domain.templates import (
    AREA_PATH_FIELD,
    DESCRIPTION_FIELD,
    ITERATION_PATH_FIELD,
    PRIORITY_FIELD,
    REPRO_STEPS_FIELD,
    SEVERITY_FIELD,
    TAGS_FIELD,
    TITLE_FIELD,
    build_tags,
    format_title,
    risk_owned_fields,
    severity_field,
    strip_unsafe_chars,
    utf16_length,
)
from webhook.domain.templates import body_field as body_field

__all__ = [
    "DESCRIPTION_FIELD",
    "MAX_ASSET_ROWS",
    "MAX_BODY_LENGTH",
    "MAX_MARKDOWN_CHARS",
    "PRIORITY_FIELD",
    "REPRO_STEPS_FIELD",
    "SEVERITY_FIELD",
    "STATUS_COMMENT_KINDS",
    "ContentUpdate",
    "WrittenContent",
    "body_digest",
    "body_field",
    "build_content_update",
    "build_create_patch",
    "build_severity_change",
    "build_status_comment",
    "comment_has_marker",
    "link_for",
    "render_body",
    "render_markdown",
    "sanitize_html",
    "title_may_change",
    "written_content",
]

MAX_BODY_LENGTH = 950_000
"""Upper bound of a rendered body in UTF-16 code units (Azure DevOps long text holds 1M)."""

MAX_ASSET_ROWS = 500
"""Impacted assets listed in the body; the rest are counted in a note."""

MAX_CELL_LENGTH = 1_000
"""Characters kept of one short value (asset group or identifier, name, key...)."""

MAX_MARKDOWN_CHARS = 32_768
"""Characters of one field rendered as Markdown; the rest of it follows as preformatted text.

markdown-it-py is pure Python and linear but slow on hostile input: runs of `[`, `![`, `*a` or
`*_` cost about 7 µs a character (measured: 1.2-1.8 s of CPU for 256 KiB, and the body fitting
rendered a field several times), so a scanner could buy seconds of worker time per field. Real
definitions and remediations are far shorter than this; the cap bounds each render to ~0.25 s.
"""

STATUS_COMMENT_KINDS: frozenset[str] = frozenset({"scanner_resolved", "scanner_reopened"})

ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "p", "br", "a", "b", "strong", "i", "em", "code", "pre", "ul", "ol", "li",
        "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td",
        "blockquote", "hr", "div", "span",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {"a": {"href", "title"}}
URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto"})
# Elements whose text is dropped along with the tag (their content is never readable prose).
_CLEAN_CONTENT_TAGS = {"script", "style", "iframe", "object", "embed", "noscript", "template"}

_HTTP_URL = re.compile(r"https?://[^\s\x00-\x1f\x7f\"'<>`\\]+", re.IGNORECASE)
_MARKDOWN_LINK = re.compile(r"(?:https?://|mailto:)\S+", re.IGNORECASE)


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False})
    md.enable("table")
    # Images would become <img> (tracking pixels); rendered as "!" plus a plain link instead.
    md.disable("image")
    # Only absolute http(s)/mailto links become <a>; anything else stays visible as text.
    md.validateLink = lambda url: _MARKDOWN_LINK.fullmatch(url) is not None  # type: ignore[method-assign]
    return md


_MD = _markdown()


def sanitize_html(html: str) -> str:
    """Pass HTML through the one allow-list every body and comment goes through."""
    return nh3.clean(
        strip_unsafe_chars(html),
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(_CLEAN_CONTENT_TAGS),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        link_rel="noopener noreferrer",
        url_schemes=set(URL_SCHEMES),
        strip_comments=True,
    )


def render_markdown(text: str) -> str:
    """Render scanner Markdown (raw HTML escaped, no images) to sanitized HTML."""
    return sanitize_html(_MD.render(strip_unsafe_chars(text)))


def link_for(risk: Risk, risk_link: str | None) -> str | None:
    """Return the link back to the risk: its own http(s) URL, else risk_link, else None."""
    for candidate in (risk.url, risk_link):
        if candidate and _HTTP_URL.fullmatch(candidate):
            return candidate
    return None


def _escape_text(value: str) -> str:
    """Escape text for an HTML text node the way the sanitizer writes it back.

    html5ever (inside nh3) serializes text with `&`, `<`, `>` and U+00A0 as references and
    quotes as they are; text escaped the same way keeps its length through sanitize_html,
    so a section's length measured before the final pass is the length after it.
    """
    return escape(value, quote=False).replace("\xa0", "&nbsp;")


def _text(value: str, limit: int = MAX_CELL_LENGTH) -> str:
    """Escape a short scanner value for HTML, cut to limit characters."""
    value = strip_unsafe_chars(value)
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return _escape_text(value)


def _anchor(url: str, label: str) -> str:
    return f'<a href="{escape(url, quote=True)}">{escape(label)}</a>'


def _header(risk: Risk, link: str | None) -> str:
    rows = [
        ("Severity", escape(severity_label(risk.severity))),
        ("Source", _text(risk.source)),
    ]
    if risk.project:
        rows.append(("Project", _text(risk.project)))
    rows.append(("Key", f"<code>{_text(risk.key)}</code>"))
    parts = [f"<h2>Security finding: {_text(risk.name)}</h2>"]
    if link:
        label = f"Open this finding in {_comment_text(risk.source)}"
        parts.append(f"<p>{_anchor(link, label)}</p>")
    parts.append(
        "<table><tbody>"
        + "".join(f"<tr><th>{label}</th><td>{value}</td></tr>" for label, value in rows)
        + "</tbody></table>"
    )
    return "".join(parts)


def _note(text: str) -> str:
    return f"<p><em>{escape(text)}</em></p>"


class _Section:
    """A body section that can be rendered with only the first n units of its content.

    `render(n)` returns HTML that is safe as it is — scanner text escaped by _escape_text
    inside our fixed markup, or passed through sanitize_html by the section itself — so the
    body is sanitized as a whole once, not once per attempt to fit it (nh3 takes ~0.3 s per
    MB of entity-dense text such as `&&&…`).
    """

    def __init__(self, size: int, render: Callable[[int], str]) -> None:
        self.size = size
        self.render = render


def _assets_section(risk: Risk) -> _Section:
    assets = risk.assets
    total = len(assets)

    def render(n: int) -> str:
        rows = "".join(
            f"<tr><td>{_text(a.group)}</td><td>{_text(a.identifier)}</td></tr>" for a in assets[:n]
        )
        html = (
            f"<h3>Impacted assets ({total:,})</h3>"
            f"<table><thead><tr><th>Group</th><th>Identifier</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
        if n < total:
            html += _note(f"… and {total - n:,} more")
        return html

    return _Section(min(total, MAX_ASSET_ROWS), render)


def _truncation_note(n: int, size: int) -> str:
    return _note(f"… truncated: showing the first {n:,} of {size:,} characters.")


def _markdown_head(text: str) -> int:
    """How many leading characters of text are rendered as Markdown (at most the cap).

    A cut at a paragraph break in the second half of the cap keeps the last block whole.
    """
    if len(text) <= MAX_MARKDOWN_CHARS:
        return len(text)
    cut = text.rfind("\n\n", MAX_MARKDOWN_CHARS // 2, MAX_MARKDOWN_CHARS)
    return cut if cut > 0 else MAX_MARKDOWN_CHARS


def _markdown_section(title: str, text: str) -> _Section:
    head = _markdown_head(text)
    rendered: dict[int, str] = {}

    def markdown(n: int) -> str:
        # Fitting a body renders a section more than once; the Markdown part is the costly one.
        if n not in rendered:
            rendered.clear()
            rendered[n] = sanitize_html(
                f"<h3>{escape(title)}</h3>" + _MD.render(strip_unsafe_chars(text[:n]))
            )
        return rendered[n]

    def render(n: int) -> str:
        html = markdown(min(n, head))
        if n > head:
            html += (
                _note(
                    f"The rest is shown as plain text (Markdown is rendered for the first "
                    f"{head:,} characters)."
                )
                + f"<pre>{_escape_text(strip_unsafe_chars(text[head:n]))}</pre>"
            )
        return html + (_truncation_note(n, len(text)) if n < len(text) else "")

    return _Section(len(text), render)


def _preformatted_section(title: str, text: str) -> _Section:
    def render(n: int) -> str:
        html = f"<h3>{escape(title)}</h3><pre>{_escape_text(strip_unsafe_chars(text[:n]))}</pre>"
        return html + (_truncation_note(n, len(text)) if n < len(text) else "")

    return _Section(len(text), render)


def _fit(section: _Section, full: str, budget: int) -> str:
    """Render section with as much content as fits in budget (or none at all)."""
    n, length = section.size, utf16_length(full)
    while n > 0:
        # Content shrinks about in proportion to the rendered length; aim a little lower.
        n = min(n - 1, int(n * budget / length * 0.98))
        if n <= 0:
            break
        html = section.render(n)
        length = utf16_length(html)
        if length <= budget:
            return html
    return section.render(0)


def _fit_sections(sections: Sequence[_Section], budget: int) -> list[str]:
    """Render sections in full when they fit, else share the budget fairly (water-filling)."""
    full = [section.render(section.size) for section in sections]
    lengths = [utf16_length(html) for html in full]
    if sum(lengths) <= budget:
        return full
    out = list(full)
    remaining = budget
    order = sorted(range(len(sections)), key=lambda i: lengths[i])
    for position, i in enumerate(order):
        share = max(remaining // (len(order) - position), 0)
        if lengths[i] > share:
            out[i] = _fit(sections[i], full[i], share)
        remaining -= utf16_length(out[i])
    return out


def render_body(risk: Risk, *, risk_link: str | None) -> str:
    """Return the sanitized HTML body of a risk's work item, under MAX_BODY_LENGTH."""
    header = sanitize_html(_header(risk, link_for(risk, risk_link)))
    sections: list[_Section] = []
    if risk.assets:
        sections.append(_assets_section(risk))
    for title, text, make in (
        ("Definition", risk.definition, _markdown_section),
        ("Evidence", risk.evidence, _preformatted_section),
        ("Proof", risk.proof, _preformatted_section),
        ("Remediation", risk.remediation, _markdown_section),
    ):
        if text and text.strip():
            sections.append(make(title, text))
    budget = MAX_BODY_LENGTH - utf16_length(header)
    while True:
        # Sections are safe by construction; this one pass guards the body as a whole.
        body = sanitize_html(header + "".join(_fit_sections(sections, budget)))
        excess = utf16_length(body) - MAX_BODY_LENGTH
        if excess <= 0 or budget <= 0:
            return body
        budget -= max(excess, 1_000)  # the sanitizer lengthened something: fit again, smaller


def _op(field_name: str, value: Any) -> dict[str, Any]:
    # JSON Pointer escaping (RFC 6901) for admin-chosen reference names.
    pointer = field_name.replace("~", "~0").replace("/", "~1")
    return {"op": "add", "path": f"/fields/{pointer}", "value": value}


def _severity_value(field_name: str, severity: str) -> str | int:
    if field_name == SEVERITY_FIELD:
        return ado_severity_value(severity)
    return ado_priority_value(severity)


def build_create_patch(
    risk: Risk,
    template: Template,
    type_info: WorkItemTypeInfo,
    *,
    tracking_tag: str,
    risk_link: str | None,
) -> list[dict[str, Any]]:
    """Return the JSON Patch that creates a risk's work item.

    Fields come from the risk and the template's attributes and are sent only when the type has
    them. template.fields is added last but never overrides a field set from the risk or from a
    dedicated template attribute (title, body, severity/priority, tags, area and iteration
    path): those carry the finding and the tracking tag that prevents duplicates.
    """
    owned = risk_owned_fields(template, type_info)
    values: dict[str, Any] = {
        TITLE_FIELD: format_title(template.title_format, risk),
        TAGS_FIELD: "; ".join(
            build_tags(template.tags, risk.tags, severity=risk.severity, tracking=tracking_tag)
        ),
        AREA_PATH_FIELD: template.area_path,
        ITERATION_PATH_FIELD: template.iteration_path,
    }
    ops: list[dict[str, Any]] = []
    for field_name in owned:
        if field_name in values:
            ops.append(_op(field_name, values[field_name]))
        elif field_name in (SEVERITY_FIELD, PRIORITY_FIELD):
            ops.append(_op(field_name, _severity_value(field_name, risk.severity)))
        else:  # the body field
            ops.append(_op(field_name, render_body(risk, risk_link=risk_link)))
    taken = {name.casefold() for name in owned}
    for field_name, value in template.fields.items():
        if field_name.casefold() not in taken:
            ops.append(_op(field_name, value))
    link = link_for(risk, risk_link)
    if link:
        ops.append(
            {
                "op": "add",
                "path": "/relations/-",
                "value": {
                    "rel": "Hyperlink",
                    "url": link,
                    "attributes": {"comment": f"Security finding in {_comment_text(risk.source)}"},
                },
            }
        )
    return ops


def _comment_text(value: str) -> str:
    return " ".join(strip_unsafe_chars(value).split())[:MAX_CELL_LENGTH]


def _comment(paragraphs: Sequence[str], risk: Risk, risk_link: str | None, marker: str) -> str:
    parts = [f"<p>{p}</p>" for p in paragraphs]
    link = link_for(risk, risk_link)
    if link:
        parts.append(f"<p>{_anchor(link, 'Open this finding')}</p>")
    parts.append(_note(marker))
    return sanitize_html("".join(parts))


def body_digest(body: str) -> str:
    """SHA-256 (hex) of a rendered body: tells whether the item already shows it."""
    return hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()


def written_content(patch: Sequence[Mapping[str, Any]], *, item_hash: str | None) -> WrittenContent:
    """The title and body hash a create patch (build_create_patch) writes."""
    values = {
        str(op.get("path")): op.get("value") for op in patch if op.get("op") in ("add", "replace")
    }
    title = values.get(f"/fields/{TITLE_FIELD}")
    body = values.get(f"/fields/{REPRO_STEPS_FIELD}", values.get(f"/fields/{DESCRIPTION_FIELD}"))
    return WrittenContent(
        title=title if isinstance(title, str) else None,
        body_hash=body_digest(body) if isinstance(body, str) else None,
        item_hash=item_hash,
    )


@dataclass(frozen=True)
class ContentUpdate:
    """JSON Patch operations bringing an item's body and title up to date, and what they write.

    `ops` is empty when the item already shows the risk; `body_hash` / `title` are None for
    the parts not written.
    """

    ops: tuple[dict[str, Any], ...]
    body_hash: str | None
    title: str | None


def build_content_update(
    risk: Risk,
    type_info: WorkItemTypeInfo,
    *,
    title: str | None,
    last_title: str | None,
    last_body_hash: str | None,
    current_title: str | None = None,
    current_rev: int | None = None,
    risk_link: str | None,
) -> ContentUpdate:
    """Rewrite what changed of the body and title, without a comment (SPEC 4, "Content stays
    current").

    The body (Repro Steps or Description, when the type has it) is written unless its digest
    equals `last_body_hash`. The title (`title`, None when the template is gone) is written only
    when it differs from `last_title`, the title the service last wrote, and the item's
    `current_title` (read from Azure DevOps by the caller) still equals `last_title`: people's
    edits win. A title write is guarded by a JSON Patch `test` of `/rev` = `current_rev`, so a
    person's edit between the read and the write fails the whole update (HTTP 412, or 400
    VS402625 — AZURE_DEVOPS.md 3.3) instead of being overwritten.
    """
    ops: list[dict[str, Any]] = []
    written_body: str | None = None
    field_name = body_field(type_info)
    if field_name in type_info.field_names:
        body = render_body(risk, risk_link=risk_link)
        digest = body_digest(body)
        if digest != last_body_hash:
            ops.append(_op(field_name, body))
            written_body = digest
    written_title: str | None = None
    if (
        title_may_change(title, last_title)
        and current_title == last_title
        and TITLE_FIELD in type_info.field_names
    ):
        assert title is not None
        if current_rev is not None:
            ops.insert(0, {"op": "test", "path": "/rev", "value": current_rev})
        ops.append(_op(TITLE_FIELD, title))
        written_title = title
    return ContentUpdate(tuple(ops), written_body, written_title)


def title_may_change(title: str | None, last_title: str | None) -> bool:
    """True when the service would rewrite the title (if people left it alone): the caller
    then reads the item's current title for build_content_update."""
    return title is not None and last_title is not None and title != last_title


def build_severity_change(
    risk: Risk,
    old_severity: str,
    new_severity: str,
    type_info: WorkItemTypeInfo,
    *,
    risk_link: str | None,
    marker: str,
) -> tuple[list[dict[str, Any]], str]:
    """Return the patch updating Severity (or Priority) and the comment announcing the change."""
    ops: list[dict[str, Any]] = []
    field_name = severity_field(type_info)
    if field_name is not None:
        ops.append(_op(field_name, _severity_value(field_name, new_severity)))
    sentence = (
        f"Severity changed from {severity_label(old_severity)} to {severity_label(new_severity)}."
    )
    return ops, _comment([escape(sentence)], risk, risk_link, marker)


def build_status_comment(kind: str, risk: Risk, *, risk_link: str | None, marker: str) -> str:
    """Return the comment HTML for "scanner_resolved" or "scanner_reopened"."""
    source = escape(_comment_text(risk.source))
    if kind == "scanner_resolved":
        sentence = f"The scanner no longer reports this finding (source {source})."
    elif kind == "scanner_reopened":
        sentence = f"The scanner reports this finding again (source {source}): reopening."
    else:
        raise ValueError(f"unknown status comment kind {kind!r}")
    return _comment([sentence], risk, risk_link, marker)


def comment_has_marker(comment_text: str, marker: str) -> bool:
    """Return True when a comment (HTML or plain text) carries the marker as a whole."""
    marker = strip_unsafe_chars(marker)  # as it was written into the comment
    if not marker or not comment_text:
        return False
    # Bounded so that "event 7" is not found inside "event 70".
    pattern = re.compile(
        (r"(?<!\w)" if marker[0].isalnum() or marker[0] == "_" else "")
        + re.escape(marker)
        + (r"(?!\w)" if marker[-1].isalnum() or marker[-1] == "_" else "")
    )
    return any(pattern.search(text) for text in (comment_text, unescape(comment_text)))
