"""Test control routes under `/_sandbox/` (no auth; never delayed, faulted or logged).

Each route is a thin layer over the `Sandbox` method of the same purpose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, request

from .wire import SandboxError, json_response

if TYPE_CHECKING:
    from .server import Sandbox

bp = Blueprint("control", __name__, url_prefix="/_sandbox")


def sandbox() -> Sandbox:
    """Return the Sandbox serving this request."""
    found: Sandbox = current_app.extensions["sandbox"]
    return found


def body() -> dict[str, Any]:
    """Return the JSON object body (empty when absent)."""
    data = request.get_json(silent=True)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SandboxError(400, "The control body must be a JSON object.", "ControlError")
    return data


@bp.get("/info")
def info() -> Response:
    """Return the URLs and credentials of this sandbox."""
    return json_response(sandbox().describe())


@bp.post("/config")
def config() -> Response:
    """Change knobs: token_lifetime, projects_page_size, wiql_max_results, hook_retry_delays."""
    return json_response(sandbox().configure(**body()))


@bp.post("/reset")
def reset() -> Response:
    """Forget all work items, subscriptions, faults and logs; re-seed."""
    sandbox().reset()
    return json_response({"reset": True})


@bp.post("/faults")
def add_fault() -> Response:
    """Register a fault (see `faults.py`)."""
    try:
        return json_response(sandbox().add_fault(**body()), 201)
    except (TypeError, ValueError) as exc:
        raise SandboxError(400, str(exc), "ControlError") from None


@bp.get("/faults")
def list_faults() -> Response:
    """List registered faults with their remaining `times`."""
    return json_response(sandbox().faults())


@bp.delete("/faults")
def clear_faults() -> Response:
    """Remove every fault."""
    sandbox().clear_faults()
    return Response(status=204)


@bp.post("/latency")
def latency() -> Response:
    """Set the latency added to every REST call: `{"seconds": 0.05}`."""
    sb = sandbox()
    sb.latency = float(body().get("seconds", 0.0))
    return json_response({"seconds": sb.latency})


@bp.get("/workitems")
def work_items() -> Response:
    """List all work items, deleted ones included, with fields, rev and comments."""
    return json_response(sandbox().work_items())


@bp.post("/workitems")
def create_work_item() -> Response:
    """Create a work item as a person: `{"project", "type", "fields", "by"?}`."""
    data = body()
    return json_response(
        sandbox().create_item(
            data.get("project", ""),
            data.get("type", ""),
            data.get("fields") or {},
            by=data.get("by"),
        ),
        201,
    )


@bp.get("/workitems/<int:item_id>")
def work_item(item_id: int) -> Response:
    """Return one work item (deleted ones too)."""
    return json_response(sandbox().work_item(item_id))


@bp.post("/workitems/<int:item_id>/state")
def set_state(item_id: int) -> Response:
    """Move a work item to another state as a person: `{"state", "by"?}`."""
    data = body()
    return json_response(sandbox().set_state(item_id, data.get("state", ""), by=data.get("by")))


@bp.post("/workitems/<int:item_id>/type")
def change_type(item_id: int) -> Response:
    """Change a work item's type as a person: `{"type", "state"?, "by"?}`."""
    data = body()
    return json_response(
        sandbox().change_type(
            item_id, data.get("type", ""), state=data.get("state"), by=data.get("by")
        )
    )


@bp.post("/workitems/<int:item_id>/fields")
def update_fields(item_id: int) -> Response:
    """Change fields as a person: `{"fields": {...}, "by"?}`."""
    data = body()
    return json_response(
        sandbox().update_fields(item_id, data.get("fields") or {}, by=data.get("by"))
    )


@bp.post("/workitems/<int:item_id>/comments")
def add_comment(item_id: int) -> Response:
    """Comment as a person: `{"text", "by"?, "format"?}`."""
    data = body()
    return json_response(
        sandbox().add_comment(
            item_id, data.get("text", ""), by=data.get("by"), fmt=data.get("format", "html")
        )
    )


@bp.post("/workitems/<int:item_id>/delete")
def delete_item(item_id: int) -> Response:
    """Delete a work item to the recycle bin as a person: `{"by"?}`."""
    return json_response(sandbox().delete_item(item_id, by=body().get("by")))


@bp.post("/workitems/<int:item_id>/restore")
def restore_item(item_id: int) -> Response:
    """Restore a work item from the recycle bin as a person: `{"by"?}`."""
    return json_response(sandbox().restore_item(item_id, by=body().get("by")))


@bp.get("/requests")
def requests_log() -> Response:
    """Return the REST call log (method, path, query, status)."""
    return json_response(sandbox().requests_log())


@bp.delete("/requests")
def clear_requests_log() -> Response:
    """Empty the REST call log."""
    sandbox().clear_requests_log()
    return Response(status=204)


@bp.get("/deliveries")
def deliveries() -> Response:
    """Return every attempted or dropped hook delivery."""
    return json_response(sandbox().deliveries())


@bp.post("/deliveries/hold")
def hold() -> Response:
    """Keep queued deliveries until release."""
    sandbox().hold_deliveries()
    return json_response({"held": True})


@bp.post("/deliveries/release")
def release() -> Response:
    """Send held deliveries: `{"order": "fifo"|"reverse"}`."""
    order = body().get("order", "fifo")
    if order not in ("fifo", "reverse"):
        raise SandboxError(400, "order must be 'fifo' or 'reverse'.", "ControlError")
    return json_response({"released": sandbox().release_deliveries(order)})


@bp.post("/deliveries/duplicate-next")
def duplicate_next() -> Response:
    """Send the next delivery twice (same event id)."""
    sandbox().duplicate_next_delivery()
    return json_response({"duplicate_next": True})


@bp.post("/deliveries/wait")
def wait_idle() -> Response:
    """Wait until no delivery is queued or in flight: `{"timeout": 5}`."""
    return json_response(
        {"idle": sandbox().wait_deliveries_idle(float(body().get("timeout", 5.0)))}
    )


@bp.get("/subscriptions")
def subscriptions() -> Response:
    """List subscriptions as stored (passwords unmasked)."""
    return json_response(sandbox().subscriptions())


@bp.post("/subscriptions/<sub_id>/status")
def subscription_status(sub_id: str) -> Response:
    """Force a subscription's status: `{"status": "disabledBySystem"|...}`."""
    return json_response(sandbox().set_subscription_status(sub_id, body().get("status", "")))


@bp.delete("/subscriptions/<sub_id>")
def delete_subscription(sub_id: str) -> Response:
    """Delete a subscription as an administrator would in the web UI."""
    sandbox().delete_subscription(sub_id)
    return Response(status=204)
