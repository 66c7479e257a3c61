"""Prometheus metrics (webhook.metrics): counters, database gauges, multi-process mode."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import risk, signed_headers
from webhook import metrics
from webhook.storage.types import (
    JobStateCount,
    MetricsSnapshot,
    PeriodicSummary,
    SubscriptionStatus,
)

ROOT = Path(__file__).resolve().parents[1]

in_process_only = pytest.mark.skipif(
    bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")),
    reason="the test process itself runs in multi-process mode",
)

CONTRACT_NAMES = [
    "adowh_risks_received",
    "adowh_signature_failures",
    "adowh_scanner_requests",
    "adowh_work_items_created",
    "adowh_ado_calls",
    "adowh_ado_rate_limit_pauses",
    "adowh_hook_deliveries",
    "adowh_jobs_completed",
    "adowh_callbacks",
    "adowh_subscriptions_healed",
    "adowh_reconcile_changes_applied",
    "adowh_http_request_seconds",
]

FULL_SNAPSHOT = MetricsSnapshot(
    jobs={
        "pending": JobStateCount(count=3, oldest_age_seconds=12.5),
        "running": JobStateCount(count=1, oldest_age_seconds=2),
        "failed": JobStateCount(count=0, oldest_age_seconds=None),
    },
    subscriptions=(
        SubscriptionStatus(id=1, event_type="workitem.updated", project="Sec", status="enabled"),
        SubscriptionStatus(
            id=2, event_type="workitem.deleted", project="Sec", status="onProbation"
        ),
    ),
    reconcile=PeriodicSummary(
        last_run_at_unix=1_700_000_000, last_ok=True, consecutive_failures=0, last_changes=4
    ),
    hook_check=PeriodicSummary(
        last_run_at_unix=1_700_000_100.5, last_ok=False, consecutive_failures=3
    ),
    worker_heartbeat_age_seconds=7.25,
)
EMPTY_SNAPSHOT = MetricsSnapshot(
    jobs={}, subscriptions=(), worker_heartbeat_age_seconds=None, reconcile=None, hook_check=None
)


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(body: bytes, name: str, **labels: str) -> float | None:
    return samples(body).get((name, tuple(sorted(labels.items()))))


@in_process_only
def test_counters_increment():
    def get(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = get("adowh_risks_received_total", action="created")
    metrics.RISKS_RECEIVED.labels(action="created").inc()
    metrics.RISKS_RECEIVED.labels(action="created").inc(2)
    assert get("adowh_risks_received_total", action="created") == before + 3

    before = get("adowh_ado_calls_total", method="POST", status="429")
    metrics.ADO_CALLS.labels(method="POST", status="429").inc()
    assert get("adowh_ado_calls_total", method="POST", status="429") == before + 1

    before = get("adowh_ado_rate_limit_pauses_total")
    metrics.RATE_LIMIT_PAUSES.inc()
    assert get("adowh_ado_rate_limit_pauses_total") == before + 1

    before = get("adowh_http_request_seconds_count", route="/hooks/ado")
    metrics.HTTP_REQUEST_SECONDS.labels(route="/hooks/ado").observe(0.003)
    assert get("adowh_http_request_seconds_count", route="/hooks/ado") == before + 1

    body, _ = metrics.render_metrics(None)
    assert value(body, "adowh_ado_rate_limit_pauses_total") == get(
        "adowh_ado_rate_limit_pauses_total"
    )


@in_process_only
def test_contract_metrics_present_and_labelled():
    expected_labels = {
        "adowh_risks_received": ["action"],
        "adowh_signature_failures": ["reason"],
        "adowh_scanner_requests": ["status"],
        "adowh_work_items_created": ["adopted"],
        "adowh_ado_calls": ["method", "status"],
        "adowh_ado_rate_limit_pauses": [],
        "adowh_hook_deliveries": ["event_type", "outcome"],
        "adowh_jobs_completed": ["kind", "outcome"],
        "adowh_callbacks": ["outcome"],
        "adowh_subscriptions_healed": ["reason"],
        "adowh_reconcile_changes_applied": [],
        "adowh_http_request_seconds": ["route"],
    }
    objects = {
        "adowh_risks_received": metrics.RISKS_RECEIVED,
        "adowh_signature_failures": metrics.SIGNATURE_FAILURES,
        "adowh_scanner_requests": metrics.WEBHOOK_REQUESTS,
        "adowh_work_items_created": metrics.WORK_ITEMS_CREATED,
        "adowh_ado_calls": metrics.ADO_CALLS,
        "adowh_ado_rate_limit_pauses": metrics.RATE_LIMIT_PAUSES,
        "adowh_hook_deliveries": metrics.HOOK_DELIVERIES,
        "adowh_jobs_completed": metrics.JOBS_COMPLETED,
        "adowh_callbacks": metrics.CALLBACKS,
        "adowh_subscriptions_healed": metrics.SUBSCRIPTIONS_HEALED,
        "adowh_reconcile_changes_applied": metrics.RECONCILE_CHANGES,
        "adowh_http_request_seconds": metrics.HTTP_REQUEST_SECONDS,
    }
    for name, metric in objects.items():
        assert metric._name == name
        assert list(metric._labelnames) == expected_labels[name]
    body, content_type = metrics.render_metrics(None)
    assert content_type.startswith("text/plain")
    families = {f.name: f.type for f in text_string_to_metric_families(body.decode())}
    for name in CONTRACT_NAMES:
        assert name in families, name
    assert families["adowh_http_request_seconds"] == "histogram"
    assert families["adowh_risks_received"] == "counter"
    # known label values start at zero, and no "_created" timestamp series
    assert value(body, "adowh_risks_received_total", action="unchanged") is not None
    assert value(body, "adowh_work_items_created_total", adopted="true") is not None
    assert b"_created{" not in body


@in_process_only
def test_request_seconds_observed_by_route_template(client, scanner, admin):
    """Every Flask route but the scanner webhook is timed, labelled by its URL rule."""

    def count(route: str) -> float:
        return REGISTRY.get_sample_value("adowh_http_request_seconds_count", {"route": route}) or 0

    routes = ("/healthz", "/admin/risks/<int:risk_id>", "unmatched")
    before = {route: count(route) for route in routes}
    assert scanner.send({"risk": risk("R-1")}).status_code == 202  # the fast door
    body = json.dumps({"risk": risk("R-2")}).encode()
    chunked = client.post(  # no Content-Length, as gunicorn passes a chunked body: Flask's route
        "/webhooks/risks/sast",
        input_stream=io.BytesIO(body),
        headers={**signed_headers(scanner.secret, body), "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert chunked.status_code == 202
    assert client.get("/healthz").status_code == 200
    assert client.get("/admin/risks/1", headers=admin).status_code == 200
    assert client.get("/admin/risks/999", headers=admin).status_code == 404
    assert client.get("/no/such/page").status_code == 404
    assert {route: count(route) - before[route] for route in routes} == {
        "/healthz": 1,
        "/admin/risks/<int:risk_id>": 2,
        "unmatched": 1,
    }
    body, _ = metrics.render_metrics(None)
    assert value(body, "adowh_http_request_seconds_count", route="/healthz") == count("/healthz")
    assert b'adowh_http_request_seconds_count{route="/webhooks' not in body


def test_store_collector_full_snapshot():
    body, _ = metrics.render_metrics(lambda: FULL_SNAPSHOT)
    assert value(body, "adowh_jobs", state="pending") == 3
    assert value(body, "adowh_jobs", state="running") == 1
    assert value(body, "adowh_jobs", state="failed") == 0
    assert value(body, "adowh_job_oldest_age_seconds", state="pending") == 12.5
    assert value(body, "adowh_job_oldest_age_seconds", state="failed") is None
    assert (
        value(
            body,
            "adowh_subscription_status",
            id="2",
            event_type="workitem.deleted",
            project="Sec",
            status="onProbation",
        )
        == 1
    )
    assert value(body, "adowh_reconcile_last_run_timestamp_seconds") == 1_700_000_000
    assert value(body, "adowh_reconcile_last_changes") == 4
    assert value(body, "adowh_reconcile_last_ok") == 1
    assert value(body, "adowh_hook_check_last_run_timestamp_seconds") == 1_700_000_100.5
    assert value(body, "adowh_hook_check_last_ok") == 0
    assert value(body, "adowh_hook_check_consecutive_failures") == 3
    assert value(body, "adowh_reconcile_item_failures") is None  # not known: not shown
    assert value(body, "adowh_worker_heartbeat_age_seconds") == 7.25
    families = {f.name: f.type for f in text_string_to_metric_families(body.decode())}
    assert families["adowh_jobs"] == "gauge"


def test_store_collector_unknown_figures_omitted():
    body, _ = metrics.render_metrics(lambda: EMPTY_SNAPSHOT)
    names = {name for name, _ in samples(body)}
    for absent in (
        "adowh_jobs",
        "adowh_job_oldest_age_seconds",
        "adowh_subscription_status",
        "adowh_reconcile_last_ok",
        "adowh_reconcile_last_run_timestamp_seconds",
        "adowh_reconcile_last_changes",
        "adowh_hook_check_last_ok",
        "adowh_worker_heartbeat_age_seconds",
    ):
        assert absent not in names
    for absent in ("adowh_jobs", "adowh_reconcile_last_ok", "adowh_worker_heartbeat_age_seconds"):
        assert f"# TYPE {absent} ".encode() not in body


def test_malformed_section_skips_only_that_section():
    snapshot = MetricsSnapshot(
        jobs={"pending": "junk"},  # type: ignore[dict-item]
        subscriptions=(
            SubscriptionStatus(id=1, event_type=None, project=None, status="enabled"),  # type: ignore[arg-type]
        ),
        reconcile=PeriodicSummary(
            last_run_at_unix="yesterday",  # type: ignore[arg-type]
            last_ok=None,
            consecutive_failures=0,
            last_changes=2,
        ),
        hook_check=None,
        worker_heartbeat_age_seconds=3,
    )
    body, _ = metrics.render_metrics(lambda: snapshot)
    names = {name for name, _ in samples(body)}
    assert "adowh_jobs" not in names
    assert (
        value(
            body, "adowh_subscription_status", id="1", event_type="", project="", status="enabled"
        )
        == 1
    )
    assert "adowh_reconcile_last_run_timestamp_seconds" not in names
    assert "adowh_reconcile_last_ok" not in names
    assert value(body, "adowh_reconcile_last_changes") == 2
    assert value(body, "adowh_worker_heartbeat_age_seconds") == 3


def test_broken_snapshot_does_not_break_render(caplog):
    def snapshot():
        raise RuntimeError("database is locked")

    with caplog.at_level(logging.WARNING, logger="webhook.metrics"):
        body, content_type = metrics.render_metrics(snapshot)
    assert content_type.startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert "adowh_risks_received" in names
    store = {
        "adowh_jobs",
        "adowh_job_oldest_age_seconds",
        "adowh_subscription_status",
        "adowh_reconcile_last_ok",
        "adowh_worker_heartbeat_age_seconds",
    }
    assert not names & store
    assert any("snapshot failed" in r.getMessage() for r in caplog.records)

    body, _ = metrics.render_metrics(lambda: None)  # type: ignore[arg-type, return-value]
    assert b"adowh_risks_received_total" in body


def test_store_collector_can_be_registered_without_querying():
    from prometheus_client import CollectorRegistry, generate_latest

    calls = []
    registry = CollectorRegistry()
    registry.register(metrics.StoreCollector(lambda: calls.append(1) or FULL_SNAPSHOT))
    assert calls == []
    assert value(generate_latest(registry), "adowh_worker_heartbeat_age_seconds") == 7.25
    assert calls == [1]


# ---- multi-process mode ------------------------------------------------------------------------

CHILD = """
import sys
from tests.conftest import risk, signed_headers
from webhook import metrics
from webhook.storage.types import (
    JobStateCount,
    MetricsSnapshot,
    PeriodicSummary,
    SubscriptionStatus,
)
metrics.RISKS_RECEIVED.labels(action="created").inc(int(sys.argv[1]))
metrics.HOOK_DELIVERIES.labels(event_type="workitem.updated", outcome="recorded").inc()
metrics.RATE_LIMIT_PAUSES.inc()
metrics.HTTP_REQUEST_SECONDS.labels(route="/hooks/ado").observe(0.01)
"""


def run_child(code: str, metrics_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


@pytest.mark.e2e
def test_multiprocess_counters_are_summed(tmp_path, monkeypatch):
    metrics_dir = tmp_path / "prom"
    metrics.prepare_multiproc_dir(metrics_dir)
    run_child(CHILD, metrics_dir, "2")
    run_child(CHILD, metrics_dir, "3")
    assert len(list(metrics_dir.glob("counter_*.db"))) == 2

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    assert metrics.multiprocess_enabled()
    body, _ = metrics.render_metrics(
        lambda: replace(EMPTY_SNAPSHOT, worker_heartbeat_age_seconds=1)
    )
    assert value(body, "adowh_risks_received_total", action="created") == 5
    assert value(body, "adowh_risks_received_total", action="updated") == 0
    assert (
        value(
            body, "adowh_hook_deliveries_total", event_type="workitem.updated", outcome="recorded"
        )
        == 2
    )
    assert value(body, "adowh_ado_rate_limit_pauses_total") == 2
    assert value(body, "adowh_http_request_seconds_count", route="/hooks/ado") == 2
    assert value(body, "adowh_worker_heartbeat_age_seconds") == 1
    # the in-memory default registry (python_gc_..., process_...) is not mixed in
    assert b"python_gc_objects_collected_total" not in body


@pytest.mark.e2e
def test_multiprocess_render_in_child(tmp_path):
    """A worker process itself renders the merged view (what a gunicorn worker does)."""
    metrics_dir = tmp_path / "prom"
    metrics.prepare_multiproc_dir(metrics_dir)
    run_child(CHILD, metrics_dir, "4")
    result = run_child(
        CHILD + "\nbody, ct = metrics.render_metrics(None)\nsys.stdout.write(body.decode())",
        metrics_dir,
        "1",
    )
    assert value(result.stdout.encode(), "adowh_risks_received_total", action="created") == 5


@pytest.mark.e2e
def test_import_creates_missing_multiproc_dir(tmp_path):
    metrics_dir = tmp_path / "not" / "yet"
    run_child(CHILD, metrics_dir, "1")
    assert list(metrics_dir.glob("counter_*.db"))


def test_prepare_multiproc_dir_empties_only_metric_files(tmp_path):
    target = tmp_path / "m"
    metrics.prepare_multiproc_dir(target)
    assert target.is_dir()
    (target / "counter_123.db").write_bytes(b"x")
    (target / "gauge_livesum_123.db").write_bytes(b"x")
    (target / "keep.txt").write_text("not ours")
    metrics.prepare_multiproc_dir(target)
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]


def test_child_exit_marks_process_dead(tmp_path, monkeypatch):
    worker = SimpleNamespace(pid=4242)
    (tmp_path / "gauge_livesum_4242.db").write_bytes(b"x")
    (tmp_path / "counter_4242.db").write_bytes(b"x")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    metrics.child_exit(None, worker)  # multi-process mode off: nothing to do
    assert (tmp_path / "gauge_livesum_4242.db").exists()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    metrics.child_exit(None, worker)
    assert not (tmp_path / "gauge_livesum_4242.db").exists()
    assert (tmp_path / "counter_4242.db").exists()  # counters of dead workers still count
