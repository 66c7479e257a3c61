"""WSGI layer in front of the REST routes: path case-folding, latency, faults, request log.

Control routes (`/_sandbox/...`) pass straight through: they are never delayed, faulted or
logged. Faults (AZURE_DEVOPS.md §7 for rate limiting):

- `status`: answer `status` without doing anything (429 carries TF400733 + `Retry-After`);
- `lost_response`: do the operation for real, then answer 500 or drop the connection;
- `delay`: sleep `delay` seconds, then serve normally;
- `retry_after_on_200`: serve normally and add `Retry-After` (and X-RateLimit-*) headers.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from .auth import SIGN_IN_PAGE
from .state import Fault, SandboxState
from .wire import SandboxError, fmt_date, utcnow

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

FAULT_KINDS = ("status", "lost_response", "delay", "retry_after_on_200")

_API_LITERALS = frozenset(
    {
        "_apis",
        "wit",
        "workitems",
        "workitemtypes",
        "states",
        "fields",
        "comments",
        "wiql",
        "workitemsbatch",
        "recyclebin",
        "hooks",
        "subscriptions",
        "subscriptionsquery",
        "projects",
        "updates",
        "revisions",
        "versions",
        "resourceareas",
        "connectiondata",
    }
)


def normalize_path(path: str) -> str:
    """Lower-case the literal segments of a REST path: ADO routes are case-insensitive."""
    parts = path.split("/")
    if len(parts) > 1 and parts[1].lower() == "contoso":
        parts[1] = "contoso"
    seen_apis = False
    for index, part in enumerate(parts):
        lowered = part.lower()
        if lowered == "_apis":
            seen_apis = True
        if seen_apis and lowered in _API_LITERALS:
            parts[index] = lowered
    return "/".join(parts)


def new_fault(state: SandboxState, spec: dict[str, Any]) -> Fault:
    """Validate a fault description and register it; return the fault."""
    kind = spec.get("kind", "status")
    if kind not in FAULT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
    then = str(spec.get("then", "500"))
    if then not in ("500", "close"):
        raise ValueError("then must be '500' or 'close'")
    retry_after = spec.get("retry_after")
    with state.lock:
        fault = Fault(
            id=state.counters.take("fault"),
            kind=kind,
            method=(spec.get("method") or None),
            path_contains=str(spec.get("path_contains") or ""),
            times=int(spec.get("times", 1)),
            status=int(spec.get("status", 429 if kind == "status" else 500)),
            retry_after=None if retry_after is None else str(retry_after),
            delay=float(spec.get("delay", 0.0)),
            then=then,
            ratelimit_headers=bool(spec.get("ratelimit_headers", True)),
        )
        state.faults.append(fault)
    return fault


def _take_fault(state: SandboxState, method: str, path: str) -> Fault | None:
    with state.lock:
        for fault in state.faults:
            if fault.matches(method, path):
                fault.times -= 1
                return fault
    return None


def _ratelimit_headers(fault: Fault, retry_after: str | None) -> list[tuple[str, str]]:
    if not fault.ratelimit_headers:
        return []
    wait = int(retry_after) if retry_after and retry_after.isdigit() else 0
    return [
        ("X-RateLimit-Resource", "WorkItemTracking"),
        ("X-RateLimit-Delay", f"{fault.delay:.3f}"),
        ("X-RateLimit-Limit", "200"),
        ("X-RateLimit-Remaining", "0"),
        ("X-RateLimit-Reset", str(int(time.time()) + wait)),
    ]


def _error_body(status: int) -> tuple[str, bytes]:
    if status == 203:
        return "text/html; charset=utf-8", SIGN_IN_PAGE.encode()
    if status == 429:
        err = SandboxError(
            429,
            "TF400733: The request has been canceled: Request was blocked due to exceeding usage "
            "of resource 'WorkItemTrackingResource' in namespace 'User'.",
            "RequestBlockedException",
            type_name="Microsoft.TeamFoundation.Framework.Server.RequestBlockedException, "
            "Microsoft.TeamFoundation.Framework.Server",
        )
    elif status == 401:
        err = SandboxError(
            401,
            "TF400813: The user '' is not authorized to access this resource.",
            "UnauthorizedRequestException",
        )
    else:
        err = SandboxError(
            status,
            f"TF400898: An Internal Error Occurred. Activity Id: {fmt_date(utcnow())} "
            f"(sandbox fault, HTTP {status}).",
            "SandboxInjectedFaultException",
        )
    return "application/json; charset=utf-8", json.dumps(err.body()).encode()


class RestMiddleware:
    """Wrap the Flask app with latency, fault injection and the REST request log."""

    def __init__(self, app: WSGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        raw_path = environ.get("PATH_INFO", "")
        if raw_path.startswith("/_sandbox"):
            return self.app(environ, start_response)
        state = self.state
        path = normalize_path(raw_path)
        environ["PATH_INFO"] = path
        method = environ.get("REQUEST_METHOD", "GET")
        entry: dict[str, Any] = {
            "method": method,
            "path": raw_path,
            "query": dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)),
            "status": None,
            "at": fmt_date(utcnow()),
        }
        with state.lock:
            latency = state.latency
        if latency > 0:
            time.sleep(latency)
        fault = _take_fault(state, method, raw_path)
        if fault is not None:
            entry["fault"] = fault.kind
        if fault is not None and fault.kind == "status":
            content_type, body = _error_body(fault.status)
            headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
            retry_after = fault.retry_after or ("1" if fault.status == 429 else None)
            if retry_after:
                headers.append(("Retry-After", retry_after))
            if fault.status == 429:
                headers += _ratelimit_headers(fault, retry_after)
            return self._finish(entry, fault.status, headers, body, start_response)
        extra_headers: list[tuple[str, str]] = []
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.delay)
            extra_headers = _ratelimit_headers(fault, fault.retry_after)
            if fault.retry_after:
                extra_headers.append(("Retry-After", fault.retry_after))
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        chunks = self.app(environ, capture)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        status = int(str(captured["status"]).split()[0])
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers += extra_headers
        if fault is not None and fault.kind == "lost_response":
            entry["performed_status"] = status
            if fault.then == "close":
                entry["status"] = "closed"
                self._log(entry)
                sock = environ.get("werkzeug.socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                raise ConnectionAbortedError("sandbox fault: response lost")
            content_type, body = _error_body(500)
            return self._finish(entry, 500, [("Content-Type", content_type)], body, start_response)
        if fault is not None and fault.kind == "retry_after_on_200":
            retry_after = fault.retry_after or "1"
            headers.append(("Retry-After", retry_after))
            headers += _ratelimit_headers(fault, retry_after)
        return self._finish(entry, status, headers, body, start_response)

    def _finish(
        self,
        entry: dict[str, Any],
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        entry["status"] = status
        self._log(entry)
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(f"{status} {_reason(status)}", headers)
        return [body]

    def _log(self, entry: dict[str, Any]) -> None:
        with self.state.lock:
            self.state.requests.append(entry)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
