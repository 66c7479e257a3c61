"""The job handlers against a recording fake Azure DevOps (tests.fakes): fast, no HTTP.

Each test records real work through the SQLite storage (a scanner delivery, a resolve), runs the
worker's handlers over a RecordingAdo and checks what Azure DevOps was asked and what the risk
shows. The clock is injected (tests.fake_clock), so retries become due when the test says.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_services
from tests.fake_clock import FakeClock
from tests.fakes import BUG, FakeGateway, RecordingAdo, ResponseLost, rule_error
from webhook.domain.jobs import JobKind
from webhook.domain.models import Risk, WorkItemState, WorkItemTypeInfo
from webhook.domain.signatures import parse_headers, verify
from webhook.jobs import RetryLater
from webhook.services import Services
from webhook.storage.sqlite.storage import SqliteStorage
from webhook.subscriptions import Subscriptions
from webhook.sync import SyncHandlers
from webhook.worker import RetryPolicy, Worker


@pytest.fixture
def services(tmp_path: Path, fake_clock: FakeClock) -> Services:
    return make_services(tmp_path)


@pytest.fixture
def ado() -> RecordingAdo:
    return RecordingAdo()


@pytest.fixture
def gateway(ado: RecordingAdo) -> FakeGateway:
    return FakeGateway(ado)


@pytest.fixture
def worker(services: Services, gateway: FakeGateway) -> Worker:
    sync = SyncHandlers(services.store, gateway, services.callbacks)  # type: ignore[arg-type]
    return Worker(
        store=services.store,
        handlers=sync.handlers(),
        policy=RetryPolicy(base=1.0, cap=1.0),
    )


def drain(worker: Worker, fake_clock: FakeClock, rounds: int = 10) -> None:
    """Run every job, letting the retry delays pass, until nothing is runnable."""
    for _ in range(rounds):
        while worker.run_once():
            pass
        fake_clock.advance(60)
        if not worker.run_once():
            return


def jobs(store: SqliteStorage, kind: str | None = None) -> list[dict[str, Any]]:
    rows = store.db.conn.execute("SELECT * FROM jobs ORDER BY id").fetchall()
    return [dict(r) for r in rows if kind is None or r["kind"] == kind]


def setup_risk(
    store: SqliteStorage, *, close_on_resolve: bool = False, callback_url: str | None = None
) -> tuple[int, str]:
    """A high risk under an auto-create template; returns (risk id, source secret)."""
    conn_id = store.create_connection(
        "org", "https://dev.azure.com/example", {"type": "pat", "token": "p" * 20}
    ).id
    store.create_template(
        {
            "name": "bugs",
            "connection_id": conn_id,
            "project": "AppSec",
            "work_item_type": "Bug",
            "auto_create": True,
            "severity_threshold": "low",
            "close_on_resolve": close_on_resolve,
        }
    )
    _, secret = store.create_source("sast", callback_url)
    report(store, "msg-1", "high")
    (risk_id,) = [r[0] for r in store.db.conn.execute("SELECT id FROM risks")]
    return int(risk_id), secret


def report(store: SqliteStorage, message: str, severity: str, status: str = "open") -> None:
    source = store.find_source("sast")
    assert source is not None
    store.record_risks(
        source, message, [Risk(None, "sast", "R-1", "SQL injection", severity, status=status)]
    )


# ---- create ------------------------------------------------------------------------------


def test_create_whose_answer_was_lost_is_adopted_on_retry(
    services: Services, ado: RecordingAdo, worker: Worker, fake_clock: FakeClock
) -> None:
    risk_id, _ = setup_risk(services.store)
    ado.fail["create_work_item"] = [ResponseLost()]

    assert worker.run_once()
    (job,) = jobs(services.store, JobKind.CREATE_WORK_ITEM)
    assert job["state"] == "pending" and "unavailable" in job["last_error"]
    assert len(ado.items) == 1  # Azure DevOps made the item; we never heard back
    drain(worker, fake_clock)

    link = services.store.work_item_for(risk_id)
    assert link is not None and link.ado_id == next(iter(ado.items))
    assert len(ado.called("create_work_item")) == 1  # found by its tag, not created again
    assert len(ado.called("find_by_tag")) == 1
    assert jobs(services.store, JobKind.CREATE_WORK_ITEM)[0]["state"] == "done"


def test_create_refused_by_a_rule_fails_with_the_reason(
    services: Services, ado: RecordingAdo, worker: Worker, fake_clock: FakeClock
) -> None:
    risk_id, _ = setup_risk(services.store)
    ado.fail["create_work_item"] = [rule_error("Microsoft.VSTS.Common.Severity")]
    drain(worker, fake_clock)
    (job,) = jobs(services.store, JobKind.CREATE_WORK_ITEM)
    assert job["state"] == "failed"
    assert "Microsoft.VSTS.Common.Severity" in job["last_error"]
    assert services.store.work_item_for(risk_id) is None and not ado.items


# ---- updates -----------------------------------------------------------------------------


def linked_risk(services: Services, worker: Worker, fake_clock: FakeClock, **kw: Any) -> int:
    risk_id, _ = setup_risk(services.store, **kw)
    drain(worker, fake_clock)
    assert services.store.work_item_for(risk_id) is not None
    return risk_id


def test_severity_comment_is_posted_once_across_a_retry(
    services: Services, ado: RecordingAdo, worker: Worker, fake_clock: FakeClock
) -> None:
    risk_id = linked_risk(services, worker, fake_clock)
    ado.fail["update_work_item"] = [ResponseLost()]  # the update lands, its answer is lost
    report(services.store, "msg-2", "critical")
    drain(worker, fake_clock)

    (job,) = jobs(services.store, JobKind.SEVERITY_CHANGED)
    assert job["state"] == "done" and job["attempts"] == 2
    item_id = services.store.work_item_for(risk_id).ado_id  # type: ignore[union-attr]
    comments = ado.comments[item_id]
    assert len(comments) == 1 and "critical" in comments[0]["text"].lower()
    assert len(ado.called("update_work_item")) == 1  # the retry saw its comment and stopped


@pytest.mark.parametrize(("close", "state"), [(True, "Resolved"), (False, "New")])
def test_resolve_closes_the_item_only_when_the_template_says_so(
    services: Services,
    ado: RecordingAdo,
    worker: Worker,
    fake_clock: FakeClock,
    close: bool,
    state: str,
) -> None:
    risk_id = linked_risk(services, worker, fake_clock, close_on_resolve=close)
    report(services.store, "msg-2", "high", status="resolved")
    drain(worker, fake_clock)

    item = ado.items[services.store.work_item_for(risk_id).ado_id]  # type: ignore[union-attr]
    assert item["fields"]["System.State"] == state
    assert len(ado.comments[item["id"]]) == 1  # the scanner_resolved comment, either way
    assert jobs(services.store, JobKind.SCANNER_RESOLVED)[0]["state"] == "done"


def test_a_state_of_unknown_category_waits_until_azure_devops_lists_it(
    services: Services,
    ado: RecordingAdo,
    gateway: FakeGateway,
    worker: Worker,
    fake_clock: FakeClock,
) -> None:
    risk_id = linked_risk(services, worker, fake_clock, close_on_resolve=True)
    item = ado.items[services.store.work_item_for(risk_id).ado_id]  # type: ignore[union-attr]
    item["fields"]["System.State"] = "Triage"  # a state the cached type does not list
    report(services.store, "msg-2", "high", status="resolved")
    updates = len(ado.called("update_work_item"))

    assert worker.run_once()
    (job,) = jobs(services.store, JobKind.SCANNER_RESOLVED)
    assert job["state"] == "pending" and "no known category" in job["last_error"]
    assert len(ado.called("update_work_item")) == updates  # nothing written on a guess

    gateway.info = WorkItemTypeInfo(
        name="Bug",
        states=(*BUG.states, WorkItemState("Triage", "Proposed")),
        field_names=BUG.field_names,
        required_fields=BUG.required_fields,
    )
    drain(worker, fake_clock)
    assert item["fields"]["System.State"] == "Resolved"
    assert jobs(services.store, JobKind.SCANNER_RESOLVED)[0]["state"] == "done"


def test_retry_later_is_the_shared_outcome_type() -> None:
    """Handlers and the worker agree on one RetryLater (webhook.jobs), not two classes."""
    from webhook import callbacks, gateway, sync, worker

    assert worker.RetryLater is RetryLater
    assert sync.RetryLater is callbacks.RetryLater is gateway.RetryLater is RetryLater


# ---- subscriptions -----------------------------------------------------------------------


def test_a_missing_subscription_is_recreated_and_reconciliation_requested(
    services: Services, ado: RecordingAdo, gateway: FakeGateway
) -> None:
    store = services.store
    conn_id = store.create_connection(
        "org", "https://dev.azure.com/example", {"type": "pat", "token": "p" * 20}
    ).id
    subs = Subscriptions(store, gateway, "https://hooks.example")  # type: ignore[arg-type]
    setup = subs.ensure(conn_id, "AppSec")
    assert setup.created_any and len(ado.subscriptions) == 3
    gone = next(h for h in setup.hooks if h.event_type == "workitem.deleted")
    assert gone.subscription_id is not None
    del ado.subscriptions[gone.subscription_id]  # someone deleted it in Azure DevOps
    ado.calls.clear()
    assert store.start_periodic("reconcile", 3600.0, "w", 60.0)  # reconciliation just ran
    store.finish_periodic("reconcile", "w", True, {})
    assert not store.start_periodic("reconcile", 3600.0, "w", 60.0)

    result = subs.check_all()

    assert result["healed"] == 1 and result["checked"] == 3 and result["errors"] == 0
    (create,) = ado.called("create_subscription")
    body = create.args[0]
    assert body["eventType"] == "workitem.deleted"
    assert body["consumerInputs"]["url"] == "https://hooks.example/hooks/ado"
    assert body["publisherInputs"]["projectId"] == "id-AppSec"
    healed = {h.event_type: h for h in store.hooks_for(conn_id, "AppSec")}
    assert healed["workitem.deleted"].subscription_id in ado.subscriptions
    assert len(ado.subscriptions) == 3
    # Events were lost while the hook was gone: reconciliation is due now, not in an hour.
    assert store.start_periodic("reconcile", 3600.0, "w", 60.0)


# ---- callbacks ---------------------------------------------------------------------------


class _Scanner(BaseHTTPRequestHandler):
    statuses: list[int] = []
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append((dict(self.headers.items()), body))
        status = type(self).statuses.pop(0) if type(self).statuses else 204
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def scanner() -> Iterator[type[_Scanner]]:
    handler = type("Scanner", (_Scanner,), {"statuses": [], "received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/callback"  # type: ignore[attr-defined]
    try:
        yield handler  # type: ignore[misc]
    finally:
        server.shutdown()
        server.server_close()


def test_callback_is_signed_and_retried_until_acknowledged(
    services: Services,
    worker: Worker,
    fake_clock: FakeClock,
    scanner: type[_Scanner],
) -> None:
    risk_id = linked_risk(
        services,
        worker,
        fake_clock,
        callback_url=scanner.url,  # type: ignore[attr-defined]
    )
    scanner.statuses = [503]
    report(services.store, "msg-2", "high", status="resolved")
    drain(worker, fake_clock)

    assert len(scanner.received) == 2  # the 503, then the acknowledged retry
    (first_headers, _), (headers, body) = scanner.received
    assert headers["webhook-id"] == first_headers["webhook-id"]  # same id: scanner dedupes
    assert body == (  # the wire format, byte for byte (key order included)
        b'{"type":"risk.resolution_changed","risk":{"id":1,"source":"sast","key":"R-1",'
        b'"status":"resolved","resolution":{"state":"resolved","reason":null,"by":"scanner:sast",'
        b'"at":"2027-01-15T08:01:00.000Z"},"work_item":{"id":101,"url":null,"project":"AppSec",'
        b'"type":"Bug","state":"New","deleted":false}}}'
    )
    event = json.loads(body)
    assert event["type"] == "risk.resolution_changed"
    assert event["risk"]["id"] == risk_id and event["risk"]["status"] == "resolved"
    source = services.store.find_source("sast", fresh=True)
    assert source is not None
    signed = parse_headers(
        headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"]
    )
    verify(signed, body, source.secrets, now=float(headers["webhook-timestamp"]))
    (job,) = jobs(services.store, JobKind.CALLBACK)
    assert job["state"] == "done" and job["attempts"] == 2
