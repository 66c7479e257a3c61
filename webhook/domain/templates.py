"""Template choice, work item titles, tags and the fields a template leaves unset."""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

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

TRACKING_PREFIX = "adowh-"
"""Tags whose normal form starts with this belong to the service (tracking tags): scanners and
templates may not send them, and rendering never writes one except the risk's tracking tag."""

TRACKING_MAC_HEX = 16
"""Hex digits of HMAC-SHA256 kept in a tracking tag (64 bits): unguessable without the key."""

MIN_TRACKING_KEY_BYTES = 16
_MAC_CONTEXT = b"ado-webhook tracking tag v1\x00"


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


def _check_tag_parts(installation_id: str, risk_id: int) -> None:
    if not isinstance(installation_id, str) or not _INSTALLATION_ID.fullmatch(installation_id):
        raise ValueError("installation id must be 1-64 letters, digits, '-' or '_'")
    if isinstance(risk_id, bool) or not isinstance(risk_id, int) or risk_id < 0:
        raise ValueError(f"risk id must be a non-negative integer, not {risk_id!r}")


def legacy_tracking_tag(installation_id: str, risk_id: int) -> str:
    """Return the tracking tag items created before tags carried a MAC have:
    `adowh-<installation>-<risk id>`.

    Anyone who knows the installation id (it is on every work item) and a risk id (returned in
    the 202) can write it, so it is only ever looked up for a create job whose earlier attempt
    predates `tracking_tag`, and an item carrying it is adopted only after `adoption_problems`.
    """
    _check_tag_parts(installation_id, risk_id)
    return f"{TRACKING_PREFIX}{installation_id}-{risk_id}"


def tracking_tag(installation_id: str, risk_id: int, key: bytes) -> str:
    """Return the unique, unforgeable tag that finds a risk's work item again with WIQL.

    Shape `adowh-<installation>-<risk id>-<mac>`, mac = the first TRACKING_MAC_HEX hex digits of
    HMAC-SHA256(key, context + installation + risk id). `key` is the installation's random
    tracking key (at least MIN_TRACKING_KEY_BYTES bytes), which scanners never see, so nobody can
    put the tag of a future risk on an item. ASCII letters, digits and '-' only: nothing Azure
    DevOps would trim, split (';', AZURE_DEVOPS.md 3.2) or fold differently.
    Raises ValueError on an unsafe installation id, a negative risk id or a short key.
    """
    base = legacy_tracking_tag(installation_id, risk_id)
    if not isinstance(key, bytes) or len(key) < MIN_TRACKING_KEY_BYTES:
        raise ValueError(f"tracking key must be at least {MIN_TRACKING_KEY_BYTES} bytes")
    message = _MAC_CONTEXT + f"{installation_id}\x00{risk_id}".encode()
    mac = hmac.new(key, message, hashlib.sha256).hexdigest()[:TRACKING_MAC_HEX]
    return f"{base}-{mac}"


def tag_key(tag: str) -> str:
    """Return the form under which Azure DevOps compares tags, plus compatibility folding.

    ';' separates tags (AZURE_DEVOPS.md 3.2) and control characters never reach Azure DevOps
    (`clean_tag`). Whether it trims and folds case is not confirmed there; the stand-in does
    both (`webhook/sandbox/workitems.py normalize_tags`), so we assume it does. NFKC folding on
    top is deliberately wider still, so look-alikes such as full-width letters count as well.
    """
    return unicodedata.normalize("NFKC", clean_tag(tag)).casefold()


def is_reserved_tag(tag: str) -> bool:
    """Return True when a tag lies in the service's reserved namespace (TRACKING_PREFIX).

    e.g. "adowh-1a2b-7", " ADOWH-x" and "adowh-x" after a NUL are reserved; "adowh" and
    "my-adowh-x" are not.
    """
    return tag_key(tag).startswith(TRACKING_PREFIX)


def adoption_problems(
    fields: Mapping[str, Any],
    *,
    tag: str,
    installation_id: str,
    project: str,
    work_item_type: str,
) -> list[str]:
    """Return why a work item found by its tracking tag must not be adopted ([] = adoptable).

    `fields` are the item's fields (System.Tags, System.TeamProject, System.WorkItemType). The
    item must carry exactly `tag` as a whole tag (WIQL `CONTAINS` on tags is not confirmed to
    match whole tags, AZURE_DEVOPS.md 6.4), be of the template's project and type (compared
    case-insensitively, as Azure DevOps names are), and carry no other tracking tag of this
    installation: an item the service created carries exactly one.
    """
    problems: list[str] = []
    tags = split_tags(fields.get(TAGS_FIELD))
    if not has_tag(fields.get(TAGS_FIELD), tag):
        problems.append(f"does not carry the tag {tag}")
    own = f"{TRACKING_PREFIX}{installation_id}-".casefold()
    others = sorted(
        t for t in tags if tag_key(t).startswith(own) and t.casefold() != tag.casefold()
    )
    if others:
        problems.append(f"carries other tracking tags: {', '.join(others[:5])}")
    item_project = str(fields.get("System.TeamProject") or "")
    if item_project.casefold() != project.casefold():
        problems.append(f"is in project {item_project!r}, not {project!r}")
    item_type = str(fields.get("System.WorkItemType") or "")
    if item_type.casefold() != work_item_type.casefold():
        problems.append(f"is a {item_type!r}, not a {work_item_type!r}")
    return problems


def clean_tag(tag: str) -> str:
    """Return a tag without ';' (the separator), control characters or extra whitespace."""
    return _collapse(tag.replace(";", " "))


def build_tags(
    template_tags: Iterable[str], risk_tags: Iterable[str], *, severity: str, tracking: str
) -> list[str]:
    """Return the work item tags: template's, risk's, severity, tracking tag; deduplicated.

    Tags in the reserved namespace (`is_reserved_tag`) other than `tracking` are dropped, so no
    stored template or risk can put a tracking tag on an item (defence in depth: the API
    refuses them with 422).
    """
    required = [severity_label(severity).lower(), clean_tag(tracking)]
    required_keys = {tag.casefold() for tag in required}
    extra: list[str] = []
    seen = set(required_keys)
    for raw in (*template_tags, *risk_tags):
        tag = clean_tag(raw)
        if tag and tag.casefold() not in seen and not is_reserved_tag(tag):
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
