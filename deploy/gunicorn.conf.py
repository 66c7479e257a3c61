"""gunicorn settings for ado-webhook's HTTP service.

    gunicorn -c deploy/gunicorn.conf.py

(``ado-webhook serve`` builds the same settings itself; this file is for running gunicorn
directly, e.g. under another supervisor.) No secrets belong here: WEBHOOK_ADMIN_TOKEN,
WEBHOOK_SECRET_KEY and the rest come from the environment.

Worker model: ``gthread``, a few threads per process. Requests are short (the Azure DevOps
hook route must answer in milliseconds; every Azure DevOps call is made by the background
worker, not in a request), but clients may be slow to send bodies (scanner batches up to
16 MiB) and sync workers would be blocked by each of them and cannot keep connections alive.
Threads absorb slow clients and allow keep-alive; the processes give CPU parallelism. More
threads would buy little: SQLite admits one writer at a time anyway.
"""

import multiprocessing
import os
import shutil
import tempfile
import time

# Multi-process Prometheus metrics: the directory must be known before any metric is
# created (prometheus_client reads the variable at import), so it is set here, before
# webhook is imported. `ado-webhook serve` exports one (and empties it) itself; when gunicorn
# is started directly without it, a fresh private directory is used and removed on exit.
_OWN_METRICS_DIR = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _OWN_METRICS_DIR = tempfile.mkdtemp(prefix="ado-webhook-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _OWN_METRICS_DIR

from webhook.logs import GUNICORN_ACCESS_LOG_FORMAT, gunicorn_logconfig_dict  # noqa: E402

wsgi_app = "webhook:create_app()"

bind = os.environ.get("WEBHOOK_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("WEB_CONCURRENCY") or (2 * multiprocessing.cpu_count() + 1))
worker_class = "gthread"
threads = 4

timeout = 30
graceful_timeout = 30
keepalive = 5

# Request-line and header limits (the body limit, WEBHOOK_MAX_BODY_BYTES, is the app's).
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

# Proxy headers (X-Forwarded-*) are trusted only from addresses given by the operator.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# Logging: JSON lines. accesslog "-" switches access logging on; logconfig_dict routes both
# gunicorn loggers through the application's JSON handler (stderr, secrets redacted).
accesslog = "-"
errorlog = "-"
access_log_format = GUNICORN_ACCESS_LOG_FORMAT
logconfig_dict = gunicorn_logconfig_dict(os.environ.get("WEBHOOK_LOG_LEVEL", "INFO"))
capture_output = False
proc_name = "ado-webhook-web"

# gunicorn >= 25 opens a control socket under $XDG_RUNTIME_DIR or ~/.gunicorn by default; the
# service does not use it and its home is read-only under systemd/in the container.
control_socket_disable = True


def post_fork(server, worker):
    """Short GIL switch interval in each worker (see webhook.gunicorn_app)."""
    from webhook.gunicorn_app import tune_thread_switching

    tune_thread_switching()


def child_exit(server, worker):
    """A worker died: drop its live gauges from the multi-process metrics directory."""
    from webhook.metrics import child_exit as _child_exit

    _child_exit(server, worker)


def on_exit(server):
    """Remove the metrics directory this file created (never one given by the caller)."""
    if not _OWN_METRICS_DIR:
        return
    # A worker killed at the end of the graceful timeout (gunicorn measures it on the wall
    # clock, which can jump) may still be finishing a file it was creating in the directory
    # while the first pass runs; a few bounded passes make sure it is gone.
    for _ in range(20):
        shutil.rmtree(_OWN_METRICS_DIR, ignore_errors=True)
        if not os.path.exists(_OWN_METRICS_DIR):
            return
        time.sleep(0.05)
