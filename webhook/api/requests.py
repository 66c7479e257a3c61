"""Helpers every blueprint uses to read bodies and queries and to shape list answers."""

from __future__ import annotations

import json
import math
import secrets
import sys
from typing import Any

from flask import request
from marshmallow import Schema, ValidationError

from webhook.errors import ApiError, ValidationFailed
from webhook.schemas import flatten_errors


def request_id(incoming: str | None) -> str:
    """The caller's X-Request-Id (cut to 64 characters), or a new random one."""
    return (incoming or "")[:64] or secrets.token_hex(8)


def decode_json(data: bytes) -> Any:
    """Decode JSON bytes as RFC 8259 allows, or raise a 400 `invalid_json` naming the fault.

    The encoding is detected as `json.loads` does (UTF-8, with or without a BOM, or UTF-16/32),
    but decoded strictly: `json.loads(bytes)` would let UTF-8-encoded surrogates through
    ("surrogatepass"). Nesting deeper than the decoder's recursion limit is a 400 too.
    Surrogates written as `\\uXXXX` escapes are legal JSON and decode; the schemas refuse them
    (webhook.schemas.Text) with a 422 naming the field.
    """
    encoding = json.detect_encoding(data)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ApiError(
            f"request body is not valid {encoding.removesuffix('-sig').upper()}: "
            f"{exc.reason} at byte {exc.start}",
            code="invalid_json",
        ) from None
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ApiError("request body is nested too deeply", code="invalid_json") from None
    except _NotJson as exc:
        raise ApiError(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    except ValueError as exc:
        message = str(exc)
        if "integer string conversion" in message:  # Python's own limit, with its own advice
            message = f"a number has more than {sys.get_int_max_str_digits()} digits"
        raise ApiError(f"request body is not valid JSON: {message}", code="invalid_json") from None


class _NotJson(ValueError):
    """A token Python's decoder accepts but RFC 8259 does not."""


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJson(f"{text[:40]} is out of range for a number")
    return value


def parse_json_body(raw: bytes | None = None) -> Any:
    """Decode the request body as JSON (`decode_json`) or raise a 400 `invalid_json`."""
    data = request.get_data(cache=True) if raw is None else raw
    if not data:
        raise ApiError("request body is empty; send a JSON object", code="invalid_json")
    return decode_json(data)


def load_body(schema: Schema, raw: bytes | None = None) -> dict[str, Any]:
    """Validate the JSON body against a schema; 422 with per-field details otherwise."""
    payload = parse_json_body(raw)
    if not isinstance(payload, dict):
        raise ValidationFailed(
            "request body must be a JSON object", details={"_schema": ["Not an object."]}
        )
    try:
        return schema.load(payload)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise ValidationFailed(
            "request body is invalid", details=flatten_errors(exc.messages)
        ) from None


def load_query(schema: Schema) -> dict[str, Any]:
    """Validate query parameters; 422 with per-field details otherwise."""
    try:
        return schema.load(request.args.to_dict())  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise ValidationFailed(
            "query parameters are invalid", details=flatten_errors(exc.messages)
        ) from None


def page_body(items: list[dict[str, Any]], total: int, page: int, per_page: int) -> dict[str, Any]:
    """The SPEC list envelope."""
    return {"items": items, "total": total, "page": page, "per_page": per_page}
