"""Jobs: failed sync work with Azure DevOps' own message, and Retry (as the admin API's retry)."""

from __future__ import annotations

from flask import flash, redirect, url_for
from werkzeug.wrappers import Response

from webhook.services import get_services
from webhook.storage.errors import InUse
from webhook.ui.core import bp, page

PER_PAGE = 100


@bp.get("/jobs")
def jobs() -> Response:
    """Failed jobs first (each with Retry), then the work waiting or running."""
    store = get_services().store
    failed, failed_total = store.jobs.list_jobs("failed", 1, PER_PAGE)
    pending, pending_total = store.jobs.list_jobs("pending", 1, PER_PAGE)
    running, running_total = store.jobs.list_jobs("running", 1, PER_PAGE)
    return page(
        "jobs.html",
        active="ui.jobs",
        failed=failed,
        failed_total=failed_total,
        waiting=running + pending,
        waiting_total=running_total + pending_total,
    )


@bp.post("/jobs/<int:job_id>/retry")
def retry_job(job_id: int) -> Response:
    """Retry: requeue a failed job now."""
    try:
        job = get_services().store.jobs.retry_job(job_id)
    except InUse as exc:
        flash(f"Not retried: {exc}.")
        return redirect(url_for("ui.jobs"), code=303)
    flash(f"Job {job.id} ({job.kind}) is queued again; the worker takes it up now.")
    return redirect(url_for("ui.jobs"), code=303)
