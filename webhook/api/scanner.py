"""POST /webhooks/risks/<source>: Standard Webhooks verification, validation, durable store."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from webhook import clock, metrics
from webhook.api.requests import load_body
from webhook.domain.signatures import SignatureError, parse_headers, verify
from webhook.errors import NotFound, Unauthorized
from webhook.openapi import doc
from webhook.schemas import IngestResponseSchema, RiskEnvelopeSchema, risks_from_payload
from webhook.services import get_services

bp = Blueprint("scanner", __name__)
log = logging.getLogger(__name__)
_envelope = RiskEnvelopeSchema()


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
    """Verify the signature on the raw bytes, validate, then store risks and their work."""
    services = get_services()
    found = services.store.find_source(source)
    if found is None:
        metrics.WEBHOOK_REQUESTS.labels("404").inc()
        raise NotFound(f"unknown source {source!r}")
    raw = request.get_data(cache=True)
    try:
        headers = parse_headers(
            request.headers.get("webhook-id"),
            request.headers.get("webhook-timestamp"),
            request.headers.get("webhook-signature"),
        )
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
    except Exception:
        metrics.WEBHOOK_REQUESTS.labels("4xx").inc()
        raise
    risks = risks_from_payload(payload, found.name)
    outcome = services.store.record_risks(found, headers.webhook_id, risks)
    for action in outcome.actions:
        metrics.RISKS_RECEIVED.labels(action).inc()
    metrics.WEBHOOK_REQUESTS.labels(str(outcome.status)).inc()
    response = jsonify(outcome.body)
    if outcome.replayed:
        response.headers["X-Replayed"] = "true"
    return response, outcome.status
