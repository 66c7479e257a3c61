"""Process wiring: the Flask app and the worker, each over the Services built from Settings.

Together with :mod:`webhook.services` (which builds the Services) this is the composition root:
the only modules that import the HTTP blueprints, the handlers and the worker together. The
process entry points (:mod:`webhook.cli`, ``webhook.create_app`` for gunicorn's
``webhook:create_app()``) import this module only when a command runs, because
``PROMETHEUS_MULTIPROC_DIR`` must be set before prometheus_client is first imported.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from flask import Flask, g, request
from flask.typing import ResponseReturnValue
from werkzeug.routing import IntegerConverter, Map
from werkzeug.wrappers import Response

from webhook import ui
from webhook.api import (
    admin_connections,
    admin_hooks,
    admin_jobs,
    admin_risks,
    admin_sources,
    admin_templates,
    ado_hooks,
    health,
    scanner,
)
from webhook.api.requests import request_id
from webhook.errors import ApiError, api_error_json, register_error_handlers
from webhook.gateway import OrganizationNotAllowed
from webhook.gunicorn_app import tune_thread_switching
from webhook.jobs import BatchHandler, Handler, PeriodicTask
from webhook.logs import bind, configure_logging, unbind
from webhook.services import Services
from webhook.settings import Settings, SettingsError
from webhook.storage.interfaces import Storage
from webhook.sync import periodic_tasks
from webhook.worker import RetryPolicy, Worker


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """The Flask app over `services` (default: built from `settings`, default: from the
    environment, and the database migrated): blueprints, error handlers, request hooks.

    The Services are kept on ``app.extensions["adowh"]`` for the blueprints
    (webhook.services.get_services). Raises SettingsError for a bad configuration.
    """
    if services is None:
        settings = settings or Settings.from_env()
        services = Services.from_settings(settings)
        services.store.migrate()
    settings = services.settings
    configure_logging(settings.log_level)
    app = Flask("webhook")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["adowh"] = services
    register_error_handlers(app)

    @app.errorhandler(OrganizationNotAllowed)
    def _organization_not_allowed(exc: OrganizationNotAllowed) -> ResponseReturnValue:
        # A stored connection whose host WEBHOOK_ALLOWED_ORG_HOSTS no longer lists: 409 on
        # any route that would call it (nothing was sent), never a 500.
        error = ApiError(exc.message, code="organization_not_allowed", status=409)
        return Response(api_error_json(error), error.status, mimetype="application/json")

    ui.init_app(app, settings)
    app.url_map.converters["int"] = _BoundedId
    for module in (
        scanner,
        admin_sources,
        admin_risks,
        admin_jobs,
        admin_connections,
        admin_templates,
        admin_hooks,
        ado_hooks,
        health,
    ):
        app.register_blueprint(module.bp)
    request_seconds = services.metrics.HTTP_REQUEST_SECONDS

    @app.before_request
    def _start() -> None:
        g.started = time.monotonic()
        g.request_id = request_id(request.headers.get("X-Request-Id"))
        g.log_token = bind(request_id=g.request_id)
        if request.path == "/hooks/ado":
            request.max_content_length = settings.hook_max_body_bytes

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        # Duration by route template (a bounded label). The scanner webhook is left out: its
        # common shape skips Flask anyway, and adowh_scanner_requests_total counts it.
        route = request.url_rule.rule if request.url_rule else "unmatched"
        started = g.get("started")
        if started is not None and not route.startswith(scanner.PATH_PREFIX):
            request_seconds.labels(route).observe(time.monotonic() - started)
        return response

    @app.teardown_request
    def _unbind(_: BaseException | None) -> None:
        token = g.pop("log_token", None)
        if token is not None:
            unbind(token)

    # The scanner route's common shape skips Flask's request machinery (see api/scanner.py).
    app.wsgi_app = scanner.FastScannerRoute(  # type: ignore[method-assign]
        app.wsgi_app, services, settings.max_body_bytes
    )
    return app


class _BoundedId(IntegerConverter):
    """Path ids beyond SQLite's 64-bit integers are simply not found (404), never a 500."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(url_map, *args, **kwargs)


def build_handlers(services: Services) -> dict[str, Handler]:
    """Every job handler the worker knows: job kind → handler."""
    return services.sync.handlers()


def build_batch_handlers(services: Services) -> dict[str, BatchHandler]:
    """Job kinds the worker performs many at a time (database-only work, one transaction)."""
    return services.sync.batch_handlers()


def build_periodic_tasks(services: Services) -> list[PeriodicTask]:
    """Housekeeping that runs on timers, one worker at a time."""
    return periodic_tasks(services.settings, services.store, services.sync, services.subscriptions)


def build_worker(services: Services) -> Worker:
    """The worker over `services`: every handler, the periodic tasks, the retry policy."""
    return Worker(
        store=services.store,
        handlers=build_handlers(services),
        batch_handlers=build_batch_handlers(services),
        periodic=build_periodic_tasks(services),
        policy=RetryPolicy.from_settings(services.settings),
    )


def check_secret_key(store: Storage, label: str) -> None:
    """Refuse to start when WEBHOOK_SECRET_KEY cannot decrypt what the (migrated) database at
    `label` holds: the installation's tracking key, made with the first key (e.g. a database
    moved with copy-db and started with another key); otherwise the first use of any stored
    secret would fail. Raises SettingsError naming the variable and the database."""
    try:
        store.operations.tracking_key()
    except ValueError:
        raise SettingsError(
            f"WEBHOOK_SECRET_KEY does not decrypt the secrets stored in {label}:"
            " start with the key(s) that database was written with (a new key goes first,"
            " the old ones after it, comma-separated)"
        ) from None


def run_worker(settings: Settings, stop: threading.Event, *, threads: int = 8) -> None:
    """Build the Services and the worker once, migrate the database, check the secret key
    (check_secret_key), run until `stop`."""
    tune_thread_switching()
    services = Services.from_settings(settings)
    services.store.migrate()
    check_secret_key(services.store, settings.storage_label)
    build_worker(services).run(stop, threads=threads)
