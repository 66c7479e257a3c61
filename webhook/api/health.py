"""/healthz, /readyz, /metrics and /openapi.json."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from flask.typing import ResponseReturnValue

from webhook import metrics
from webhook.openapi import build_spec, doc
from webhook.schemas import HealthSchema, ReconcileHealthSchema
from webhook.services import get_services
from webhook.storage.errors import storage_unavailable
from webhook.subscriptions import unhooked_projects

bp = Blueprint("health", __name__)
HEARTBEAT_MAX_AGE = 30.0
_reconcile_schema = ReconcileHealthSchema()


@bp.get("/healthz")
@doc(summary="The process is alive", tag="health", auth=None, responses={200: HealthSchema})
def healthz() -> ResponseReturnValue:
    """Liveness: answers as long as the process serves requests; never touches the database."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@doc(
    summary="Database writable and worker heartbeat fresh",
    tag="health",
    auth=None,
    responses={200: HealthSchema, 503: HealthSchema},
)
def readyz() -> ResponseReturnValue:
    """Readiness: a real write commits now and a worker has beaten recently.

    The write goes through the same bounded path as every request's (so a locked, full or
    removed database answers 503 here within the wait budget, with the reason).
    """
    store = get_services().store
    checks: dict[str, Any] = {}
    retry_after = 0  # seconds, when the database is why it is not ready
    try:
        store.operations.check_writable()
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready
        checks["database"] = f"error: {_reason(exc)}"
        found = storage_unavailable(exc)
        retry_after = max(1, int(found.retry_after)) if found is not None else 1
    try:
        age = store.operations.worker_heartbeat_age()
    except Exception:  # the database check above says why
        age = None
    checks["worker_heartbeat_age_seconds"] = None if age is None else round(age, 1)
    checks["worker"] = "ok" if age is not None and age <= HEARTBEAT_MAX_AGE else "stale"
    # A warning, not unreadiness: such projects still sync by reconciliation.
    try:
        checks["service_hooks"] = unhooked_projects(store) or "ok"
    except Exception as exc:  # a detail: the database check above says why
        checks["service_hooks"] = f"error: {_reason(exc)}"
    # Shown, not gating: the service still takes deliveries while Azure DevOps cannot be read.
    try:
        reconcile = store.operations.reconcile_health()
        checks["reconcile"] = None if reconcile is None else _reconcile_schema.dump(reconcile)
    except Exception as exc:  # a detail: never turns readiness into a 500
        checks["reconcile"] = f"error: {type(exc).__name__}"
    ok = checks["database"] == "ok" and checks["worker"] == "ok"
    body = jsonify({"status": "ok" if ok else "unavailable", "checks": checks})
    if ok:
        return body, 200
    # Always the same shape when not ready; Retry-After when the database is the reason.
    return body, 503, {"Retry-After": str(retry_after)} if retry_after else {}


def _reason(exc: Exception) -> str:
    found = storage_unavailable(exc)
    return found.reason if found is not None else type(exc).__name__


@bp.get("/metrics")
@doc(summary="Prometheus metrics", tag="health", auth=None, responses={200: None})
def metrics_view() -> ResponseReturnValue:
    """Prometheus text format, summed across gunicorn workers."""
    body, content_type = metrics.render_metrics(get_services().store.operations.metrics_snapshot)
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
@doc(summary="This API as OpenAPI 3", tag="health", auth=None, responses={200: None})
def openapi() -> ResponseReturnValue:
    """The OpenAPI document generated from the schemas."""
    spec = current_app.extensions.get("adowh_openapi")
    if spec is None:
        spec = current_app.extensions["adowh_openapi"] = build_spec(current_app)
    return jsonify(spec)
