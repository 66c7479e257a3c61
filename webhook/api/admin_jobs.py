"""Admin: pending/failed sync work and manual retry.

A job becomes failed on an Azure DevOps refusal (4xx) or after its bounded number of attempts
(webhook.worker.MAX_ATTEMPTS), with its last reason in `last_error`.
"""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from webhook.api.auth import require_admin
from webhook.api.requests import load_query, page_body
from webhook.errors import Conflict, NotFound
from webhook.openapi import doc
from webhook.schemas import JobPageSchema, JobQuerySchema, JobSchema
from webhook.services import get_services
from webhook.storage.errors import InUse, Missing

_job_schema = JobSchema()
bp = Blueprint("admin_jobs", __name__, url_prefix="/admin/jobs")
bp.before_request(require_admin)


@bp.get("")
@doc(
    summary="List sync jobs (default: not done)",
    tag="jobs",
    query=JobQuerySchema,
    responses={200: JobPageSchema},
)
def list_jobs() -> ResponseReturnValue:
    """Jobs by state."""
    q = load_query(JobQuerySchema())
    items, total = get_services().store.jobs.list_jobs(q.get("state"), q["page"], q["per_page"])
    return jsonify(page_body(_job_schema.dump(items, many=True), total, q["page"], q["per_page"]))


@bp.post("/<int:job_id>/retry")
@doc(
    summary="Requeue a failed job now, with a fresh budget of attempts (409 unless failed)",
    tag="jobs",
    responses={200: JobSchema},
)
def retry_job(job_id: int) -> ResponseReturnValue:
    """Requeue a failed job now; until then it holds its own risk's lane (later work waits)."""
    try:
        return jsonify(_job_schema.dump(get_services().store.jobs.retry_job(job_id)))
    except Missing as exc:
        raise NotFound(str(exc)) from None
    except InUse as exc:
        raise Conflict(str(exc), code="job_not_failed") from None
