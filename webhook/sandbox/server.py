"""The `Sandbox`: a local Azure DevOps stand-in served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from flask import Flask, Response
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from . import auth, control, core, hooks, locations, pages, wit
from .delivery import DeliveryEngine
from .faults import RestMiddleware, new_fault
from .hooks import STATUSES, render_subscription
from .state import DEFAULT_ADMIN, DEFAULT_PERSON, SandboxState
from .wire import Identity, SandboxError
from .workitems import (
    add_comment,
    change_type,
    create_item,
    delete_item,
    restore_item,
    set_fields,
)


class _QuietHandler(WSGIRequestHandler):
    """Request handler that does not print a line per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Skip werkzeug's access log."""


def create_app(sandbox: Sandbox) -> Flask:
    """Wire the sandbox's blueprints, error handlers and REST middleware."""
    app = Flask(__name__)
    app.extensions["sandbox"] = sandbox
    app.extensions["sandbox_state"] = sandbox.state
    for blueprint in (auth.bp, locations.bp, core.bp, wit.bp, hooks.bp, control.bp, pages.bp):
        app.register_blueprint(blueprint)

    @app.errorhandler(SandboxError)
    def sandbox_error(err: SandboxError) -> Response:
        return err.response()

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        status = err.code or 500
        message = (
            "The controller for path was not found or does not implement IController."
            if status == 404
            else err.description or err.name
        )
        return SandboxError(status, message, err.name.replace(" ", "") + "Exception").response()

    app.wsgi_app = RestMiddleware(app.wsgi_app, sandbox.state)  # type: ignore[method-assign]
    return app


def _person(by: str | None, default: Identity) -> Identity:
    return Identity.parse(by) if by else default


class Sandbox:
    """A faithful local stand-in of the Azure DevOps REST API and service hooks.

    State is in memory and seeded with organization `contoso` and projects AppSec (Agile),
    Platform (Basic), Custom (inherited, `Security Finding`) and Strict (Agile Bug with a
    required `Custom.Team`). `start()` serves it on 127.0.0.1 from daemon threads.
    """

    def __init__(
        self,
        latency: float = 0.0,
        hook_retry_delays: Sequence[float] = (0.05, 0.1, 0.2),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        delivery_timeout: float = 10.0,
    ) -> None:
        self.state = SandboxState()
        self.state.latency = latency
        self._initial_latency = latency
        self._host = host
        self._port = port
        self.engine = DeliveryEngine(self.state, hook_retry_delays, timeout=delivery_timeout)
        self.state.emit = self.engine.publish
        self.app = create_app(self)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> Sandbox:
        """Serve on a free port (threaded) and start the hook sender; return self."""
        if self._server is not None:
            return self
        server = make_server(
            self._host, self._port, self.app, threaded=True, request_handler=_QuietHandler
        )
        self._server = server
        self.state.base_url = f"http://{self._host}:{server.port}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            name="sandbox-http",
            kwargs={"poll_interval": 0.1},
            daemon=True,
        )
        self._thread.start()
        self.engine.start()
        return self

    def stop(self) -> None:
        """Stop serving and sending; release the port."""
        self.engine.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- connection facts ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """Return the server base URL, e.g. `http://127.0.0.1:PORT` (also the Entra authority)."""
        return self.state.base_url

    @property
    def org_url(self) -> str:
        """Return the organization URL `{url}/contoso`."""
        return self.state.org_url

    @property
    def pat(self) -> str:
        """Return a valid personal access token."""
        return self.state.pat

    @property
    def sp(self) -> dict[str, str]:
        """Return a valid service principal: tenant_id, client_id, client_secret."""
        return {
            "tenant_id": self.state.tenant_id,
            "client_id": self.state.client_id,
            "client_secret": self.state.client_secret,
        }

    def describe(self) -> dict[str, Any]:
        """Return url, org_url, pat and sp (what `python -m webhook.sandbox` prints)."""
        return {"url": self.url, "org_url": self.org_url, "pat": self.pat, "sp": self.sp}

    # ---- knobs ---------------------------------------------------------------------------

    @property
    def latency(self) -> float:
        """Seconds added to every REST call (not control calls)."""
        return self.state.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        with self.state.lock:
            self.state.latency = max(0.0, float(seconds))

    @property
    def token_lifetime(self) -> int:
        """Lifetime in seconds of newly issued Entra tokens (default 3599)."""
        return self.state.token_lifetime

    @token_lifetime.setter
    def token_lifetime(self, seconds: int) -> None:
        self.state.token_lifetime = int(seconds)

    @property
    def projects_page_size(self) -> int:
        """Largest page `GET _apis/projects` returns (default 100)."""
        return self.state.projects_page_size

    @projects_page_size.setter
    def projects_page_size(self, size: int) -> None:
        self.state.projects_page_size = max(1, int(size))

    @property
    def wiql_max_results(self) -> int:
        """Result count above which WIQL fails with VS402337 (default 20,000)."""
        return self.state.wiql_max_results

    @wiql_max_results.setter
    def wiql_max_results(self, size: int) -> None:
        self.state.wiql_max_results = int(size)

    @property
    def hook_retry_delays(self) -> tuple[float, ...]:
        """Waits between re-sends of a notification answered 408/502/503/504."""
        return self.engine.retry_delays

    @hook_retry_delays.setter
    def hook_retry_delays(self, delays: Sequence[float]) -> None:
        self.engine.retry_delays = tuple(float(d) for d in delays)

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Set any of latency, token_lifetime, projects_page_size, wiql_max_results,
        hook_retry_delays; return the current values."""
        names = (
            "latency",
            "token_lifetime",
            "projects_page_size",
            "wiql_max_results",
            "hook_retry_delays",
        )
        for name, value in knobs.items():
            if name not in names:
                raise SandboxError(400, f"Unknown setting '{name}'.", "ControlError")
            setattr(self, name, value)
        return {name: getattr(self, name) for name in names}

    def reset(self) -> None:
        """Forget work items, subscriptions, faults, logs and queued deliveries; re-seed."""
        with self.state.lock:
            self.engine.clear()
            self.state.reset()
            self.state.latency = self._initial_latency

    # ---- faults --------------------------------------------------------------------------

    def add_fault(self, **spec: Any) -> dict[str, Any]:
        """Register a fault: kind, method, path_contains, times, status, retry_after, delay,
        then ("500"|"close"), ratelimit_headers. Return it as registered."""
        return new_fault(self.state, spec).describe()

    def clear_faults(self) -> None:
        """Remove every fault."""
        with self.state.lock:
            self.state.faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        """Return the registered faults with their remaining `times`."""
        with self.state.lock:
            return [f.describe() for f in self.state.faults]

    # ---- acting as a person --------------------------------------------------------------

    def create_item(
        self, project: str, type_name: str, fields: dict[str, Any], *, by: str | None = None
    ) -> dict[str, Any]:
        """Create a work item as a person (fires workitem.created)."""
        ops = [
            {"op": "add", "path": f"/fields/{ref}", "value": value} for ref, value in fields.items()
        ]
        with self.state.lock:
            proj = self.state.project(project)
            item = create_item(
                self.state,
                proj,
                self.state.work_item_type(proj, type_name),
                ops,
                _person(by, DEFAULT_PERSON),
            )
            return self._describe(item.id)

    def set_state(self, item_id: int, state: str, *, by: str | None = None) -> dict[str, Any]:
        """Move a work item to `state` as a person (fires workitem.updated)."""
        return self.update_fields(item_id, {"System.State": state}, by=by)

    def update_fields(
        self, item_id: int, fields: dict[str, Any], *, by: str | None = None
    ) -> dict[str, Any]:
        """Change fields as a person (fires workitem.updated, and .commented for History)."""
        with self.state.lock:
            set_fields(self.state, self.state.item(item_id), fields, _person(by, DEFAULT_PERSON))
            return self._describe(item_id)

    def change_type(
        self, item_id: int, type_name: str, *, state: str | None = None, by: str | None = None
    ) -> dict[str, Any]:
        """Change a work item's type (and state) as a person (fires workitem.updated)."""
        with self.state.lock:
            item = self.state.item(item_id)
            wit = self.state.work_item_type(item.project, type_name)
            change_type(self.state, item, wit, state, _person(by, DEFAULT_PERSON))
            return self._describe(item_id)

    def add_comment(
        self, item_id: int, text: str, *, by: str | None = None, fmt: str = "html"
    ) -> dict[str, Any]:
        """Comment as a person (fires workitem.commented and workitem.updated)."""
        if not text:
            raise SandboxError(400, "The comment text cannot be empty.", "ControlError")
        with self.state.lock:
            add_comment(
                self.state, self.state.item(item_id), text, fmt, _person(by, DEFAULT_PERSON)
            )
            return self._describe(item_id)

    def delete_item(self, item_id: int, *, by: str | None = None) -> dict[str, Any]:
        """Move a work item to the recycle bin (fires workitem.deleted)."""
        with self.state.lock:
            delete_item(self.state, self.state.item(item_id), _person(by, DEFAULT_ADMIN))
            return self._describe(item_id)

    def restore_item(self, item_id: int, *, by: str | None = None) -> dict[str, Any]:
        """Restore a work item from the recycle bin (fires workitem.restored)."""
        with self.state.lock:
            restore_item(
                self.state,
                self.state.item(item_id, include_deleted=True),
                _person(by, DEFAULT_ADMIN),
            )
            return self._describe(item_id)

    # ---- inspection ----------------------------------------------------------------------

    def _describe(self, item_id: int) -> dict[str, Any]:
        item = self.state.item(item_id, include_deleted=True)
        return {
            "id": item.id,
            "project": item.project.name,
            "project_id": item.project.id,
            "type": item.type.name,
            "rev": item.rev,
            "deleted": item.deleted,
            "fields": dict(item.fields),
            "relations": [dict(r) for r in item.relations],
            "comments": [
                {
                    "id": c.id,
                    "text": c.text,
                    "format": c.format,
                    "version": c.version,
                    "createdBy": c.created_by.as_string(),
                    "createdDate": c.created_date,
                    "isDeleted": c.is_deleted,
                }
                for c in item.comments
            ],
            "url": f"{self.org_url}/{item.project.id}/_apis/wit/workItems/{item.id}",
        }

    def work_item(self, item_id: int) -> dict[str, Any]:
        """Return one work item as stored (identities as `"Name <mail>"`)."""
        with self.state.lock:
            return self._describe(item_id)

    def work_items(self) -> list[dict[str, Any]]:
        """Return every work item, deleted ones included."""
        with self.state.lock:
            return [self._describe(i) for i in sorted(self.state.items)]

    def requests_log(self) -> list[dict[str, Any]]:
        """Return the REST calls served so far: method, path, query, status (and fault)."""
        with self.state.lock:
            return [dict(r) for r in self.state.requests]

    def clear_requests_log(self) -> None:
        """Empty the REST call log."""
        with self.state.lock:
            self.state.requests.clear()

    def deliveries(self) -> list[dict[str, Any]]:
        """Return every attempted or dropped delivery: subscription_id, event_type, event_id,
        notification_id, work_item_id, rev, status (HTTP code, "error" or "dropped")."""
        with self.state.lock:
            return [dict(d) for d in self.state.deliveries]

    def subscriptions(self) -> list[dict[str, Any]]:
        """Return the subscriptions as stored (the password is not masked here)."""
        with self.state.lock:
            out = []
            for sub in self.state.subscriptions.values():
                rendered = render_subscription(self.state, sub)
                rendered["consumerInputs"] = dict(sub.consumer_inputs)
                out.append(rendered)
            return out

    def set_subscription_status(self, sub_id: str, status: str) -> dict[str, Any]:
        """Force a subscription's status (e.g. `disabledBySystem`, `onProbation`)."""
        if status not in STATUSES:
            raise SandboxError(400, f"status must be one of {', '.join(STATUSES)}", "ControlError")
        with self.state.lock:
            sub = self.state.subscription(sub_id)
            sub.status = status
            return render_subscription(self.state, sub)

    def delete_subscription(self, sub_id: str) -> None:
        """Delete a subscription as an administrator would in the web UI."""
        with self.state.lock:
            self.state.subscriptions.pop(self.state.subscription(sub_id).id, None)

    # ---- deliveries ----------------------------------------------------------------------

    def hold_deliveries(self) -> None:
        """Queue hook deliveries without sending them until `release_deliveries`."""
        self.engine.hold()

    def release_deliveries(self, order: str = "fifo") -> int:
        """Send held deliveries in `fifo` or `reverse` order; return how many were queued."""
        return self.engine.release(order)

    def duplicate_next_delivery(self) -> None:
        """Send the next delivery twice, with the same event id."""
        self.engine.duplicate()

    def wait_deliveries_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no delivery is queued or in flight; False on timeout."""
        return self.engine.wait_idle(timeout)
