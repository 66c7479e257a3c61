"""Prometheus metrics, correct across gunicorn worker processes.

Counters and the histogram are attributes of :class:`Metrics`, created once per process by
:func:`process_metrics` (the composition root calls it; nothing is created at import). They
stay readable as module attributes (``metrics.JOBS_COMPLETED``), which create them on first use.

Multi-process mode: when ``PROMETHEUS_MULTIPROC_DIR`` is set *before prometheus_client is
first imported* (the CLI does that before starting gunicorn, after ``prepare_multiproc_dir``),
prometheus_client keeps every process's values in memory-mapped files in that directory and
``render_metrics`` merges them with ``MultiProcessCollector``, so any worker can serve a
scrape. gunicorn's ``child_exit`` hook must call :func:`child_exit` (``mark_process_dead``).

Values that live in the database (job queue, subscriptions, reconcile/hook-check results,
worker heartbeat) are not kept in process memory at all: ``StoreCollector`` reads them through
a ``snapshot()`` callable at scrape time, so they are right whichever process answers.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import prometheus_client
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import exposition as _exposition
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from webhook.storage.types import MetricsSnapshot

__all__ = [
    "CONTENT_TYPE",
    "METRIC_NAMES",
    "MULTIPROC_ENV",
    "Metrics",
    "StoreCollector",
    "child_exit",
    "multiprocess_enabled",
    "prepare_multiproc_dir",
    "process_metrics",
    "render_metrics",
]

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# The classic text format (what generate_latest writes); understood by every Prometheus.
CONTENT_TYPE: str = getattr(
    _exposition, "CONTENT_TYPE_PLAIN_0_0_4", _exposition.CONTENT_TYPE_LATEST
)

# --------------------------------------------------------------------------------------------
# Process-side metrics (names are part of the contract)
# --------------------------------------------------------------------------------------------

# Attribute names of Metrics, also readable as module attributes (metrics.RISKS_RECEIVED).
METRIC_NAMES = (
    "RISKS_RECEIVED",
    "SIGNATURE_FAILURES",
    "WEBHOOK_REQUESTS",
    "WORK_ITEMS_CREATED",
    "ADO_CALLS",
    "RATE_LIMIT_PAUSES",
    "HOOK_DELIVERIES",
    "JOBS_COMPLETED",
    "CALLBACKS",
    "SUBSCRIPTIONS_HEALED",
    "RECONCILE_CHANGES",
    "HTTP_REQUEST_SECONDS",
)


class Metrics:
    """This process's counters and histogram, registered in `registry` when built.

    Build it once per process (:func:`process_metrics`); a second instance on the same
    registry raises ValueError (duplicated time series). In multi-process mode the values live
    in the mmap files of ``PROMETHEUS_MULTIPROC_DIR``, which must be set before
    prometheus_client is first imported.
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.RISKS_RECEIVED = Counter(
            "adowh_risks_received_total",
            "Risks received from scanners, by what storing them did (created, updated, unchanged).",
            ["action"],
            registry=registry,
        )
        self.SIGNATURE_FAILURES = Counter(
            "adowh_signature_failures_total",
            "Scanner webhook requests rejected by signature verification, by reason.",
            ["reason"],
            registry=registry,
        )
        self.WEBHOOK_REQUESTS = Counter(
            "adowh_scanner_requests_total",
            "Scanner webhook requests, by HTTP status returned.",
            ["status"],
            registry=registry,
        )
        self.WORK_ITEMS_CREATED = Counter(
            "adowh_work_items_created_total",
            "Work items linked to risks; adopted=true when an item already existing in Azure "
            "DevOps was found by its tag and adopted instead of created.",
            ["adopted"],
            registry=registry,
        )
        self.ADO_CALLS = Counter(
            "adowh_ado_calls_total",
            "Azure DevOps REST calls, by HTTP method and response status (or error class).",
            ["method", "status"],
            registry=registry,
        )
        self.RATE_LIMIT_PAUSES = Counter(
            "adowh_ado_rate_limit_pauses_total",
            "Times an Azure DevOps organization was paused because of 429/Retry-After/5xx backoff.",
            registry=registry,
        )
        self.HOOK_DELIVERIES = Counter(
            "adowh_hook_deliveries_total",
            "Azure DevOps service-hook deliveries, by event type and outcome "
            "(recorded, duplicate, ignored, mismatch, not_ours, unauthorized, invalid, "
            'unavailable); event types other than the work item events are counted as "other".',
            ["event_type", "outcome"],
            registry=registry,
        )
        self.JOBS_COMPLETED = Counter(
            "adowh_jobs_completed_total",
            "Background jobs finished, by kind and outcome.",
            ["kind", "outcome"],
            registry=registry,
        )
        self.CALLBACKS = Counter(
            "adowh_callbacks_total",
            "Signed callbacks to scanners, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.SUBSCRIPTIONS_HEALED = Counter(
            "adowh_subscriptions_healed_total",
            "Service-hook subscriptions recreated by the periodic check, by reason.",
            ["reason"],
            registry=registry,
        )
        self.RECONCILE_CHANGES = Counter(
            "adowh_reconcile_changes_applied_total",
            "Work item state changes applied by reconciliation that the service hooks had missed.",
            registry=registry,
        )
        self.HTTP_REQUEST_SECONDS = Histogram(
            "adowh_http_request_seconds",
            "HTTP request duration in seconds, by route: the URL rule, not the raw path "
            "('unmatched' for a 404/405). The scanner webhook is not included (see "
            "adowh_scanner_requests_total).",
            ["route"],
            registry=registry,
        )
        # Series with a known, small label set start at 0 so rate() and absent() work at once.
        for action in ("created", "updated", "unchanged"):
            self.RISKS_RECEIVED.labels(action=action)
        for adopted in ("true", "false"):
            self.WORK_ITEMS_CREATED.labels(adopted=adopted)


_process_metrics: Metrics | None = None
_process_lock = threading.Lock()


def process_metrics() -> Metrics:
    """This process's Metrics in the default registry, created on the first call.

    The composition root (webhook.services) calls it once; the module attributes
    (``metrics.JOBS_COMPLETED`` …) read it too. Creating them turns off the ``_created``
    series (they double the output and do not exist in multi-process mode, so both modes
    expose the same series) and, in multi-process mode, makes sure ``PROMETHEUS_MULTIPROC_DIR``
    exists (an unlabelled metric opens its mmap file as soon as it is defined).
    """
    global _process_metrics
    with _process_lock:
        if _process_metrics is None:
            if hasattr(prometheus_client, "disable_created_metrics"):
                prometheus_client.disable_created_metrics()
            folder = os.environ.get(MULTIPROC_ENV)
            if folder:
                os.makedirs(folder, exist_ok=True)
            _process_metrics = Metrics(REGISTRY)
        return _process_metrics


def __getattr__(name: str) -> Any:
    """``metrics.RISKS_RECEIVED`` and the like: that metric of :func:`process_metrics`."""
    if name in METRIC_NAMES:
        return getattr(process_metrics(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------------
# Multi-process plumbing
# --------------------------------------------------------------------------------------------


def multiprocess_enabled() -> bool:
    """True when ``PROMETHEUS_MULTIPROC_DIR`` names a directory (checked at call time)."""
    path = os.environ.get(MULTIPROC_ENV)
    return bool(path) and os.path.isdir(path)  # type: ignore[arg-type]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prepare_multiproc_dir(path: str | os.PathLike[str]) -> None:
    """Create ``path`` and remove the metric files of processes that are no longer running.

    Call it before any process writes metrics (i.e. before gunicorn forks), then export
    ``PROMETHEUS_MULTIPROC_DIR=path``. Files of live processes (e.g. a separately run
    ``ado-webhook worker`` sharing the folder) are kept. Only prometheus_client's ``*.db``
    files are deleted, so a mistaken path cannot wipe unrelated data.
    """
    directory = os.fspath(path)
    os.makedirs(directory, exist_ok=True)
    for name in glob.glob(os.path.join(glob.escape(directory), "*.db")):
        stem = os.path.basename(name)[:-3]
        pid_text = stem.rsplit("_", 1)[-1]
        if pid_text.isdigit() and _pid_alive(int(pid_text)) and int(pid_text) != os.getpid():
            continue
        if os.path.isfile(name):
            os.remove(name)


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn ``child_exit`` hook: drop the dead worker's live gauges.

    Use from a gunicorn config as ``child_exit = webhook.metrics.child_exit``. A no-op when
    multi-process mode is off; never raises (a hook error would disturb the arbiter).
    """
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, path)
    except Exception:  # pragma: no cover - defensive
        log.warning("could not mark metrics of worker %s dead", getattr(worker, "pid", "?"))


# --------------------------------------------------------------------------------------------
# Database-derived gauges
# --------------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _gauge(name: str, doc: str, value: Any) -> GaugeMetricFamily | None:
    number = _number(value)
    if number is None:
        return None
    return GaugeMetricFamily(name, doc, value=number)


class StoreCollector(Collector):
    """Gauges computed from the database at scrape time.

    ``snapshot()`` returns a ``MetricsSnapshot`` (``webhook.storage.types``): jobs by state,
    subscriptions with their last known status, the last reconciliation and hook check, the
    worker heartbeat's age. A None figure (or a task that never finished) omits its metric; a
    failing ``snapshot()`` omits them all (logged), and a section that fails omits only that
    section: a scrape never fails because of the database.
    """

    def __init__(self, snapshot: Callable[[], MetricsSnapshot]) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterable[Metric]:
        # Nothing up front: registering must not query the database.
        return []

    def collect(self) -> Iterator[Metric]:
        # Imported here, not at the top: gunicorn's master imports this module for child_exit
        # and stays as light as it was.
        from webhook.storage.types import MetricsSnapshot

        try:
            data = self._snapshot()
        except Exception as exc:
            log.warning("metrics snapshot failed: %s: %s", exc.__class__.__name__, exc)
            return
        if not isinstance(data, MetricsSnapshot):
            return
        for section in (self._jobs, self._subscriptions, self._reconcile, self._hook_check):
            try:
                metrics = list(section(data))
            except Exception as exc:
                log.warning("metrics snapshot section %s malformed: %s", section.__name__, exc)
                continue
            yield from metrics
        heartbeat = _gauge(
            "adowh_worker_heartbeat_age_seconds",
            "Seconds since the freshest sync worker heartbeat.",
            data.worker_heartbeat_age_seconds,
        )
        if heartbeat is not None:
            yield heartbeat

    @staticmethod
    def _jobs(data: MetricsSnapshot) -> Iterator[Metric]:
        count = GaugeMetricFamily(
            "adowh_jobs", "Sync jobs in the database, by state.", labels=["state"]
        )
        oldest = GaugeMetricFamily(
            "adowh_job_oldest_age_seconds",
            "Age in seconds of the oldest job in each state.",
            labels=["state"],
        )
        for state, info in data.jobs.items():
            value = _number(info.count)
            if value is not None:
                count.add_metric([str(state)], value)
            age = _number(info.oldest_age_seconds)
            if age is not None:
                oldest.add_metric([str(state)], age)
        if count.samples:
            yield count
        if oldest.samples:
            yield oldest

    @staticmethod
    def _subscriptions(data: MetricsSnapshot) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "adowh_subscription_status",
            "Registered Azure DevOps service-hook subscriptions (1 per subscription, "
            "with its last known status).",
            labels=["id", "event_type", "project", "status"],
        )
        for sub in data.subscriptions:
            labels = [
                "" if value is None else str(value)
                for value in (sub.id, sub.event_type, sub.project, sub.status)
            ]
            family.add_metric(labels, 1.0)
        yield family

    @staticmethod
    def _reconcile(data: MetricsSnapshot) -> Iterator[Metric]:
        info = data.reconcile
        if info is None:
            return
        for metric in (
            _gauge(
                "adowh_reconcile_last_run_timestamp_seconds",
                "Unix time of the last reconciliation pass.",
                info.last_run_at_unix,
            ),
            _gauge(
                "adowh_reconcile_last_changes",
                "State changes the last reconciliation pass applied.",
                info.last_changes,
            ),
            _gauge(
                "adowh_reconcile_last_ok",
                "1 if the last reconciliation pass succeeded, else 0.",
                info.last_ok,
            ),
            _gauge(
                "adowh_reconcile_consecutive_failures",
                "Reconciliation passes in a row that failed (0 after one that succeeded).",
                info.consecutive_failures,
            ),
            _gauge(
                "adowh_reconcile_item_failures",
                "Linked work items the last reconciliation pass could not apply (it went on "
                "past them; they are retried next pass).",
                info.item_failures,
            ),
        ):
            if metric is not None:
                yield metric

    @staticmethod
    def _hook_check(data: MetricsSnapshot) -> Iterator[Metric]:
        info = data.hook_check
        if info is None:
            return
        for metric in (
            _gauge(
                "adowh_hook_check_last_run_timestamp_seconds",
                "Unix time of the last service-hook subscription check.",
                info.last_run_at_unix,
            ),
            _gauge(
                "adowh_hook_check_last_ok",
                "1 if the last subscription check succeeded, else 0.",
                info.last_ok,
            ),
            _gauge(
                "adowh_hook_check_consecutive_failures",
                "Subscription checks in a row that failed (0 after one that succeeded).",
                info.consecutive_failures,
            ),
        ):
            if metric is not None:
                yield metric


class _Combined(Collector):
    """Just enough of a registry for ``generate_latest``: chains collectors."""

    def __init__(self, *collectors: Any) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


def render_metrics(
    snapshot: Callable[[], MetricsSnapshot] | None = None,
) -> tuple[bytes, str]:
    """The ``/metrics`` body and its content type.

    Multi-process mode (``PROMETHEUS_MULTIPROC_DIR`` set): every process's counters merged from
    the mmap files. Otherwise this process's default registry. Plus ``StoreCollector(snapshot)``.
    """
    process_metrics()  # this process's series exist (at 0) even before anything counted
    collectors: list[Any] = []
    if multiprocess_enabled():
        from prometheus_client import multiprocess

        registry = CollectorRegistry(auto_describe=False)
        multiprocess.MultiProcessCollector(registry, path=os.environ[MULTIPROC_ENV])
        collectors.append(registry)
    else:
        collectors.append(REGISTRY)
    if snapshot is not None:
        collectors.append(StoreCollector(snapshot))
    return generate_latest(_Combined(*collectors)), CONTENT_TYPE
