"""Wire-format helpers shared by every sandbox route: dates, identities, error bodies.

Azure DevOps errors are WrappedException JSON bodies (AZURE_DEVOPS.md §3.4); dates in REST bodies
carry milliseconds with trailing zeros dropped ("2025-03-06T15:20:00.01Z"), event envelopes carry
seven fractional digits ("2025-03-06T14:02:17.8812345Z").
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Response

REVISED_DATE_OPEN = "9999-01-01T00:00:00Z"
"""`System.RevisedDate` of the latest revision: open-ended (AZURE_DEVOPS.md §1.3)."""

_NAMESPACE = uuid.UUID("6f1c2b9e-4d3a-4c5b-9e8f-a7b6c5d4e3f2")


class SandboxError(Exception):
    """An Azure DevOps error answer: HTTP status plus WrappedException fields."""

    def __init__(
        self,
        status: int,
        message: str,
        type_key: str,
        *,
        type_name: str | None = None,
        error_code: int = 0,
        event_id: int = 3000,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type_key = type_key
        self.type_name = type_name or f"Microsoft.VisualStudio.Services.WebApi.{type_key}"
        self.error_code = error_code
        self.event_id = event_id
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """Return the WrappedException JSON body."""
        return {
            "$id": "1",
            "innerException": None,
            "message": self.message,
            "typeName": self.type_name,
            "typeKey": self.type_key,
            "errorCode": self.error_code,
            "eventId": self.event_id,
        }

    def response(self) -> Response:
        """Render as an HTTP response."""
        return json_response(self.body(), self.status, self.headers)


WIT_SERVER = "Microsoft.TeamFoundation.WorkItemTracking.Server"


def wit_error(status: int, message: str, type_key: str, *, error_code: int = 0) -> SandboxError:
    """Build an error raised by the work item tracking server."""
    return SandboxError(
        status,
        message,
        type_key,
        type_name=f"{WIT_SERVER}.{type_key}, {WIT_SERVER}",
        error_code=error_code,
        event_id=3200,
    )


def rule_error(field_name: str, flags: str) -> SandboxError:
    """Build the TF401320 rule error for a field's friendly name."""
    return wit_error(
        400,
        f"TF401320: Rule Error for field {field_name}. Error code: {flags}.",
        "RuleValidationException",
        error_code=600171,
    )


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialise `body` as Azure DevOps does: key order kept, charset in the content type."""
    resp = Response(
        json.dumps(body, ensure_ascii=False),
        status=status,
        content_type="application/json; charset=utf-8",
    )
    resp.headers["ActivityId"] = str(uuid.uuid4())
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def utcnow() -> datetime:
    """Return the current time, timezone-aware UTC."""
    return datetime.now(UTC)


def fmt_date(moment: datetime) -> str:
    """Format like a REST body date: milliseconds, trailing zeros dropped, `Z`."""
    base = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    millis = f"{moment.microsecond // 1000:03d}".rstrip("0")
    return f"{base}.{millis}Z" if millis else f"{base}Z"


def fmt_event_date(moment: datetime) -> str:
    """Format like an event envelope `createdDate`: seven fractional digits, `Z`."""
    base = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{moment.microsecond:06d}0Z"


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_date(text: str) -> datetime:
    """Parse an ISO-8601 date or date-time; naive values are taken as UTC."""
    value = text.strip()
    if _DATE_ONLY.match(value):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    value = value.replace("Z", "+00:00").replace(" ", "T")
    # Python accepts at most 6 fractional digits; ADO sends up to 7.
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def has_time_component(text: str) -> bool:
    """Tell whether a date literal carries a time of day."""
    return not _DATE_ONLY.match(text.strip())


_IDENTITY_RE = re.compile(r"^\s*(?P<name>.*?)\s*<(?P<mail>[^<>]+)>\s*$")


@dataclass(frozen=True)
class Identity:
    """A person or service principal as Azure DevOps shows it."""

    display_name: str
    unique_name: str

    @property
    def id(self) -> str:
        """Return a stable GUID derived from the unique name."""
        return str(uuid.uuid5(_NAMESPACE, self.unique_name.lower()))

    @property
    def descriptor(self) -> str:
        """Return an `aad.`-style subject descriptor."""
        encoded = base64.b64encode(self.id.encode()).decode().rstrip("=")
        return f"aad.{encoded}"

    def as_string(self) -> str:
        """Return the `"Name <unique>"` form used in resourceVersion 1.0 payloads."""
        return f"{self.display_name} <{self.unique_name}>"

    def as_ref(self, org_url: str) -> dict[str, Any]:
        """Return an IdentityRef object as REST responses carry it."""
        avatar = f"{org_url}/_apis/GraphProfile/MemberAvatars/{self.descriptor}"
        return {
            "displayName": self.display_name,
            "url": f"{org_url}/_apis/Identities/{self.id}",
            "_links": {"avatar": {"href": avatar}},
            "id": self.id,
            "uniqueName": self.unique_name,
            "imageUrl": avatar,
            "descriptor": self.descriptor,
        }

    def as_revised_by(self, org_url: str) -> dict[str, Any]:
        """Return the `revisedBy` object of a workitem.updated resource."""
        ref = self.as_ref(org_url)
        return {
            "id": ref["id"],
            "name": self.as_string(),
            "displayName": ref["displayName"],
            "url": ref["url"],
            "_links": ref["_links"],
            "uniqueName": ref["uniqueName"],
            "imageUrl": ref["imageUrl"],
            "descriptor": ref["descriptor"],
        }

    @classmethod
    def parse(cls, text: str) -> Identity:
        """Parse `"Name <mail>"`, a bare mail address or a bare display name."""
        match = _IDENTITY_RE.match(text)
        if match:
            mail = match.group("mail").strip()
            return cls(match.group("name") or mail, mail)
        value = text.strip()
        if "@" in value:
            return cls(value.split("@", 1)[0], value)
        slug = re.sub(r"[^a-z0-9]+", ".", value.lower()).strip(".") or "someone"
        return cls(value, f"{slug}@contoso.com")


def link(href: str) -> dict[str, str]:
    """Return a `_links` entry."""
    return {"href": href}
