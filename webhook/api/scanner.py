"""POST /webhooks/risks/<source>: Standard Webhooks verification, validation, durable store.

Every scanner finding arrives here, so the route has two front doors that answer alike,
byte for byte, both calling `ingest`:

* `FastScannerRoute`, a WSGI middleware in front of Flask, answers the common shape: a POST
  with a Content-Length within the body limit. For a single risk, Flask's request machinery
  (context, routing, proxies, response object) cost about as much CPU as all of the work
  itself; `python -m bench.ingest` measures the route against a bare Flask app.
* The Flask view gets everything else: chunked bodies, bodies over the limit (413), other
  methods (405). It also gives the route its place in the URL map and in /openapi.json.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import EnvironHeaders

from webhook import clock, metrics
from webhook.api.requests import load_body, request_id
from webhook.domain.signatures import SignatureError, parse_headers, verify
from webhook.errors import (
    INTERNAL_ERROR_JSON,
    ApiError,
    NotFound,
    Unauthorized,
    api_error_json,
    database_unavailable,
    unavailable_error,
)
from webhook.logs import bind, unbind
from webhook.openapi import doc
from webhook.schemas import IngestResponseSchema, RiskEnvelopeSchema, risks_from_payload
from webhook.services import Services, get_services
from webhook.storage.errors import StorageBusy

bp = Blueprint("scanner", __name__)
log = logging.getLogger(__name__)
_envelope = RiskEnvelopeSchema()
PATH_PREFIX = "/webhooks/risks/"


@dataclass(frozen=True)
class Reply:
    """An answer to a scanner delivery: status, JSON body, extra headers."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def ingest(
    services: Services,
    source: str,
    header: Callable[[str], str | None],
    read_body: Callable[[], bytes],
) -> Reply:
    """Verify the signature on the raw bytes, validate, then store risks and their work.

    Raises ApiError (rendered as the SPEC error envelope) for every refusal. The body is read
    only for a known source.
    """
    found = services.store.sources.find_source(source)
    if found is None:
        metrics.WEBHOOK_REQUESTS.labels("404").inc()
        raise NotFound(f"unknown source {source!r}")
    raw = read_body()
    try:
        headers = parse_headers(
            header("webhook-id"), header("webhook-timestamp"), header("webhook-signature")
        )
        try:
            verify(headers, raw, found.secrets, now=clock.now())
        except SignatureError as exc:
            # The secret may have been rotated since this process last read the source.
            stale = exc.reason == "mismatch"
            renewed = services.store.sources.find_source(source, fresh=True) if stale else None
            if renewed is None or renewed.secrets == found.secrets:
                raise
            found = renewed
            verify(headers, raw, found.secrets, now=clock.now())
    except SignatureError as exc:
        metrics.SIGNATURE_FAILURES.labels(exc.reason).inc()
        metrics.WEBHOOK_REQUESTS.labels("401").inc()
        log.warning(
            "scanner signature rejected", extra={"fields": {"source": source, "reason": exc.reason}}
        )
        raise Unauthorized(
            exc.message, code="invalid_signature", details={"reason": exc.reason}
        ) from None
    try:
        payload = load_body(_envelope, raw)
    except ApiError:
        metrics.WEBHOOK_REQUESTS.labels("4xx").inc()
        raise
    risks = risks_from_payload(payload, found.name)
    try:
        outcome = services.store.risks.record_risks(found, headers.webhook_id, risks)
    except StorageBusy as exc:
        # Nothing was stored (busy, disk full, file gone); Standard Webhooks senders retry.
        metrics.WEBHOOK_REQUESTS.labels("503").inc()
        raise unavailable_error(exc) from None
    for action in outcome.actions:
        metrics.RISKS_RECEIVED.labels(action).inc()
    metrics.WEBHOOK_REQUESTS.labels(str(outcome.status)).inc()
    return Reply(
        outcome.status,
        (outcome.response + "\n").encode(),
        (("X-Replayed", "true"),) if outcome.replayed else (),
    )


@bp.post("/webhooks/risks/<source>")
@doc(
    summary="Receive risks from a scanner (Standard Webhooks signed)",
    tag="scanner",
    auth=None,
    body=RiskEnvelopeSchema,
    responses={202: IngestResponseSchema},
    extra_headers=("webhook-id", "webhook-timestamp", "webhook-signature"),
)
def receive_risks(source: str) -> ResponseReturnValue:
    """The general front door (see the module docstring); same answers as FastScannerRoute."""
    reply = ingest(get_services(), source, request.headers.get, request.get_data)
    return Response(reply.body, reply.status, reply.headers, mimetype="application/json")


StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


# Everything the Flask app does around a request to this route, and how FastScannerRoute does
# the same. tests/test_scanner_webhook.py fails when the app (or the scanner blueprint) gains a
# hook missing here: mirror it in the fast door, then list it.
MIRRORED_FLASK_HOOKS: dict[str, str] = {
    "before_request:csrf_protect": "nothing: only the UI's views check CSRF tokens",
    "before_request:_start": "request_id() from X-Request-Id, bound to log lines",
    "after_request:_finish": "X-Request-Id echoed; request seconds skip this route by design",
    "teardown_request:_unbind": "unbind() in `finally`",
    "errorhandler:ApiError": "api_error_json(), the same bytes",
    "errorhandler:HTTPException": "none arise: the door answers only a routed POST",
    "errorhandler:Exception": "database_unavailable() → 503 with Retry-After, else a logged 500",
    "errorhandler:OrganizationNotAllowed": "none arise: the door never calls Azure DevOps",
}


class FastScannerRoute:
    """WSGI middleware answering POST /webhooks/risks/<source> with a Content-Length in range.

    It does what the Flask app does around the view: the request id (X-Request-Id in, or a
    new one; bound to log lines; echoed), the SPEC error envelope, a logged 500 for a bug.
    Anything else goes to `app` unchanged.
    """

    def __init__(self, app: WsgiApp, services: Services, max_body_bytes: int) -> None:
        self.app = app
        self.services = services
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "POST" or not path.startswith(PATH_PREFIX):
            return self.app(environ, start_response)
        source = path[len(PATH_PREFIX) :]
        length = environ.get("CONTENT_LENGTH", "")
        if (
            not source
            or "/" in source
            or "HTTP_TRANSFER_ENCODING" in environ
            or not (length.isascii() and length.isdigit())
            or int(length) > self.max_body_bytes
        ):
            return self.app(environ, start_response)
        # As werkzeug routes it: WSGI carries the path as latin-1 of the raw UTF-8 bytes.
        source = source.encode("latin-1").decode("utf-8", "replace")
        return self._answer(environ, start_response, source, int(length))

    def _answer(
        self, environ: dict[str, Any], start_response: StartResponse, source: str, length: int
    ) -> Iterable[bytes]:
        rid = request_id(environ.get("HTTP_X_REQUEST_ID"))
        token = bind(request_id=rid)
        try:
            reply = ingest(
                self.services,
                source,
                EnvironHeaders(environ).get,
                lambda: _read_exactly(environ["wsgi.input"], length),
            )
        except ApiError as exc:
            reply = Reply(exc.status, api_error_json(exc).encode(), tuple(exc.headers.items()))
        except Exception as exc:
            busy = database_unavailable(exc)  # as the Flask app's handler does
            if busy is None:
                log.exception("unhandled error")
                reply = Reply(500, INTERNAL_ERROR_JSON.encode())
            else:
                log.warning("database unavailable: %s", exc)
                reply = Reply(503, api_error_json(busy).encode(), tuple(busy.headers.items()))
        finally:
            unbind(token)
        status = HTTPStatus(reply.status)
        start_response(
            f"{status.value} {status.phrase.upper()}",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(reply.body))),
                *reply.headers,
                ("X-Request-Id", rid),
            ],
        )
        return [reply.body]


def _read_exactly(stream: Any, length: int) -> bytes:
    """The body, or a 400 when the client sends fewer bytes than its Content-Length."""
    chunks: list[bytes] = []
    remaining = length
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            raise ApiError(
                "the client sent fewer bytes than its Content-Length", code="bad_request"
            )
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
