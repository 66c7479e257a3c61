"""Template choice, work item titles, tags and the fields a template leaves unset."""

from __future__ import annotations

import re
from collections.abc import Iterable

from webhook.domain.models import Risk, Template, WorkItemTypeInfo
from webhook.domain.severity import meets_threshold, severity_label, severity_rank

TITLE_PLACEHOLDERS: frozenset[str] = frozenset({"name", "severity", "source", "project", "key"})
"""The only placeholders a title_format may use."""

MAX_TITLE_LENGTH = 255
"""Azure DevOps' limit for System.Title, counted in UTF-16 code units to be safe."""

MAX_TAGS = 100
"""Azure DevOps allows at most 100 tags per work item (AZURE_DEVOPS.md 3.2)."""

TITLE_FIELD = "System.Title"
TAGS_FIELD = "System.Tags"
AREA_PATH_FIELD = "System.AreaPath"
ITERATION_PATH_FIELD = "System.IterationPath"
SEVERITY_FIELD = "Microsoft.VSTS.Common.Severity"
PRIORITY_FIELD = "Microsoft.VSTS.Common.Priority"
REPRO_STEPS_FIELD = "Microsoft.VSTS.TCM.ReproSteps"
DESCRIPTION_FIELD = "System.Description"

_PLACEHOLDER = re.compile(r"\{(name|severity|source|project|key)\}")
_ANY_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
# C0/C1 controls and code points XML 1.0 forbids; Azure DevOps stores fields as XML-safe text.
_UNSAFE_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_INSTALLATION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def choose_template(
    templates: Iterable[Template], *, severity: str, source: str
) -> Template | None:
    """Return the auto-create template for a risk: highest threshold met, ties to the lowest id."""
    candidates = [
        template
        for template in templates
        if template.auto_create
        and meets_threshold(severity, template.severity_threshold)
        and (not template.sources or source in template.sources)
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda t: (-severity_rank(t.severity_threshold), t.id))


def strip_unsafe_chars(text: str) -> str:
    """Remove control characters and code points that XML (and so Azure DevOps) rejects."""
    return _UNSAFE_CHARS.sub("", text)


def utf16_length(text: str) -> int:
    """Return the length of text in UTF-16 code units, the unit .NET limits count in."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _collapse(text: str) -> str:
    return " ".join(strip_unsafe_chars(text).split())


def _cut(text: str, limit: int) -> str:
    """Cut text to at most limit UTF-16 code units, ending with an ellipsis when cut."""
    if utf16_length(text) <= limit:
        return text
    kept = text[: limit - 1]
    while utf16_length(kept) > limit - 1:
        kept = kept[:-1]
    return kept.rstrip() + "…"


def format_title(title_format: str, risk: Risk) -> str:
    """Return the single-line work item title for a risk (placeholders only, no str.format)."""
    values = {
        "name": risk.name,
        "severity": severity_label(risk.severity),
        "source": risk.source,
        "project": risk.project or "",
        "key": risk.key,
    }
    # One regex pass: substituted values are never scanned again, and nothing but these five
    # names is ever looked up (str.format would allow "{name.__class__}").
    title = _collapse(_PLACEHOLDER.sub(lambda m: values[m.group(1)], title_format))
    if not title:
        title = _collapse(risk.name) or _collapse(risk.key) or "Security finding"
    return _cut(title, MAX_TITLE_LENGTH)


def validate_title_format(title_format: str) -> list[str]:
    """Return the unknown placeholders of a title format, e.g. ["{name.__class__}"]."""
    unknown: list[str] = []
    for match in _ANY_PLACEHOLDER.finditer(title_format):
        placeholder = match.group(0)
        if placeholder[1:-1] not in TITLE_PLACEHOLDERS and placeholder not in unknown:
            unknown.append(placeholder)
    return unknown


def body_field(type_info: WorkItemTypeInfo) -> str:
    """Return the field the HTML body goes to: Repro Steps where the type has it."""
    if REPRO_STEPS_FIELD in type_info.field_names:
        return REPRO_STEPS_FIELD
    return DESCRIPTION_FIELD


def severity_field(type_info: WorkItemTypeInfo) -> str | None:
    """Return the field carrying the risk's severity: Severity, else Priority, else None."""
    if SEVERITY_FIELD in type_info.field_names:
        return SEVERITY_FIELD
    if PRIORITY_FIELD in type_info.field_names:
        return PRIORITY_FIELD
    return None


def risk_owned_fields(template: Template, type_info: WorkItemTypeInfo) -> tuple[str, ...]:
    """Return the fields the service sets from the risk or template attributes, in patch order."""
    candidates = [
        TITLE_FIELD,
        body_field(type_info),
        severity_field(type_info),
        TAGS_FIELD,
        AREA_PATH_FIELD if template.area_path else None,
        ITERATION_PATH_FIELD if template.iteration_path else None,
    ]
    return tuple(f for f in candidates if f is not None and f in type_info.field_names)


def fields_set_by_service(template: Template, type_info: WorkItemTypeInfo) -> frozenset[str]:
    """Return the reference names a work item created from this template gets a value for."""
    return frozenset(risk_owned_fields(template, type_info)) | frozenset(template.fields)


def missing_required_fields(template: Template, type_info: WorkItemTypeInfo) -> list[str]:
    """Return the always-required fields (without default) the template leaves unset, sorted."""
    given = {name.casefold() for name in fields_set_by_service(template, type_info)}
    return sorted(name for name in type_info.required_fields if name.casefold() not in given)


def tracking_tag(installation_id: str, risk_id: int) -> str:
    """Return the unique tag that finds a risk's work item again with WIQL."""
    if not isinstance(installation_id, str) or not _INSTALLATION_ID.fullmatch(installation_id):
        raise ValueError("installation id must be 1-64 letters, digits, '-' or '_'")
    if isinstance(risk_id, bool) or not isinstance(risk_id, int) or risk_id < 0:
        raise ValueError(f"risk id must be a non-negative integer, not {risk_id!r}")
    return f"adowh-{installation_id}-{risk_id}"


def clean_tag(tag: str) -> str:
    """Return a tag without ';' (the separator), control characters or extra whitespace."""
    return _collapse(tag.replace(";", " "))


def build_tags(
    template_tags: Iterable[str], risk_tags: Iterable[str], *, severity: str, tracking: str
) -> list[str]:
    """Return the work item tags: template's, risk's, severity, tracking tag; deduplicated."""
    required = [severity_label(severity).lower(), clean_tag(tracking)]
    required_keys = {tag.casefold() for tag in required}
    extra: list[str] = []
    seen = set(required_keys)
    for raw in (*template_tags, *risk_tags):
        tag = clean_tag(raw)
        if tag and tag.casefold() not in seen:
            seen.add(tag.casefold())
            extra.append(tag)
    # The severity and tracking tags always fit: the tracking tag is what prevents duplicates.
    return extra[: MAX_TAGS - len(required)] + required


def split_tags(value: str | None) -> list[str]:
    """Split a System.Tags value ("a; b") into its tags."""
    return [tag.strip() for tag in (value or "").split(";") if tag.strip()]


def has_tag(tags_value: str | None, tag: str) -> bool:
    """Return True when a System.Tags value holds exactly this tag (case-insensitive)."""
    wanted = tag.strip().casefold()
    return any(existing.casefold() == wanted for existing in split_tags(tags_value))
