"""marshmallow schemas at the edges: inbound payloads (RAISE on unknown), documented responses."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit

from marshmallow import (
    EXCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_dump,
    validate,
    validates_schema,
)

from webhook.domain.models import Asset, Risk
from webhook.domain.severity import SEVERITIES, normalize_severity
from webhook.domain.templates import TRACKING_PREFIX, is_reserved_tag

MAX_TEXT_BYTES = 256 * 1024
MAX_ASSETS = 10_000
MAX_RISKS = 1000
MAX_DETAILS = 200
MAX_DETAIL_KEY = 100  # characters of one field name in an error path
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# Ids are SQLite INTEGERs: larger numbers are invalid (422), never a server error.
MAX_ID = 2**63 - 1
ID_RANGE = validate.Range(min=1, max=MAX_ID)
# What webhook.ado accepts for credentials (it raises ValueError otherwise): printable ASCII
# PATs, tenant = GUID or domain, client id = GUID-ish. Checked here so the answer is a 422.
PAT_PATTERN = r"[\x21-\x7e]+"
TENANT_PATTERN = r"[A-Za-z0-9][A-Za-z0-9.-]{0,127}"
CLIENT_ID_PATTERN = r"[A-Za-z0-9-]{1,64}"


class FullMatch(validate.Validator):
    """The whole value matches `pattern` (documented as the anchored `^pattern$`)."""

    error: str

    def __init__(self, pattern: str, error: str) -> None:
        self.regex = re.compile(pattern)
        self.error = error

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, str) or not self.regex.fullmatch(value):
            raise ValidationError(self.error)
        return value


# ---- text a sender may legally write in JSON but the service cannot store -------------------
#
# JSON may carry any `\uXXXX` escape, so a decoded string can hold a lone UTF-16 surrogate
# (half of an emoji cut by a byte limit): no UTF-8 can carry it, so SQLite, hashing and Azure
# DevOps would all fail on it. Such text is refused with a 422 naming the field (SPEC 4: "input
# the service cannot store gets a 4xx naming the field, never a 500").
#
# NUL (U+0000) is refused the same way, deliberately: SQLite would keep it, but Azure DevOps
# fields, HTML and XML 1.0 cannot carry it, so accepting it would only move the failure to a
# work item that can never be written. A sender fixes it once; a stored NUL poisons a job.
_UNSTORABLE_CHAR = re.compile("[\x00\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why the text `value` cannot be stored (a 422 message), or None when it can.

    Refused: lone UTF-16 surrogates (U+D800-U+DFFF) and NUL (U+0000). Cost: O(1) for the NUL-free
    ASCII common case (`str.isascii` is a flag), one C-speed encode otherwise.
    """
    if value.isascii():
        if "\x00" not in value:
            return None
    elif "\x00" not in value:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            pass
        else:
            return None
    match = _UNSTORABLE_CHAR.search(value)
    if match is None:  # pragma: no cover - the checks above found one
        return None
    index = match.start()
    if match.group() == "\x00":
        return (
            f"Contains U+0000 (NUL) at index {index}; Azure DevOps, HTML and XML cannot carry it."
        )
    return (
        f"Contains a lone UTF-16 surrogate (U+{ord(match.group()):04X}) at index {index}, which "
        "no UTF-8 text can carry (an emoji cut in half?)."
    )


class Text(fields.String):
    """A JSON string the service can store: `text_problem` decides (lone surrogates, NUL → 422).

    Every inbound string field uses it (or a subclass), so the 422 names the field's path.
    NUL is refused on purpose, not stripped: Azure DevOps fields, HTML and XML 1.0 cannot
    carry it, and silently changing a scanner's key or evidence would hide the sender's bug.
    Azure DevOps' own deliveries are repaired instead (`VendorJson`).
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        result: str = super()._deserialize(value, attr, data, **kwargs)
        problem = text_problem(result)
        if problem is not None:
            raise ValidationError(problem)
        return result


_CONTROL_CHAR = re.compile("[\x00-\x1f\x7f-\x9f]")


def path_name_problem(value: str) -> str | None:
    """Why `value` cannot be a project or work item type name in a URL path, or None.

    These names become one path segment under the organization
    (`{org}/{project}/_apis/...`, AZURE_DEVOPS.md); a dot segment (`.`, `..`, also written
    `%2e%2e`) would be resolved by HTTP clients and servers to a path outside it, and `/`, `\\`
    or control characters split or corrupt the path. Azure DevOps itself forbids all of these
    in project names ("Naming restrictions", learn.microsoft.com/azure/devops/organizations/
    settings/naming-restrictions).
    """
    if not value.strip():
        return "Must not be blank."
    if _CONTROL_CHAR.search(value):
        return "Must not contain control characters."
    decoded = value
    for _ in range(3):  # a server or proxy may decode once more than we expect
        if decoded.strip() in (".", ".."):
            return "Must not be a dot segment (. or ..), even percent-encoded."
        if "/" in decoded or "\\" in decoded:
            return "Must not contain / or \\ (also percent-encoded)."
        if "%" not in decoded:
            break
        decoded = unquote(decoded)
    return None


def _path_name(value: str) -> None:
    """marshmallow validator for `path_name_problem`."""
    problem = path_name_problem(value)
    if problem is not None:
        raise ValidationError(problem)


NOT_BLANK_DOC = {"pattern": r"\S"}


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn marshmallow's nested messages into {"risks.3.url": [...]}.

    Bounded: at most MAX_DETAILS paths, each field name cut to MAX_DETAIL_KEY characters.
    """
    out: dict[str, list[str]] = {}

    def walk(node: Any, path: str) -> None:
        if len(out) >= MAX_DETAILS:
            return
        if isinstance(node, dict):
            for key, value in node.items():
                # An unknown field's name is the sender's text: bounded, and with lone
                # surrogates (and NUL) shown as U+FFFD so any JSON reader can read the answer.
                name = repair_text(str(key))
                if len(name) > MAX_DETAIL_KEY:
                    name = name[:MAX_DETAIL_KEY] + "…"
                walk(value, f"{path}.{name}" if path else name)
        elif isinstance(node, list) and all(isinstance(m, str) for m in node):
            out[path or "_schema"] = list(node)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}.{index}" if path else str(index))
        else:
            out[path or "_schema"] = [str(node)]

    walk(messages, prefix)
    return out


_BAD_URL_CHARS = re.compile("[\\s\x00-\x1f\x7f\ud800-\udfff]")


def _max_bytes(value: str) -> None:
    if len(value) > MAX_TEXT_BYTES // 4 and len(value.encode("utf-8")) > MAX_TEXT_BYTES:
        raise ValidationError(f"Longer than {MAX_TEXT_BYTES} bytes.")


def check_http_url(value: str, *, allow_userinfo: bool = False) -> None:
    """Accept absolute http(s) URLs with a host; reject user info unless allowed."""
    if len(value) > 2048:
        raise ValidationError("URL longer than 2048 characters.")
    if _BAD_URL_CHARS.search(value):
        raise ValidationError(
            "URL must not contain whitespace, control characters or lone surrogates."
        )
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValidationError("Not a valid URL.") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValidationError("Must be an absolute http(s) URL.")
    if not allow_userinfo and ("@" in parts.netloc):
        raise ValidationError("URL must not contain user info.")
    if port == 0:
        raise ValidationError("Not a valid port.")


def _not_reserved_tag(value: str) -> None:
    """Tracking tags find a risk's work item again; nobody else may write one."""
    if is_reserved_tag(value):
        raise ValidationError(
            f"Tags starting with {TRACKING_PREFIX!r} (any case) are reserved for ado-webhook."
        )


TAG_DOC = {"description": f"1-100 characters; must not start with {TRACKING_PREFIX!r} (reserved)"}


def tag_list(max_tags: int, **kwargs: Any) -> fields.List[str]:
    """A list of at most max_tags tags of 1-100 characters, none in the reserved namespace."""
    return fields.List(
        Text(validate=[validate.Length(1, 100), _not_reserved_tag], metadata=TAG_DOC),
        validate=validate.Length(max=max_tags),
        **kwargs,
    )


class HttpUrl(Text):
    """An absolute http(s) URL."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        result = super()._deserialize(value, attr, data, **kwargs)
        check_http_url(result)
        return result


class SeverityField(Text):
    """critical/high/medium/low/info, case-insensitive, stored lower-case."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        result = super()._deserialize(value, attr, data, **kwargs)
        try:
            return normalize_severity(result)
        except ValueError:
            raise ValidationError(f"Must be one of: {', '.join(reversed(SEVERITIES))}.") from None


class AssetList(fields.Field[list[Asset]]):
    """`[{"group": str, "identifier": str}]`, checked by hand: thousands per risk must be cheap."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[Asset]:
        if not isinstance(value, list):
            raise ValidationError("Not a valid list.")
        if len(value) > MAX_ASSETS:
            raise ValidationError(f"At most {MAX_ASSETS} assets.")
        errors: dict[int, Any] = {}
        assets: list[Asset] = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                errors[index] = {"_schema": ["Not a valid object."]}
                continue
            item_errors: dict[str, list[str]] = {}
            for name in item.keys() - {"group", "identifier"}:
                item_errors[str(name)] = ["Unknown field."]
            for name in ("group", "identifier"):
                field_value = item.get(name)
                if field_value is None:
                    item_errors[name] = ["Missing data for required field."]
                elif not isinstance(field_value, str):
                    item_errors[name] = ["Not a valid string."]
                elif not 1 <= len(field_value) <= 1024:
                    item_errors[name] = ["Length must be between 1 and 1024."]
                elif (problem := text_problem(field_value)) is not None:
                    item_errors[name] = [problem]
            if item_errors:
                errors[index] = item_errors
            else:
                assets.append(Asset(group=item["group"], identifier=item["identifier"]))
            if len(errors) >= 20:
                break
        if errors:
            raise ValidationError(errors)
        return assets


class RiskSchema(Schema):
    """One risk as a scanner sends it (SPEC 3.1 RISK table)."""

    class Meta:
        unknown = RAISE

    key = Text(required=True, validate=validate.Length(1, 256))
    name = Text(required=True, validate=validate.Length(1, 1000))
    severity = SeverityField(required=True, metadata={"enum": list(reversed(SEVERITIES))})
    status = Text(
        load_default="open",
        validate=validate.OneOf(["open", "resolved"]),
        metadata={"description": "open (default) or resolved"},
    )
    url = HttpUrl(allow_none=True, metadata={"format": "uri"})
    definition = Text(allow_none=True, validate=_max_bytes)
    evidence = Text(allow_none=True, validate=_max_bytes)
    proof = Text(allow_none=True, validate=_max_bytes)
    remediation = Text(allow_none=True, validate=_max_bytes)
    assets = AssetList(
        allow_none=True,
        metadata={
            "type": "array",
            "maxItems": MAX_ASSETS,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["group", "identifier"],
                "properties": {
                    "group": {"type": "string", "minLength": 1, "maxLength": 1024},
                    "identifier": {"type": "string", "minLength": 1, "maxLength": 1024},
                },
            },
        },
    )
    project = Text(allow_none=True, validate=validate.Length(1, 256))
    tags = tag_list(100, allow_none=True)


class RiskEnvelopeSchema(Schema):
    """`{"risk": RISK}` or `{"risks": [RISK, ...]}` (1-1000).

    `load` first tries `quick_envelope`, which accepts only plainly valid bodies and returns
    exactly what marshmallow would; marshmallow itself decides every other body (and writes
    its error messages). For a single risk, marshmallow's field machinery cost more CPU than
    storing the risk; tests/test_schemas.py compares the two on thousands of bodies.
    """

    # Schema-level keywords for /openapi.json (webhook.openapi): `_one_of` below enforces it.
    openapi_extra = {"oneOf": [{"required": ["risk"]}, {"required": ["risks"]}]}

    class Meta:
        unknown = RAISE

    risk = fields.Nested(RiskSchema)
    risks = fields.List(fields.Nested(RiskSchema), validate=validate.Length(1, MAX_RISKS))

    @validates_schema
    def _one_of(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("risk" in data) == ("risks" in data):
            raise ValidationError("Send exactly one of `risk` or `risks`.", "_schema")
        keys = [r["key"] for r in data.get("risks") or []]
        if len(keys) != len(set(keys)):
            seen: set[str] = set()
            dupes = sorted({k for k in keys if k in seen or seen.add(k)})  # type: ignore[func-returns-value]
            raise ValidationError(
                f"Duplicate keys in one request: {', '.join(dupes[:10])}", "risks"
            )

    def load(
        self,
        data: Any,
        *,
        many: bool | None = None,
        partial: Any = None,
        unknown: Any = None,
    ) -> Any:
        if many is None and partial is None and unknown is None:
            quick = quick_envelope(data)
            if quick is not None:
                return quick
        return super().load(data, many=many, partial=partial, unknown=unknown)


_RISK_FIELDS = frozenset(RiskSchema().fields)
_TEXT_FIELDS = ("definition", "evidence", "proof", "remediation")
_ASSET_FIELDS = frozenset({"group", "identifier"})
_SEVERITY_NAMES = frozenset(SEVERITIES)
_STATUSES = ("open", "resolved")


def _plain_text(value: Any, low: int, high: int) -> bool:
    return (
        type(value) is str
        and low <= len(value) <= high
        and ((value.isascii() and "\x00" not in value) or text_problem(value) is None)
    )


def _quick_assets(value: Any) -> list[Asset] | None:
    if type(value) is not list or len(value) > MAX_ASSETS:
        return None
    assets = []
    for item in value:
        if type(item) is not dict or item.keys() != _ASSET_FIELDS:
            return None
        group, identifier = item["group"], item["identifier"]
        if not (_plain_text(group, 1, 1024) and _plain_text(identifier, 1, 1024)):
            return None
        assets.append(Asset(group=group, identifier=identifier))
    return assets


def _quick_risk(item: Any) -> dict[str, Any] | None:
    """RiskSchema().load(item) when `item` is plainly valid, else None."""
    if type(item) is not dict or not item.keys() <= _RISK_FIELDS:
        return None
    severity = item.get("severity")
    status = item.get("status", "open")
    if not (
        _plain_text(item.get("key"), 1, 256)
        and _plain_text(item.get("name"), 1, 1000)
        and type(severity) is str
        and severity.lower() in _SEVERITY_NAMES
        and type(status) is str
        and status in _STATUSES
    ):
        return None
    out = dict(item)
    out["severity"] = severity.lower()
    out["status"] = status
    url = item.get("url")
    if url is not None:
        if type(url) is not str:
            return None
        try:
            check_http_url(url)
        except ValidationError:
            return None
    for name in _TEXT_FIELDS:
        text = item.get(name)
        if text is not None:
            if type(text) is not str or text_problem(text) is not None:
                return None
            try:
                _max_bytes(text)
            except ValidationError:
                return None
    project = item.get("project")
    if project is not None and not _plain_text(project, 1, 256):
        return None
    tags = item.get("tags")
    if tags is not None:
        if type(tags) is not list or len(tags) > 100:
            return None
        if not all(_plain_text(tag, 1, 100) and not is_reserved_tag(tag) for tag in tags):
            return None
        out["tags"] = list(tags)
    if item.get("assets") is not None:
        assets = _quick_assets(item["assets"])
        if assets is None:
            return None
        out["assets"] = assets
    return out


def quick_envelope(data: Any) -> dict[str, Any] | None:
    """RiskEnvelopeSchema's result for a plainly valid body, without marshmallow; else None.

    Conservative by design: any doubt (a type, a length, a duplicate key) returns None and
    marshmallow decides, so the two never disagree on a body this accepts.
    """
    if type(data) is not dict:
        return None
    if data.keys() == {"risk"}:
        one = _quick_risk(data["risk"])
        return None if one is None else {"risk": one}
    if data.keys() != {"risks"}:
        return None
    items = data["risks"]
    if type(items) is not list or not 1 <= len(items) <= MAX_RISKS:
        return None
    risks = []
    keys: set[str] = set()
    for item in items:
        one = _quick_risk(item)
        if one is None or one["key"] in keys:
            return None
        keys.add(one["key"])
        risks.append(one)
    return {"risks": risks}


def risks_from_payload(data: dict[str, Any], source: str) -> list[Risk]:
    """Build domain risks from a validated envelope."""
    items = data["risks"] if "risks" in data else [data["risk"]]
    return [
        Risk(
            id=None,
            source=source,
            key=item["key"],
            name=item["name"],
            severity=item["severity"],
            status=item.get("status") or "open",
            url=item.get("url"),
            definition=item.get("definition"),
            evidence=item.get("evidence"),
            proof=item.get("proof"),
            remediation=item.get("remediation"),
            assets=list(item.get("assets") or []),
            project=item.get("project"),
            tags=list(dict.fromkeys(item.get("tags") or [])),
        )
        for item in items
    ]


# ---- admin request bodies -------------------------------------------------------------------


class SourceCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    name = Text(
        required=True,
        validate=validate.Regexp(
            NAME_PATTERN, error="1-64 of A-Z a-z 0-9 . _ -, starting alphanumeric"
        ),
    )
    callback_url = HttpUrl(allow_none=True, metadata={"format": "uri"})


class PageQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class RiskQuerySchema(PageQuerySchema):
    status = Text(validate=validate.OneOf(["open", "resolved", "removed"]))
    severity = SeverityField(metadata={"enum": list(reversed(SEVERITIES))})
    source = Text(validate=validate.Length(1, 64))
    key = Text(validate=validate.Length(1, 256))


class JobQuerySchema(PageQuerySchema):
    state = Text(validate=validate.OneOf(["pending", "running", "failed", "done"]))


# ---- responses (documented in /openapi.json) -------------------------------------------------


class ErrorDetailSchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Dict(required=True)


class ErrorSchema(Schema):
    error = fields.Nested(ErrorDetailSchema, required=True)


class IngestResultSchema(Schema):
    key = fields.String(required=True)
    id = fields.Integer(required=True)
    action = fields.String(
        required=True, validate=validate.OneOf(["created", "updated", "unchanged"])
    )


class IngestResponseSchema(Schema):
    risks = fields.List(fields.Nested(IngestResultSchema), required=True)


class SourceSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    callback_url = fields.String(allow_none=True, required=True)
    webhook_url = fields.String(required=True)
    previous_secret_valid_until = fields.String(allow_none=True, required=True)
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)


class SourceWithSecretSchema(SourceSchema):
    secret = fields.String(required=True, metadata={"description": "shown once"})


class WorkItemRefSchema(Schema):
    id = fields.Integer(required=True)
    url = fields.String(allow_none=True, required=True)
    project = fields.String(required=True)
    type = fields.String(required=True)
    state = fields.String(allow_none=True, required=True)
    deleted = fields.Boolean(required=True)


class ResolutionSchema(Schema):
    state = fields.String(allow_none=True, required=True)
    reason = fields.String(allow_none=True, required=True)  # System.Reason (None: not known)
    by = fields.String(allow_none=True, required=True)
    at = fields.String(allow_none=True, required=True)


class AssetSchema(Schema):
    group = fields.String(required=True)
    identifier = fields.String(required=True)


class RiskOutSchema(Schema):
    id = fields.Integer(required=True)
    source = fields.String(required=True)
    key = fields.String(required=True)
    name = fields.String(required=True)
    severity = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["open", "resolved", "removed"]))
    resolution = fields.Nested(ResolutionSchema, allow_none=True, required=True)
    url = fields.String(allow_none=True, required=True)
    project = fields.String(allow_none=True, required=True)
    assets = fields.List(
        fields.Nested(AssetSchema),
        required=True,
        metadata={
            "description": "in lists, the first 20 assets (assets_total counts them all); "
            "GET /admin/risks/<id> shows every asset"
        },
    )
    assets_total = fields.Integer(required=True, metadata={"description": "number of assets"})
    tags = fields.List(fields.String(), required=True)
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)
    work_item = fields.Nested(WorkItemRefSchema, allow_none=True, required=True)


class HistoryEntrySchema(Schema):
    at = fields.String(required=True)
    event = fields.String(required=True)
    detail = fields.Dict(required=True)


class RiskDetailSchema(RiskOutSchema):
    definition = fields.String(allow_none=True)
    evidence = fields.String(allow_none=True)
    proof = fields.String(allow_none=True)
    remediation = fields.String(allow_none=True)
    history = fields.List(fields.Nested(HistoryEntrySchema), required=True)


class JobSchema(Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True)
    state = fields.String(
        required=True, validate=validate.OneOf(["pending", "running", "failed", "done"])
    )
    attempts = fields.Integer(required=True)
    last_error = fields.String(allow_none=True, required=True)
    risk_id = fields.Integer(allow_none=True, required=True)
    next_attempt_at = fields.String(allow_none=True, required=True)


class HealthSchema(Schema):
    status = fields.String(required=True)
    checks = fields.Dict()


class ReconcileHealthSchema(Schema):
    """/readyz `checks.reconcile` (webhook.storage.types.ReconcileHealth)."""

    last_ok = fields.Boolean(allow_none=True, required=True)
    last_run_at = fields.String(required=True)
    consecutive_failures = fields.Integer(required=True)
    last_error = fields.String(allow_none=True, required=True)
    item_failures = fields.Integer(required=True)


def page_schema(item: type[Schema], name: str) -> type[Schema]:
    """The SPEC list envelope `{items, total, page, per_page}` for an item schema."""
    return type(
        name,
        (Schema,),
        {
            "items": fields.List(fields.Nested(item), required=True),
            "total": fields.Integer(required=True),
            "page": fields.Integer(required=True),
            "per_page": fields.Integer(required=True),
        },
    )


SourcePageSchema = page_schema(SourceSchema, "SourcePageSchema")
RiskPageSchema = page_schema(RiskOutSchema, "RiskPageSchema")
JobPageSchema = page_schema(JobSchema, "JobPageSchema")


# ---- Azure DevOps connections and templates --------------------------------------------------


class StrictBoolean(fields.Boolean):
    """JSON true/false only."""

    truthy = {True}
    falsy = {False}


class PatAuthSchema(Schema):
    class Meta:
        unknown = RAISE

    type = Text(required=True, validate=validate.Equal("pat"))
    token = Text(
        required=True,
        validate=[
            validate.Length(1, 1024),
            FullMatch(PAT_PATTERN, "Must be printable ASCII without spaces."),
        ],
        load_only=True,
    )


class ServicePrincipalAuthSchema(Schema):
    class Meta:
        unknown = RAISE

    type = Text(required=True, validate=validate.Equal("service_principal"))
    tenant_id = Text(
        required=True,
        validate=[
            validate.Length(1, 128),
            FullMatch(TENANT_PATTERN, "Must be the tenant GUID or domain name."),
        ],
    )
    client_id = Text(
        required=True,
        validate=[
            validate.Length(1, 128),
            FullMatch(CLIENT_ID_PATTERN, "Must be the application (client) id GUID."),
        ],
    )
    client_secret = Text(required=True, validate=validate.Length(1, 1024), load_only=True)


class AuthField(fields.Field[dict[str, Any]]):
    """`{"type": "pat", "token"}` or `{"type": "service_principal", "tenant_id", ...}`."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValidationError("Not a valid object.")
        kind = value.get("type")
        if kind == "pat":
            return PatAuthSchema().load(value)  # type: ignore[no-any-return]
        if kind == "service_principal":
            return ServicePrincipalAuthSchema().load(value)  # type: ignore[no-any-return]
        raise ValidationError({"type": ["Must be one of: pat, service_principal."]})


AUTH_DOC = {
    "oneOf": [
        {
            "type": "object",
            "required": ["type", "token"],
            "additionalProperties": False,
            "properties": {
                "type": {"type": "string", "enum": ["pat"]},
                "token": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 1024,
                    "pattern": f"^{PAT_PATTERN}$",
                },
            },
        },
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["type", "tenant_id", "client_id", "client_secret"],
            "properties": {
                "type": {"type": "string", "enum": ["service_principal"]},
                "tenant_id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 128,
                    "pattern": f"^{TENANT_PATTERN}$",
                },
                "client_id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 128,
                    "pattern": f"^{CLIENT_ID_PATTERN}$",
                },
                "client_secret": {"type": "string", "minLength": 1, "maxLength": 1024},
            },
        },
    ]
}


class ConnectionCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    name = Text(required=True, validate=validate.Length(1, 100))
    organization_url = Text(required=True, validate=validate.Length(1, 2048))
    auth = AuthField(required=True, metadata=AUTH_DOC)


class ConnectionPatchSchema(Schema):
    class Meta:
        unknown = RAISE

    name = Text(validate=validate.Length(1, 100))
    organization_url = Text(validate=validate.Length(1, 2048))
    auth = AuthField(metadata=AUTH_DOC)


class ConnectionAuthOutSchema(Schema):
    type = fields.String(required=True)
    tenant_id = fields.String()
    client_id = fields.String()

    @post_dump
    def _only_set(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        """A PAT connection shows only its type (no null tenant_id/client_id)."""
        return {k: v for k, v in data.items() if v is not None}


class ProjectSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)


class ConnectionSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    organization_url = fields.String(required=True)
    auth = fields.Nested(ConnectionAuthOutSchema, required=True)
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)


class ConnectionCreatedSchema(ConnectionSchema):
    projects = fields.List(fields.Nested(ProjectSchema), required=True)


class ConnectionTestSchema(Schema):
    ok = fields.Boolean(required=True)
    message = fields.String(required=True)


class StateSchema(Schema):
    name = fields.String(required=True)
    category = fields.String(required=True)


class RequiredFieldSchema(Schema):
    reference_name = fields.String(required=True)
    name = fields.String(required=True)
    allowed_values = fields.List(fields.String(), required=True)
    default = fields.Raw(allow_none=True, required=True)


class WorkItemTypeSchema(Schema):
    name = fields.String(required=True)
    states = fields.List(fields.Nested(StateSchema), required=True)
    required_fields = fields.List(fields.String(), required=True)
    required_field_details = fields.List(fields.Nested(RequiredFieldSchema))


FIELD_VALUE_DOC = {
    "type": "object",
    "additionalProperties": {
        "oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]
    },
}


_FIELD_REF = re.compile(r"[A-Za-z][\w.]{0,127}")


class FieldValues(fields.Dict):
    """`{reference name: scalar}` for template.fields."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> dict[str, Any]:
        result: dict[str, Any] = super()._deserialize(value, attr, data, **kwargs)
        if len(result) > 100:
            raise ValidationError("At most 100 fields.")
        for key, item in result.items():
            if not isinstance(key, str) or not _FIELD_REF.fullmatch(key):
                raise ValidationError(f"{str(key)[:130]!r} is not a field reference name.")
            if not isinstance(item, str | int | float | bool) or (
                isinstance(item, str) and len(item) > 32_000
            ):
                raise ValidationError(f"Value of {key} must be a string, number or boolean.")
            if isinstance(item, str) and (problem := text_problem(item)) is not None:
                raise ValidationError(f"Value of {key}: {problem}")
        return result


class TemplateBaseSchema(Schema):
    class Meta:
        unknown = RAISE

    name = Text(validate=validate.Length(1, 100))
    connection_id = fields.Integer(strict=True, validate=ID_RANGE)
    project = Text(validate=[validate.Length(1, 256), _path_name], metadata=NOT_BLANK_DOC)
    work_item_type = Text(validate=[validate.Length(1, 128), _path_name], metadata=NOT_BLANK_DOC)
    auto_create = StrictBoolean()
    severity_threshold = SeverityField(metadata={"enum": list(reversed(SEVERITIES))})
    sources = fields.List(
        Text(validate=validate.Regexp(NAME_PATTERN)),
        allow_none=True,
        validate=validate.Length(max=100),
    )
    title_format = Text(validate=validate.Length(1, 1000))
    tags = tag_list(50)
    area_path = Text(allow_none=True, validate=validate.Length(1, 4000))
    iteration_path = Text(allow_none=True, validate=validate.Length(1, 4000))
    close_on_resolve = StrictBoolean()
    # The JSON key `fields` under another attribute name: `Schema.fields` is marshmallow's own.
    fields_ = FieldValues(data_key="fields", attribute="fields", metadata=FIELD_VALUE_DOC)


class TemplateCreateSchema(TemplateBaseSchema):
    class Meta:
        unknown = RAISE

    name = Text(required=True, validate=validate.Length(1, 100))
    connection_id = fields.Integer(required=True, strict=True, validate=ID_RANGE)
    project = Text(
        required=True, validate=[validate.Length(1, 256), _path_name], metadata=NOT_BLANK_DOC
    )
    work_item_type = Text(
        required=True, validate=[validate.Length(1, 128), _path_name], metadata=NOT_BLANK_DOC
    )
    auto_create = StrictBoolean(required=True)
    severity_threshold = SeverityField(required=True, metadata={"enum": list(reversed(SEVERITIES))})


class TemplateSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    connection_id = fields.Integer(required=True)
    project = fields.String(required=True)
    work_item_type = fields.String(required=True)
    auto_create = fields.Boolean(required=True)
    severity_threshold = fields.String(required=True)
    sources = fields.List(fields.String(), allow_none=True, required=True)
    title_format = fields.String(required=True)
    tags = fields.List(fields.String(), required=True)
    area_path = fields.String(allow_none=True, required=True)
    iteration_path = fields.String(allow_none=True, required=True)
    close_on_resolve = fields.Boolean(required=True)
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)
    fields_ = fields.Dict(data_key="fields", attribute="fields", required=True)


class HookCoverageSchema(Schema):
    registered = fields.Boolean(required=True)
    healthy = fields.Boolean(required=True)
    missing = fields.List(fields.String(), required=True)
    message = fields.String(allow_none=True, required=True)


class TemplateSavedSchema(TemplateSchema):
    """A created or changed template, with the state of its project's service hooks."""

    hooks = fields.Nested(HookCoverageSchema, required=True)


class BackfillSchema(Schema):
    class Meta:
        unknown = RAISE

    dry_run = StrictBoolean(required=True)


class BackfillResultSchema(Schema):
    matched = fields.Integer(required=True)
    queued = fields.Integer(required=True)


class ExportSchema(Schema):
    class Meta:
        unknown = RAISE

    template_id = fields.Integer(required=True, strict=True, validate=ID_RANGE)


class ExportAcceptedSchema(Schema):
    job = fields.Nested(JobSchema, required=True)


ConnectionPageSchema = page_schema(ConnectionSchema, "ConnectionPageSchema")
ProjectPageSchema = page_schema(ProjectSchema, "ProjectPageSchema")
WorkItemTypePageSchema = page_schema(WorkItemTypeSchema, "WorkItemTypePageSchema")
TemplatePageSchema = page_schema(TemplateSchema, "TemplatePageSchema")


# ---- service hooks ---------------------------------------------------------------------------


class HookCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    connection_id = fields.Integer(required=True, strict=True, validate=ID_RANGE)
    project = Text(
        required=True, validate=[validate.Length(1, 256), _path_name], metadata=NOT_BLANK_DOC
    )


class HookSchema(Schema):
    id = fields.Integer(required=True)
    connection_id = fields.Integer(required=True)
    project = fields.String(required=True)
    event_type = fields.String(required=True)
    subscription_id = fields.String(allow_none=True, required=True)
    status = fields.String(required=True)
    heal_count = fields.Integer()
    last_checked_at = fields.String(allow_none=True)
    last_healed_at = fields.String(allow_none=True)
    last_error = fields.String(allow_none=True)
    project_id = fields.String(allow_none=True)


class HookSetupSchema(Schema):
    subscriptions = fields.List(fields.Nested(HookSchema), required=True)


HookPageSchema = page_schema(HookSchema, "HookPageSchema")


def repair_text(value: str) -> str:
    """`value` with every lone surrogate and NUL replaced by U+FFFD (see `text_problem`)."""
    if value.isascii() and "\x00" not in value:
        return value
    return _UNSTORABLE_CHAR.sub("\ufffd", value)


def repair_json(value: Any) -> Any:
    """Repair every string (keys too) of decoded JSON in place with `repair_text`; returns it.

    Iterative, so nesting as deep as the JSON decoder allows cannot exhaust the stack.
    """
    if isinstance(value, str):
        return repair_text(value)
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in list(node):
                item = node[key]
                if isinstance(item, str):
                    node[key] = repair_text(item)
                elif isinstance(item, dict | list):
                    stack.append(item)
                if isinstance(key, str) and (fixed := repair_text(key)) != key:
                    node[fixed] = node.pop(key)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, str):
                    node[index] = repair_text(item)
                elif isinstance(item, dict | list):
                    stack.append(item)
    return value


class VendorJson(fields.Dict):
    """A JSON object written by Azure DevOps, kept whole, with unstorable text repaired.

    Azure DevOps (.NET, UTF-16 strings) escapes whatever a person typed, so a work item title
    cut mid-emoji arrives as a lone `\\ud83d`. The event must still take effect (SPEC 3.2:
    authenticated, well-formed deliveries get 2xx and are applied), so here lone surrogates and
    NUL become U+FFFD instead of refusing the delivery.
    """

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> dict[str, Any]:
        result: dict[str, Any] = repair_json(super()._deserialize(value, attr, data, **kwargs))
        return result


class HookDeliverySchema(Schema):
    """An Azure DevOps service-hook delivery; vendor JSON, so unknown keys are excluded.

    The envelope's ids must be storable text (`Text`: a delivery failing that is no Azure
    DevOps delivery and the receiver acknowledges it as invalid); the resource is `VendorJson`.
    """

    class Meta:
        unknown = EXCLUDE

    id = Text(required=True, validate=validate.Length(1, 200))
    eventType = Text(required=True, validate=validate.Length(1, 200))
    publisherId = Text(load_default="tfs")
    subscriptionId = Text(allow_none=True)
    resource = VendorJson(required=True)


class HookAckSchema(Schema):
    outcome = fields.String(required=True)
