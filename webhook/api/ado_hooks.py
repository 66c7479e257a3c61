"""POST /hooks/ado: Azure DevOps service-hook deliveries, answered in milliseconds.

Azure DevOps puts a subscription on probation for any reply but 2xx/408/502/503/504 and disables
it for 410, so: authenticated deliveries always get 2xx (even ignored or duplicate ones), and
"try later" is 503. The work an event implies is recorded as a job for the worker.
"""

from __future__ import annotations

import base64
import binascii
import logging

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from marshmallow import ValidationError

from webhook import metrics
from webhook.api.requests import parse_json_body
from webhook.crypto import hash_password, verify_password
from webhook.domain.hook_events import delivery_mismatch, event_label, parse_change
from webhook.errors import ApiError, Unauthorized, Unavailable
from webhook.logs import bind, unbind
from webhook.openapi import doc
from webhook.schemas import HookAckSchema, HookDeliverySchema
from webhook.services import get_services
from webhook.storage.errors import Missing, storage_operational

bp = Blueprint("ado_hooks", __name__)
log = logging.getLogger(__name__)
_delivery = HookDeliverySchema()
_DUMMY_HASH = hash_password("not-a-real-password")


def _basic_credentials() -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (user, password) if sep else None


def _ack(outcome: str, event_type: str, status: int = 200) -> ResponseReturnValue:
    # "unknown": the delivery could not be read at all (see the unauthorized count too).
    label = event_type if event_type == "unknown" else event_label(event_type)
    metrics.HOOK_DELIVERIES.labels(label, outcome).inc()
    return jsonify({"outcome": outcome}), status


@bp.post("/hooks/ado")
@doc(
    summary="Azure DevOps service-hook deliveries",
    tag="hooks",
    auth="basic",
    body=HookDeliverySchema,
    responses={200: HookAckSchema, 202: HookAckSchema},
)
def receive_hook() -> ResponseReturnValue:
    """Authenticate, cross-check, dedupe on the event id, record the change and its job; reply
    at once. The change recorded carries the type and project the event reports, so the worker
    classifies the state by the item's type at that revision (SPEC 4)."""
    store = get_services().store
    creds = _basic_credentials()
    found = store.hooks.hook_credentials(creds[0]) if creds else None
    # Compare even when the user is unknown so timing does not reveal valid user names.
    ok = verify_password(creds[1] if creds else "", found.password_hash if found else _DUMMY_HASH)
    if not (found and ok):
        metrics.HOOK_DELIVERIES.labels("unknown", "unauthorized").inc()
        raise Unauthorized(
            "missing or wrong hook credentials",
            headers={"WWW-Authenticate": 'Basic realm="ado-webhook hooks"'},
        )
    hook_id, connection_id = found.hook_id, found.connection_id
    try:
        payload = parse_json_body()
        data = _delivery.load(payload if isinstance(payload, dict) else {})
    except (ApiError, ValidationError):
        # Authenticated, so it is Azure DevOps: never punish our own subscription with a 4xx.
        log.warning("hook delivery not understood; ignored", extra={"fields": {"hook": hook_id}})
        return _ack("invalid", "unknown")
    event_type = data["eventType"]
    token = bind(delivery_id=data["id"])
    try:
        change = parse_change(event_type, data["resource"])
        mismatch = delivery_mismatch(
            payload,
            change,
            subscription_id=found.subscription_id,
            project_id=found.project_id,
            project=found.project,
        )
        if mismatch is not None:
            # SPEC 3.2: acknowledged (never a 4xx for our own subscription) and ignored.
            log.warning(
                "hook delivery ignored: %s",
                mismatch,
                extra={"fields": {"hook": hook_id, "event_type": event_label(event_type)}},
            )
            return _ack("mismatch", event_type)
        if change is None:
            return _ack("ignored", event_type)
        outcome = store.hooks.record_hook_event(
            hook_id=hook_id,
            connection_id=connection_id,
            event_id=data["id"],
            event_type=event_type,
            work_item_id=change.work_item_id,
            rev=change.rev,
            change={
                "work_item_id": change.work_item_id,
                "state": change.state,
                "by": change.by,
                "at": change.at,
                "deleted": change.deleted,
                "work_item_type": change.work_item_type,
                "project": change.project,
                "reason": change.reason,
            },
        )
    except Missing:
        # The hook was deleted since its credentials were checked: they no longer exist.
        metrics.HOOK_DELIVERIES.labels(event_label(event_type), "unauthorized").inc()
        raise Unauthorized(
            "missing or wrong hook credentials",
            headers={"WWW-Authenticate": 'Basic realm="ado-webhook hooks"'},
        ) from None
    except Exception as exc:
        if storage_operational(exc):  # busy, full, gone, or another engine failure
            metrics.HOOK_DELIVERIES.labels(event_label(event_type), "unavailable").inc()
            raise Unavailable(
                "cannot record the event right now; retry", headers={"Retry-After": "5"}
            ) from exc
        # A bug must not put the subscription on probation: 503 makes Azure DevOps retry.
        log.exception("hook delivery failed")
        metrics.HOOK_DELIVERIES.labels(event_label(event_type), "unavailable").inc()
        raise Unavailable("cannot record the event right now; retry") from exc
    finally:
        unbind(token)
    return _ack(outcome, event_type, 202 if outcome == "recorded" else 200)
