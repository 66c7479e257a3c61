"""Overview: worker heartbeat, jobs, organization pauses, subscription health, reconciliation,
open risks by severity and work items filed per day."""

from __future__ import annotations

from typing import Any

from flask import Response

from webhook import clock
from webhook.api.health import HEARTBEAT_MAX_AGE
from webhook.services import get_services
from webhook.storage.types import JobStateCount
from webhook.subscriptions import HEALTHY
from webhook.ui.core import SEVERITIES, bp, page, ui_store

NO_JOBS = JobStateCount(count=0, oldest_age_seconds=None)
CHART_DAYS = 14
CHART_WIDTH = 280
CHART_HEIGHT = 80


def bar_chart(days: list[tuple[str, int]]) -> dict[str, Any]:
    """Geometry of the work-items-per-day bar chart (SVG attributes, no inline style)."""
    peak = max((n for _, n in days), default=0) or 1
    slot = CHART_WIDTH / max(len(days), 1)
    bars = []
    for index, (day, count) in enumerate(days):
        height = round(CHART_HEIGHT * count / peak, 1)
        bars.append(
            {
                "day": day,
                "count": count,
                "x": round(index * slot + 1, 1),
                "y": round(CHART_HEIGHT - height, 1),
                "width": round(slot - 2, 1),
                "height": height,
            }
        )
    return {"bars": bars, "width": CHART_WIDTH, "height": CHART_HEIGHT, "peak": peak}


@bp.get("/")
def overview() -> Response:
    """The health of the service at a glance."""
    store = get_services().store
    heartbeat = store.operations.worker_heartbeat_age()
    jobs = store.operations.job_counts()
    periodic = store.operations.periodic_status()
    snapshot = store.operations.metrics_snapshot()
    unhealthy = [s for s in snapshot.subscriptions if s.status != HEALTHY]
    by_severity = ui_store().open_risks_by_severity()
    days = ui_store().work_items_per_day(CHART_DAYS)
    now = clock.now()

    def periodic_view(name: str) -> dict[str, Any] | None:
        run = periodic.get(name)
        if not run or not run.last_finished_ts:
            return None
        return {
            "age": now - run.last_finished_ts,
            "at": run.last_finished_ts,
            "ok": run.last_ok,
            "result": run.last_result,
        }

    return page(
        "overview.html",
        active="ui.overview",
        heartbeat=heartbeat,
        heartbeat_fresh=heartbeat is not None and heartbeat <= HEARTBEAT_MAX_AGE,
        jobs={state: jobs.get(state, NO_JOBS) for state in ("pending", "running", "failed")},
        pauses=[
            {
                "organization_url": p.organization_url,
                "until_ts": p.until_ts,
                "remaining": p.until_ts - now,
            }
            for p in ui_store().paused_organizations()
        ],
        subscriptions_total=len(snapshot.subscriptions),
        unhealthy=unhealthy,
        reconcile=periodic_view("reconcile"),
        hook_check=periodic_view("hook_check"),
        severities=[(s, by_severity.get(s, 0)) for s in SEVERITIES],
        open_total=sum(by_severity.values()),
        chart=bar_chart(days),
        chart_days=CHART_DAYS,
    )
