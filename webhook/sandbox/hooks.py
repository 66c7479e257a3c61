"""Service hook subscription routes, organization level (AZURE_DEVOPS.md §2).

Deviation from Azure DevOps, on purpose: real ADO refuses consumer URLs on loopback and
special-purpose addresses and insists on HTTPS with basic auth. The sandbox accepts
`http://127.0.0.1:...` receivers, because the service under test runs on this machine.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlparse

from flask import Blueprint, Response, request

from .auth import api_version, caller, get_state, require_auth
from .state import COLLECTION_ID, SandboxState, Subscription
from .wire import Identity, SandboxError, fmt_date, json_response, utcnow

bp = Blueprint("hooks", __name__)
bp.before_request(require_auth)

EVENT_TYPES = (
    "workitem.created",
    "workitem.updated",
    "workitem.deleted",
    "workitem.restored",
    "workitem.commented",
)
STATUSES = (
    "enabled",
    "onProbation",
    "disabledByUser",
    "disabledBySystem",
    "disabledByInactiveIdentity",
)
MASK = "********"
CONFIDENTIAL_INPUTS = ("basicAuthPassword",)
BASE = "/contoso/_apis/hooks"


def invalid(message: str) -> SandboxError:
    """Build a 400 for an invalid subscription."""
    return SandboxError(
        400,
        message,
        "InvalidSubscriptionException",
        type_name="Microsoft.VisualStudio.Services.ServiceHooks.WebApi."
        "InvalidSubscriptionException, Microsoft.VisualStudio.Services.ServiceHooks.WebApi",
    )


def _inputs(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"{name} must be an object of string values.")
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            out[str(key)] = "true" if item else "false"
        elif item is None:
            out[str(key)] = ""
        else:
            out[str(key)] = str(item)
    return out


def _validated(state: SandboxState, body: Any) -> dict[str, Any]:
    """Check a Subscription body; return its normalized parts."""
    if not isinstance(body, dict):
        raise invalid("The request body must be a Subscription object.")
    if body.get("publisherId") != "tfs":
        raise invalid(
            f"The publisher '{body.get('publisherId')}' does not exist; this sandbox "
            "publishes 'tfs' events only."
        )
    event_type = body.get("eventType")
    if event_type not in EVENT_TYPES:
        raise invalid(f"The event type '{event_type}' is not supported by publisher 'tfs'.")
    if body.get("consumerId") != "webHooks":
        raise invalid(
            f"The consumer '{body.get('consumerId')}' does not exist; this sandbox "
            "delivers to 'webHooks' only."
        )
    if body.get("consumerActionId") != "httpRequest":
        raise invalid(
            f"The consumer action '{body.get('consumerActionId')}' does not exist "
            "for consumer 'webHooks'."
        )
    publisher_inputs = _inputs(body.get("publisherInputs"), "publisherInputs")
    consumer_inputs = _inputs(body.get("consumerInputs"), "consumerInputs")
    project_id = publisher_inputs.get("projectId", "")
    if not project_id:
        raise invalid("The publisher input 'projectId' is required.")
    project = next((p for p in state.projects.values() if p.id == project_id.lower()), None)
    if project is None:
        raise invalid(
            f"The publisher input 'projectId' value '{project_id}' is not a valid project id."
        )
    publisher_inputs["projectId"] = project.id
    url = consumer_inputs.get("url", "")
    parsed = urlparse(url)
    if not url or parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise invalid("The consumer input 'url' is required and must be an absolute http(s) URL.")
    # Azure DevOps refuses loopback targets here; the sandbox allows them (see module doc).
    for key in ("resourceDetailsToSend",):
        if consumer_inputs.get(key, "all").lower() not in ("", "all", "minimal", "none"):
            raise invalid(f"The consumer input '{key}' must be all, minimal or none.")
    for key in ("messagesToSend", "detailedMessagesToSend"):
        if consumer_inputs.get(key, "all").lower() not in (
            "",
            "all",
            "text",
            "html",
            "markdown",
            "none",
        ):
            raise invalid(f"The consumer input '{key}' must be all, text, html, markdown or none.")
    status = body.get("status") or "enabled"
    if status not in STATUSES:
        raise invalid(f"The status '{status}' is not valid.")
    resource_version = body.get("resourceVersion")
    return {
        "event_type": event_type,
        "publisher_inputs": publisher_inputs,
        "consumer_inputs": consumer_inputs,
        "status": status,
        "resource_version": None if resource_version in (None, "") else str(resource_version),
    }


def render_subscription(state: SandboxState, sub: Subscription) -> dict[str, Any]:
    """Render a Subscription; confidential inputs are masked as Azure DevOps masks them."""
    consumer_inputs = {
        k: (MASK if k in CONFIDENTIAL_INPUTS and v else v) for k, v in sub.consumer_inputs.items()
    }
    wanted_type = sub.publisher_inputs.get("workItemType") or ""
    host = urlparse(sub.consumer_inputs.get("url", "")).hostname or ""
    body: dict[str, Any] = {
        "id": sub.id,
        "url": f"{state.org_url}/_apis/hooks/subscriptions/{sub.id}",
        "status": sub.status,
        "publisherId": sub.publisher_id,
        "eventType": sub.event_type,
        "subscriber": {"id": sub.created_by.id},
        "resourceVersion": sub.resource_version,
        "eventDescription": f"Work item type {wanted_type}" if wanted_type else "Any work item",
        "consumerId": sub.consumer_id,
        "consumerActionId": sub.consumer_action_id,
        "actionDescription": f"To host {host}",
        "probationRetries": sub.probation_retries,
        "createdBy": {"id": sub.created_by.id},
        "createdDate": sub.created_date,
        "modifiedBy": {"id": sub.modified_by.id},
        "modifiedDate": sub.modified_date,
        "publisherInputs": {
            **sub.publisher_inputs,
            "hostId": COLLECTION_ID,
            "tfsSubscriptionId": sub.tfs_subscription_id,
        },
        "consumerInputs": consumer_inputs,
    }
    if sub.last_probation_retry_date:
        body["lastProbationRetryDate"] = sub.last_probation_retry_date
    return body


def create_subscription(state: SandboxState, body: Any, by: Identity) -> Subscription:
    """Validate and store a new subscription."""
    parts = _validated(state, body)
    now = fmt_date(utcnow())
    parts["publisher_inputs"].pop("hostId", None)
    parts["publisher_inputs"].pop("tfsSubscriptionId", None)
    sub = Subscription(
        id=str(uuid.uuid4()),
        publisher_id="tfs",
        event_type=parts["event_type"],
        resource_version=parts["resource_version"],
        consumer_id="webHooks",
        consumer_action_id="httpRequest",
        publisher_inputs=parts["publisher_inputs"],
        consumer_inputs=parts["consumer_inputs"],
        status=parts["status"],
        created_by=by,
        created_date=now,
        modified_by=by,
        modified_date=now,
    )
    state.subscriptions[sub.id] = sub
    return sub


def replace_subscription(
    state: SandboxState, sub: Subscription, body: Any, by: Identity
) -> Subscription:
    """Apply a PUT: full replacement; a masked password keeps the stored one."""
    parts = _validated(state, body)
    inputs = parts["consumer_inputs"]
    for key in CONFIDENTIAL_INPUTS:
        if inputs.get(key) == MASK:
            if key in sub.consumer_inputs:
                inputs[key] = sub.consumer_inputs[key]
            else:
                inputs.pop(key)
    parts["publisher_inputs"].pop("hostId", None)
    parts["publisher_inputs"].pop("tfsSubscriptionId", None)
    sub.event_type = parts["event_type"]
    sub.resource_version = parts["resource_version"]
    sub.publisher_inputs = parts["publisher_inputs"]
    sub.consumer_inputs = inputs
    if parts["status"] != sub.status:
        sub.status = parts["status"]
        if sub.status == "enabled":
            sub.probation_retries = 0
    sub.modified_by = by
    sub.modified_date = fmt_date(utcnow())
    return sub


@bp.get(f"{BASE}/subscriptions")
@api_version()
def list_subscriptions() -> Response:
    """List subscriptions, filtered by publisherId/eventType/consumerId/consumerActionId."""
    state = get_state()
    filters = {
        "publisherId": "publisher_id",
        "eventType": "event_type",
        "consumerId": "consumer_id",
        "consumerActionId": "consumer_action_id",
    }
    with state.lock:
        subs = [
            s
            for s in state.subscriptions.values()
            if all(
                getattr(s, attr) == request.args[arg]
                for arg, attr in filters.items()
                if request.args.get(arg)
            )
        ]
        value = [render_subscription(state, s) for s in subs]
    return json_response({"count": len(value), "value": value})


@bp.post(f"{BASE}/subscriptions")
@api_version()
def post_subscription() -> Response:
    """Create a subscription."""
    state = get_state()
    body = request.get_json(silent=True)
    with state.lock:
        sub = create_subscription(state, body, caller())
        return json_response(render_subscription(state, sub))


@bp.get(f"{BASE}/subscriptions/<sub_id>")
@api_version()
def get_subscription(sub_id: str) -> Response:
    """Return one subscription."""
    state = get_state()
    with state.lock:
        return json_response(render_subscription(state, state.subscription(sub_id)))


@bp.put(f"{BASE}/subscriptions/<sub_id>")
@api_version()
def put_subscription(sub_id: str) -> Response:
    """Replace a subscription (status and inputs may change)."""
    state = get_state()
    body = request.get_json(silent=True)
    with state.lock:
        sub = replace_subscription(state, state.subscription(sub_id), body, caller())
        return json_response(render_subscription(state, sub))


@bp.delete(f"{BASE}/subscriptions/<sub_id>")
@api_version()
def delete_subscription(sub_id: str) -> Response:
    """Delete a subscription (204)."""
    state = get_state()
    with state.lock:
        state.subscriptions.pop(state.subscription(sub_id).id, None)
    return Response(status=204)


def _input_filter_ok(inputs: dict[str, str], filters: Any) -> bool:
    """Evaluate `InputFilter[]`: any filter whose conditions all hold."""
    if not filters:
        return True
    for input_filter in filters:
        conditions = (input_filter or {}).get("conditions") or []
        ok = True
        for cond in conditions:
            actual = inputs.get(cond.get("inputId", ""), "")
            wanted = str(cond.get("inputValue", ""))
            same = (
                actual == wanted
                if cond.get("caseSensitive")
                else (actual.lower() == wanted.lower())
            )
            if (cond.get("operator", "equals") == "notEquals") == same:
                ok = False
                break
        if ok:
            return True
    return False


@bp.post(f"{BASE}/subscriptionsquery")
@api_version()
def query_subscriptions() -> Response:
    """Query subscriptions by ids and input filters (SubscriptionsQuery)."""
    state = get_state()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise invalid("The request body must be a SubscriptionsQuery object.")
    with state.lock:
        results = [
            render_subscription(state, s)
            for s in state.subscriptions.values()
            if all(
                body.get(key) in (None, "", getattr(s, attr))
                for key, attr in (
                    ("publisherId", "publisher_id"),
                    ("eventType", "event_type"),
                    ("consumerId", "consumer_id"),
                    ("consumerActionId", "consumer_action_id"),
                )
            )
            and _input_filter_ok(s.publisher_inputs, body.get("publisherInputFilters"))
            and _input_filter_ok(s.consumer_inputs, body.get("consumerInputFilters"))
        ]
    return json_response({**body, "results": results})
