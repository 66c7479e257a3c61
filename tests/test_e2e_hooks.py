"""Service hooks end to end: the stand-in really delivers; status flows both ways."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import risk
from tests.e2e import Rig, rig, wait_for
from tests.servers import ADMIN_TOKEN
from webhook.domain.signatures import parse_headers, verify

# Once per storage engine (SPEC 6): SQLite, and PostgreSQL when a server is reachable.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("engine")]


def setup_loop(r: Rig, project: str, work_item_type: str, **template: Any) -> int:
    conn = r.connect()
    r.template(
        name=f"t-{project}",
        connection_id=conn,
        project=project,
        work_item_type=work_item_type,
        auto_create=True,
        severity_threshold="low",
        **template,
    )
    resp = r.admin("POST", "/admin/hooks", json={"connection_id": conn, "project": project})
    assert resp.status_code == 201, resp.text
    subs = resp.json()["subscriptions"]
    assert sorted(s["event_type"] for s in subs) == [
        "workitem.deleted",
        "workitem.restored",
        "workitem.updated",
    ]
    again = r.admin("POST", "/admin/hooks", json={"connection_id": conn, "project": project})
    assert again.status_code == 200
    assert {s["subscription_id"] for s in again.json()["subscriptions"]} == {
        s["subscription_id"] for s in subs
    }
    assert len(r.sb.subscriptions()) == 3
    return conn


def risk_of(r: Rig, key: str) -> dict[str, Any]:
    return next(x for x in r.risks() if x["key"] == key)


def linked(r: Rig, key: str) -> dict[str, Any]:
    return wait_for(lambda: risk_of(r, key)["work_item"])


def settled(r: Rig) -> None:
    r.sb.wait_deliveries_idle(10)
    r.settle()


def linked_loop(
    r: Rig, project: str = "AppSec", work_item_type: str = "Bug", **template: Any
) -> dict[str, Any]:
    """`setup_loop`, a `sast` source, risk R-1 reported and linked, all settled; its item."""
    setup_loop(r, project, work_item_type, **template)
    r.source()
    r.send(risk("R-1"))
    wi = linked(r, "R-1")
    settled(r)
    return wi


@pytest.mark.parametrize(
    ("project", "wit", "done", "reopen", "removed"),
    [
        ("AppSec", "Bug", "Closed", "Active", None),
        ("Platform", "Issue", "Done", "Doing", None),
        ("Custom", "Security Finding", "Verified", "Fixing", "Accepted Risk"),
    ],
)
def test_status_by_category_on_each_process(tmp_path, project, wit, done, reopen, removed) -> None:
    with rig(tmp_path) as r:
        setup_loop(r, project, wit)
        r.source()
        r.send(risk("R-1"))
        wi = linked(r, "R-1")
        closed = r.sb.set_state(wi["id"], done, by="Dana Developer <dana@contoso.com>")
        got = wait_for(lambda: (x := risk_of(r, "R-1"))["status"] == "resolved" and x)
        assert got["resolution"]["state"] == done
        # SPEC 3.3: the resolution says why (System.Reason), as Azure DevOps recorded it.
        assert got["resolution"]["reason"] == closed["fields"]["System.Reason"]
        assert got["resolution"]["reason"]
        assert "Dana Developer" in got["resolution"]["by"]
        assert got["work_item"]["state"] == done
        r.sb.set_state(wi["id"], reopen)
        wait_for(lambda: risk_of(r, "R-1")["status"] == "open")
        assert risk_of(r, "R-1")["resolution"] is None
        if removed:
            r.sb.set_state(wi["id"], removed)
            wait_for(lambda: risk_of(r, "R-1")["status"] == "removed")


def test_duplicates_order_delete_restore_and_no_echo_loops(tmp_path) -> None:
    with rig(tmp_path) as r:
        wi = linked_loop(r, close_on_resolve=True)
        # Duplicate delivery of the same event changes nothing twice.
        r.sb.duplicate_next_delivery()
        r.sb.set_state(wi["id"], "Resolved")
        wait_for(lambda: risk_of(r, "R-1")["status"] == "resolved")
        settled(r)
        detail = r.admin("GET", f"/admin/risks/{risk_of(r, 'R-1')['id']}").json()
        assert [h["event"] for h in detail["history"]].count("status_changed") == 1
        # Two deliveries released in reverse order: the older revision must not win.
        r.sb.hold_deliveries()
        r.sb.set_state(wi["id"], "Active")
        r.sb.set_state(wi["id"], "Closed")
        r.sb.release_deliveries(order="reverse")
        settled(r)
        assert risk_of(r, "R-1")["status"] == "resolved"
        assert risk_of(r, "R-1")["work_item"]["state"] == "Closed"
        # Scanner regression reopens the item with a comment; the echo creates no loop.
        r.send(risk("R-1", status="resolved"))
        settled(r)
        r.send(risk("R-1"))
        settled(r)
        item = r.sb.work_item(wi["id"])
        assert item["fields"]["System.State"] in ("New", "Active")
        assert risk_of(r, "R-1")["status"] == "open"
        comments_before = len(item["comments"])
        settled(r)
        assert len(r.sb.work_item(wi["id"])["comments"]) == comments_before
        # A person resolves; the scanner keeps reporting open: not reopened.
        r.sb.set_state(wi["id"], "Resolved")
        wait_for(lambda: risk_of(r, "R-1")["status"] == "resolved")
        r.send(risk("R-1", severity="high", name="still here"))
        settled(r)
        assert r.sb.work_item(wi["id"])["fields"]["System.State"] == "Resolved"
        assert risk_of(r, "R-1")["status"] == "resolved"
        # Delete keeps the link flagged; restore clears the flag.
        r.sb.delete_item(wi["id"])
        wait_for(lambda: risk_of(r, "R-1")["work_item"]["deleted"] is True)
        settled(r)
        assert len(r.items()) == 0  # not recreated
        r.sb.restore_item(wi["id"])
        wait_for(lambda: risk_of(r, "R-1")["work_item"]["deleted"] is False)


def test_scanner_resolved_closes_when_template_says_so(tmp_path) -> None:
    with rig(tmp_path) as r:
        wi = linked_loop(r, "Platform", "Issue", close_on_resolve=True)
        r.send(risk("R-1", status="resolved"))
        wait_for(lambda: r.sb.work_item(wi["id"])["fields"]["System.State"] == "Done")
        settled(r)
        got = risk_of(r, "R-1")
        assert got["status"] == "resolved" and got["resolution"]["by"] == "scanner:sast"
        assert any("no longer reports" in c["text"] for c in r.sb.work_item(wi["id"])["comments"])


def test_lost_deliveries_are_repaired_by_reconciliation(tmp_path) -> None:
    with rig(tmp_path, WEBHOOK_RECONCILE_SECONDS="1") as r:
        wi = linked_loop(r)
        for sub in r.sb.subscriptions():
            r.sb.set_subscription_status(sub["id"], "disabledByUser")
        r.sb.set_state(wi["id"], "Closed")
        r.sb.wait_deliveries_idle(5)
        # The state change was raised while the subscriptions were off: Azure DevOps dropped it.
        assert any(d["status"] == "dropped" for d in r.sb.deliveries()), r.sb.deliveries()
        got = wait_for(lambda: (x := risk_of(r, "R-1"))["status"] == "resolved" and x, timeout=30)
        assert got["work_item"]["state"] == "Closed"
        detail = r.admin("GET", f"/admin/risks/{got['id']}").json()
        assert any(h["detail"].get("via") == "reconcile" for h in detail["history"])
        assert "adowh_reconcile_last_run_timestamp_seconds" in r.admin("GET", "/metrics").text


def test_deleted_subscription_is_recreated_by_the_check(tmp_path) -> None:
    with rig(tmp_path, WEBHOOK_HOOK_CHECK_SECONDS="1") as r:
        setup_loop(r, "AppSec", "Bug")
        victim = next(s for s in r.sb.subscriptions() if s["eventType"] == "workitem.updated")
        r.sb.delete_subscription(victim["id"])
        wait_for(
            lambda: (
                len(r.sb.subscriptions()) == 3
                and victim["id"] not in {s["id"] for s in r.sb.subscriptions()}
            ),
            timeout=30,
        )

        def updated_hook() -> dict[str, Any]:
            hooks = r.admin("GET", "/admin/hooks").json()["items"]
            return next(h for h in hooks if h["event_type"] == "workitem.updated")

        # The new subscription shows in Azure DevOps a moment before the heal is recorded here.
        healed = wait_for(lambda: (h := updated_hook())["heal_count"] >= 1 and h, timeout=10)
        assert healed["status"] == "enabled"
        assert "adowh_subscriptions_healed_total" in r.admin("GET", "/metrics").text
        # Deliveries on the recreated subscription authenticate with its fresh credentials.
        r.source()
        r.send(risk("R-1"))
        wi = linked(r, "R-1")
        r.sb.set_state(wi["id"], "Closed")
        wait_for(lambda: risk_of(r, "R-1")["status"] == "resolved")


def test_hooks_without_public_url_is_409(tmp_path) -> None:
    with rig(tmp_path, WEBHOOK_PUBLIC_URL="") as r:
        conn = r.connect()
        resp = r.admin("POST", "/admin/hooks", json={"connection_id": conn, "project": "AppSec"})
        assert resp.status_code == 409
        assert "WEBHOOK_PUBLIC_URL" in resp.json()["error"]["message"]


def test_receiver_auth_and_tolerance(tmp_path) -> None:
    import requests

    with rig(tmp_path) as r:
        setup_loop(r, "AppSec", "Bug")
        anon = requests.post(r.base + "/hooks/ado", json={"id": "x"}, timeout=10)
        assert anon.status_code == 401
        wrong = requests.post(
            r.base + "/hooks/ado", json={"id": "x"}, auth=("adowh-x", "nope"), timeout=10
        )
        assert wrong.status_code == 401
        sub = r.sb.subscriptions()[0]["consumerInputs"]
        auth = (sub["basicAuthUsername"], sub["basicAuthPassword"])
        for body in (
            {"id": "e1", "eventType": "git.push", "resource": {}},
            {
                "id": "e2",
                "eventType": "workitem.updated",
                "resource": {"workItemId": "999", "rev": "2", "extra": {"x": 1}},
                "unknownTop": True,
            },
            {"nonsense": True},
        ):
            resp = requests.post(r.base + "/hooks/ado", json=body, auth=auth, timeout=10)
            assert 200 <= resp.status_code < 300, resp.text
        assert (
            requests.post(
                r.base + "/hooks/ado", data=b"x" * (2 * 1024 * 1024 - 100), auth=auth, timeout=10
            ).status_code
            < 300
        )


class CallbackReceiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []
    fail_first = 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if CallbackReceiver.fail_first > 0:
            CallbackReceiver.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        CallbackReceiver.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def callback_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), CallbackReceiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cb"
    finally:
        server.shutdown()
        server.server_close()


def test_callback_to_scanner_is_signed_and_retried(tmp_path) -> None:
    CallbackReceiver.received = []
    CallbackReceiver.fail_first = 1
    with callback_server() as url, rig(tmp_path, WEBHOOK_LOG_LEVEL="DEBUG") as r:
        setup_loop(r, "AppSec", "Bug")
        r.source(callback_url=url)
        r.send(risk("R-1"))
        wi = linked(r, "R-1")
        r.sb.set_state(wi["id"], "Closed")
        wait_for(lambda: CallbackReceiver.received, timeout=30)
        headers, body = CallbackReceiver.received[0]
        lower = {k.lower(): v for k, v in headers.items()}
        verify(
            parse_headers(
                lower["webhook-id"], lower["webhook-timestamp"], lower["webhook-signature"]
            ),
            body,
            [r.secret],
            now=int(lower["webhook-timestamp"]),
        )
        event = json.loads(body)
        assert event["type"] == "risk.resolution_changed"
        assert event["risk"]["key"] == "R-1" and event["risk"]["status"] == "resolved"
        assert event["risk"]["work_item"]["id"] == wi["id"]
        # After the full scenario, no secret reached any log line.
        hook_passwords = [s["consumerInputs"]["basicAuthPassword"] for s in r.sb.subscriptions()]
        r.sb.wait_deliveries_idle(5)
    logs = "".join(p.read_text() for p in tmp_path.glob("serve-*.log"))
    assert "job_id" in logs or "request_id" in logs  # JSON lines with ids were written
    for secret in [
        r.sb.pat,
        r.secret,
        r.secret.removeprefix("whsec_"),
        ADMIN_TOKEN,
        *hook_passwords,
    ]:
        assert secret not in logs
    assert "Authorization" not in logs or "[REDACTED]" in logs


def history_of(r: Rig, key: str) -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = r.admin("GET", f"/admin/risks/{risk_of(r, key)['id']}").json()[
        "history"
    ]
    return history


def test_issue_delete_and_restore_released_newest_first(tmp_path) -> None:
    """Issue 9.2: hold deliveries, delete, restore, release newest first; then a severity
    change. Deletion is credited to whoever deleted the item, not to its last editor."""
    with rig(tmp_path) as r:
        wi = linked_loop(r)
        r.sb.set_state(wi["id"], "Active", by="Dana Developer <dana@contoso.com>")
        settled(r)
        r.sb.hold_deliveries()
        r.sb.delete_item(wi["id"], by="Erin Eraser <erin@contoso.com>")
        r.sb.restore_item(wi["id"], by="Sam Admin <sam@contoso.com>")
        r.sb.release_deliveries(order="reverse")
        settled(r)
        assert risk_of(r, "R-1")["work_item"]["deleted"] is False
        r.send(risk("R-1", severity="critical"))
        wait_for(lambda: any("Critical" in c["text"] for c in r.sb.work_item(wi["id"])["comments"]))
        r.sb.delete_item(wi["id"], by="Erin Eraser <erin@contoso.com>")
        wait_for(lambda: risk_of(r, "R-1")["work_item"]["deleted"] is True)
        deleted = [h["detail"] for h in history_of(r, "R-1") if h["event"] == "work_item_deleted"]
        assert deleted[-1]["by"] == "Erin Eraser <erin@contoso.com>"


def test_issue_bug_changed_to_task_and_removed(tmp_path) -> None:
    """Issue 9.3: a linked Bug becomes a Task in `Removed` (a state Bugs do not have)."""
    with rig(tmp_path) as r:
        wi = linked_loop(r)
        r.sb.change_type(wi["id"], "Task", state="Removed", by="Dana Developer <dana@contoso.com>")
        got = wait_for(lambda: (x := risk_of(r, "R-1"))["status"] == "removed" and x)
        assert got["work_item"]["type"] == "Task"
        settled(r)  # nothing stays pending
        r.sb.set_state(wi["id"], "Active")
        wait_for(lambda: risk_of(r, "R-1")["status"] == "open")
        r.send(risk("R-1", severity="critical"))
        wait_for(lambda: any("Critical" in c["text"] for c in r.sb.work_item(wi["id"])["comments"]))
        assert r.sb.work_item(wi["id"])["fields"]["Microsoft.VSTS.Common.Priority"] == 1
