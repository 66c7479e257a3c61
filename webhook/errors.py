"""One exception tree for the HTTP layer; one handler renders it as SPEC 3 JSON errors."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from webhook.storage.errors import StorageBusy, storage_unavailable


class ApiError(Exception):
    """An error with an HTTP status, a snake_case code and a human message."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code:
            self.code = code
        if status:
            self.status = status
        self.headers = headers or {}


class ValidationFailed(ApiError):
    """The request body or query does not match its schema."""

    status = 422
    code = "validation_failed"


class Unauthorized(ApiError):
    """Credentials are missing or wrong."""

    status = 401
    code = "unauthorized"


class NotFound(ApiError):
    """The resource does not exist."""

    status = 404
    code = "not_found"


class Conflict(ApiError):
    """The request conflicts with the current state."""

    status = 409
    code = "conflict"


class Unavailable(ApiError):
    """The service cannot take the request now; try again later."""

    status = 503
    code = "unavailable"


class BadGateway(ApiError):
    """Azure DevOps could not be reached or answered unexpectedly."""

    status = 502
    code = "ado_unreachable"


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the SPEC 3 error envelope."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def json_text(value: Any) -> str:
    """JSON text exactly as Flask's jsonify sends it: compact, sorted keys, ASCII, newline."""
    return json.dumps(value, ensure_ascii=True, sort_keys=True, separators=(",", ":")) + "\n"


def api_error_json(exc: ApiError) -> str:
    """The SPEC error envelope of an ApiError, as JSON text."""
    return json_text(error_body(exc.code, exc.message, exc.details))


def unavailable_error(found: StorageBusy) -> Unavailable:
    """The 503 for a database that cannot take requests now (busy past the wait budget, disk
    full, its file removed or replaced, I/O errors): nothing was stored, so the client is asked
    to retry (Retry-After, in seconds). SPEC 3.2: Azure DevOps' "try later" is 503, never 500.
    """
    return Unavailable(
        f"the database cannot take requests right now ({found.reason}); nothing was stored, "
        "retry later",
        details={"reason": found.reason},
        headers={"Retry-After": str(found.retry_after)},
    )


def database_unavailable(exc: BaseException) -> Unavailable | None:
    """`unavailable_error` for an exception that means the database is unavailable, else None."""
    found = storage_unavailable(exc)
    return None if found is None else unavailable_error(found)


INTERNAL_ERROR_JSON = json_text(error_body("internal_error", "internal server error"))


def register_error_handlers(app: Flask) -> None:
    """Render ApiError, Flask's own HTTP errors and unexpected exceptions as JSON."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> ResponseReturnValue:
        return Response(api_error_json(exc), exc.status, exc.headers, mimetype="application/json")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        details: dict[str, Any] = {}
        headers: dict[str, str] = {}
        if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            details["allowed_methods"] = sorted(exc.valid_methods)  # type: ignore[attr-defined]
            headers["Allow"] = ", ".join(sorted(exc.valid_methods))  # type: ignore[attr-defined]
        message = exc.description or exc.name
        if status == 413:
            message = "request body is larger than the configured limit"
        resp = jsonify(error_body(code, message, details))
        resp.headers.update(headers)
        return resp, status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> ResponseReturnValue:
        busy = database_unavailable(exc)
        if busy is not None:
            app.logger.warning("database unavailable: %s", exc)
            return _api_error(busy)
        app.logger.exception("unhandled error")
        return Response(INTERNAL_ERROR_JSON, 500, mimetype="application/json")
