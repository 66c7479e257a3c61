"""ado-webhook: security findings and Azure DevOps work items, kept in sync both ways by push."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, g, request
from werkzeug.routing import IntegerConverter, Map
from werkzeug.wrappers import Response

__version__ = "0.1.0"


def create_app(settings: Any = None) -> Flask:
    """Build the Flask app: settings, storage, blueprints, error handlers — wiring only."""
    from webhook import metrics
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
    from webhook.errors import register_error_handlers
    from webhook.logs import bind, configure_logging, unbind
    from webhook.services import Services
    from webhook.settings import Settings

    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    services = Services.from_settings(settings)
    services.store.db.migrate()
    app.extensions["adowh"] = services
    register_error_handlers(app)
    from webhook import ui

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
            metrics.HTTP_REQUEST_SECONDS.labels(route).observe(time.monotonic() - started)
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
