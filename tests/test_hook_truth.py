"""Azure DevOps events applied from Azure DevOps' truth; one odd item never stops the rest.

In one process (tests/inproc.py): the stand-in delivers its hooks to the app for real, and the
worker runs when the test says so.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import risk
from tests.inproc import Loop, loop

DANA = "Dana Developer <dana@contoso.com>"
ERIN = "Erin Eraser <erin@contoso.com>"


def events(found: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [h["detail"] for h in found["history"] if h["event"] == name]


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


@pytest.fixture
def world(tmp_path: Path) -> Any:
    with loop(tmp_path) as w:
        yield w


def linked_item(w: Loop, project: str, key: str, **fields: Any) -> int:
    w.send(project, risk(key, **fields))
    w.drain()
    item = w.risk(key)["work_item"]
    assert item is not None, w.open_jobs()
    return int(item["id"])


# ---- a person changes the item's type -------------------------------------------------------


@pytest.mark.parametrize(
    ("new_type", "state", "status"),
    [
        ("Task", "Removed", "removed"),  # the input: a state Tasks have and Bugs do not
        ("User Story", "Removed", "removed"),
        ("Task", "Closed", "resolved"),
    ],
)
def test_a_type_change_is_classified_by_the_new_type(
    world: Loop, new_type: str, state: str, status: str
) -> None:
    world.setup(("AppSec", "Bug"))
    wid = linked_item(world, "AppSec", "R-1")
    world.sb.change_type(wid, new_type, state=state, by=DANA)
    world.drain()
    found = world.risk("R-1")
    assert found["status"] == status
    assert found["work_item"]["type"] == new_type
    assert found["work_item"]["state"] == state
    assert events(found, "work_item_type_changed") == [{"from": "Bug", "to": new_type}]
    assert world.open_jobs() == []
    # Later events for the risk are not stuck behind it, and the item follows as a Task.
    world.sb.set_state(wid, "Active", by=DANA)
    world.drain()
    assert world.risk("R-1")["status"] == "open"
    world.send("AppSec", risk("R-1", severity="critical"))
    world.drain()
    comments = world.sb.work_item(wid)["comments"]
    assert any("Critical" in c["text"] for c in comments)
    assert world.open_jobs() == []


def test_an_event_without_its_type_is_classified_by_the_type_azure_devops_reports(
    world: Loop,
) -> None:
    """The recorded event names no type (older payloads); its state is not one of the linked
    type's, so the item is read and classified by its current type."""
    world.setup(("AppSec", "Bug"))
    wid = linked_item(world, "AppSec", "R-1")
    hooks = {h.event_type: h for h in world.store.all_hooks()}
    for sub in world.sb.subscriptions():  # its delivery is replaced by the event below
        world.sb.set_subscription_status(sub["id"], "disabledByUser")
    world.sb.change_type(wid, "Task", state="Removed", by=DANA)
    rev = world.sb.work_item(wid)["rev"]
    outcome = world.store.record_hook_event(
        hook_id=hooks["workitem.updated"].id,
        connection_id=world.connection_id,
        event_id="no-type",
        event_type="workitem.updated",
        work_item_id=wid,
        rev=rev,
        change={"work_item_id": wid, "state": "Removed", "by": DANA, "at": None, "deleted": None},
    )
    assert outcome == "recorded"
    world.drain()
    found = world.risk("R-1")
    assert (found["status"], found["work_item"]["type"]) == ("removed", "Task")
    assert world.open_jobs() == []


# ---- deletion and restore -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "order", "deleted", "deleter"),
    [
        (("delete", "restore"), "reverse", False, None),  # the input
        (("delete", "restore", "delete", "restore"), "reverse", False, None),
        (("delete", "restore", "delete"), "reverse", True, ERIN),
        (("delete", "restore", "delete"), "fifo", True, ERIN),
    ],
)
def test_delete_and_restore_follow_azure_devops_whatever_the_delivery_order(
    world: Loop, steps: tuple[str, ...], order: str, deleted: bool, deleter: str | None
) -> None:
    world.setup(("AppSec", "Bug"))
    wid = linked_item(world, "AppSec", "R-1")
    world.sb.hold_deliveries()
    for step in steps:
        if step == "delete":
            world.sb.delete_item(wid, by=ERIN)
        else:
            world.sb.restore_item(wid, by="Sam Admin <sam@contoso.com>")
    world.sb.release_deliveries(order)
    world.drain()
    found = world.risk("R-1")
    assert found["work_item"]["deleted"] is deleted
    if deleter:
        # Credited to whoever deleted it (the recycle bin says), not to the last editor.
        assert events(found, "work_item_deleted")[-1]["by"] == ERIN
        return
    world.send("AppSec", risk("R-1", severity="critical"))
    world.drain()
    assert any("Critical" in c["text"] for c in world.sb.work_item(wid)["comments"])


def test_severity_change_while_deleted_is_recorded_and_applied_on_restore(world: Loop) -> None:
    world.setup(("AppSec", "Bug"))
    wid = linked_item(world, "AppSec", "R-1", severity="medium")
    world.sb.delete_item(wid, by=ERIN)
    world.drain()
    world.send("AppSec", risk("R-1", severity="high"))
    world.send("AppSec", risk("R-1", severity="critical"))
    world.drain()
    found = world.risk("R-1")
    skipped = events(found, "work_item_update_skipped")
    assert [s["payload"] for s in skipped] == [
        {"from": "medium", "to": "high"},
        {"from": "high", "to": "critical"},
    ]
    assert all(s["reason"] == "work item deleted" for s in skipped)
    world.sb.restore_item(wid)
    world.drain()
    item = world.sb.work_item(wid)
    assert item["fields"]["Microsoft.VSTS.Common.Severity"] == "1 - Critical"
    severity_comments = [c for c in item["comments"] if "Severity" in c["text"]]
    assert len(severity_comments) == 1
    assert "Medium" in severity_comments[0]["text"]
    assert world.open_jobs() == []


# ---- reconciliation -------------------------------------------------------------------------


def _odd_state(w: Loop, wid: int) -> None:
    """A state no type of the project lists (e.g. a custom state removed from the process
    since): the stand-in cannot be told to do this, so its stored item is edited in place."""
    w.sb.set_state(wid, "Active", by=DANA)
    with w.sb.state.lock:
        w.sb.state.items[wid].fields["System.State"] = "Quarantined"


def _unreadable_type(w: Loop, wid: int) -> None:
    """The item became a type whose states Azure DevOps will not give us."""
    w.sb.add_fault(kind="status", status=404, path_contains="workitemtypes/Task/states", times=99)
    w.sb.change_type(wid, "Task", state="Active", by=DANA)


@pytest.mark.parametrize("make_odd", [_odd_state, _unreadable_type])
def test_one_odd_item_does_not_stop_reconciliation(world: Loop, make_odd: Any) -> None:
    world.setup(("AppSec", "Bug"), hooks=False)  # no hooks: every change below is "missed"
    ids = [linked_item(world, "AppSec", key) for key in ("R-1", "R-2", "R-3")]
    world.sb.set_state(ids[0], "Closed", by=DANA)
    make_odd(world, ids[1])
    world.sb.set_state(ids[2], "Resolved", by=DANA)
    world.reconcile()
    assert world.risk("R-1")["status"] == "resolved"
    assert world.risk("R-3")["status"] == "resolved"
    assert world.risk("R-2")["status"] == "open"
    text = world.http.get("/metrics").get_data(as_text=True)
    assert metric(text, "adowh_reconcile_last_ok") == 1
    assert metric(text, "adowh_reconcile_item_failures") == 1
    ready = world.http.get("/readyz").get_json()["checks"]["reconcile"]
    assert ready["item_failures"] == 1 and ready["consecutive_failures"] == 0
    result = world.store.periodic_status()["reconcile"].last_result
    assert [f["id"] for f in result["failed_items"]] == [ids[1]]
    # The odd item is tried again on the next pass even though it did not change since.
    world.reconcile()
    assert world.store.periodic_status()["reconcile"].last_result["item_failures"] == 1
    world.sb.clear_faults()
    world.sb.set_state(ids[1], "Closed", by=DANA)
    world.reconcile()
    assert world.risk("R-2")["status"] == "resolved"
    text = world.http.get("/metrics").get_data(as_text=True)
    assert metric(text, "adowh_reconcile_item_failures") == 0


def test_a_reconciliation_that_keeps_failing_shows_and_other_projects_are_still_repaired(
    world: Loop,
) -> None:
    world.setup(("AppSec", "Bug"), ("Platform", "Issue"), hooks=False)
    app_item = linked_item(world, "AppSec", "A-1")
    platform_item = linked_item(world, "Platform", "P-1")
    world.reconcile()
    watermark = world.store.periodic_status()["reconcile"].last_result["watermark"]
    world.sb.add_fault(kind="status", status=404, path_contains="appsec/_apis/wit/wiql", times=99)
    world.sb.set_state(app_item, "Closed", by=DANA)
    world.sb.set_state(platform_item, "Done", by=DANA)
    world.reconcile()
    world.reconcile()
    assert world.risk("P-1")["status"] == "resolved"
    assert world.risk("A-1")["status"] == "open"
    text = world.http.get("/metrics").get_data(as_text=True)
    assert metric(text, "adowh_reconcile_last_ok") == 0
    assert metric(text, "adowh_reconcile_consecutive_failures") == 2
    ready = world.http.get("/readyz").get_json()["checks"]["reconcile"]
    assert ready["consecutive_failures"] == 2 and "AppSec" in ready["last_error"]
    # The next pass starts where the last successful one left off.
    assert world.store.periodic_status()["reconcile"].last_result["watermark"] == watermark
    world.sb.clear_faults()
    world.reconcile()
    assert world.risk("A-1")["status"] == "resolved"
    text = world.http.get("/metrics").get_data(as_text=True)
    assert metric(text, "adowh_reconcile_consecutive_failures") == 0


def test_missed_deletion_and_restore_are_found_by_reconciliation(world: Loop) -> None:
    world.setup(("AppSec", "Bug"), hooks=False)
    wid = linked_item(world, "AppSec", "R-1")
    other = linked_item(world, "AppSec", "R-2")
    world.sb.set_state(wid, "Active", by=DANA)  # the last editor is not the one who deletes
    world.sb.delete_item(wid, by=ERIN)
    world.reconcile()
    found = world.risk("R-1")
    assert found["work_item"]["deleted"] is True
    assert events(found, "work_item_deleted")[-1]["by"] == ERIN
    assert world.risk("R-2")["work_item"]["deleted"] is False
    world.sb.restore_item(wid)
    world.sb.set_state(other, "Closed", by=DANA)
    world.reconcile()
    assert world.risk("R-1")["work_item"]["deleted"] is False
    assert world.risk("R-2")["status"] == "resolved"


# ---- the receiver -----------------------------------------------------------------------------


def _delivery(w: Loop, wid: int, **envelope: Any) -> tuple[dict[str, Any], tuple[str, str]]:
    """A workitem.updated delivery moving the item to Closed, as its subscription sends it."""
    sub = next(s for s in w.sb.subscriptions() if s["eventType"] == "workitem.updated")
    item = w.sb.work_item(wid)
    body: dict[str, Any] = {
        "subscriptionId": sub["id"],
        "id": f"evt-{len(envelope)}-{sorted(envelope)}",
        "eventType": "workitem.updated",
        "publisherId": "tfs",
        "resource": {
            "workItemId": wid,
            "rev": item["rev"] + 1,
            "fields": {"System.State": {"oldValue": "New", "newValue": "Closed"}},
            "revision": {
                "id": wid,
                "rev": item["rev"] + 1,
                "fields": {
                    "System.State": "Closed",
                    "System.WorkItemType": "Bug",
                    "System.TeamProject": "AppSec",
                },
            },
        },
        "resourceContainers": {"project": {"id": item["project_id"]}},
    }
    body.update(envelope)
    auth = sub["consumerInputs"]
    return body, (auth["basicAuthUsername"], auth["basicAuthPassword"])


@pytest.mark.parametrize(
    "envelope",
    [
        {"subscriptionId": "00000000-0000-4000-8000-000000000001"},
        {"resourceContainers": {"project": {"id": "8e2d4c6a-1f3b-4a5c-9d7e-0b1a2c3d4e5f"}}},
        {"subscriptionId": "00000000-0000-4000-8000-000000000002", "resourceContainers": None},
    ],
)
def test_a_delivery_for_another_subscription_or_project_is_acknowledged_and_ignored(
    world: Loop, envelope: dict[str, Any]
) -> None:
    world.setup(("AppSec", "Bug"))
    wid = linked_item(world, "AppSec", "R-1")
    body, auth = _delivery(world, wid, **envelope)
    resp = world.http.post("/hooks/ado", json=body, auth=auth)
    assert resp.status_code == 200 and resp.get_json() == {"outcome": "mismatch"}
    world.drain()
    assert world.risk("R-1")["status"] == "open"
    # The same delivery through its own subscription and project is applied.
    body, auth = _delivery(world, wid)
    assert world.http.post("/hooks/ado", json=body, auth=auth).status_code == 202
    world.drain()
    assert world.risk("R-1")["status"] == "resolved"


def test_a_project_name_is_compared_only_without_a_project_id(world: Loop) -> None:
    world.setup(("AppSec", "Bug"))
    wid = linked_item(world, "AppSec", "R-1")
    body, auth = _delivery(world, wid, resourceContainers=None)
    body["resource"]["revision"]["fields"]["System.TeamProject"] = "Platform"
    resp = world.http.post("/hooks/ado", json=body, auth=auth)
    assert resp.get_json() == {"outcome": "mismatch"}


def test_event_type_metric_labels_are_bounded(world: Loop) -> None:
    world.setup(("AppSec", "Bug"))
    _, auth = _delivery(world, linked_item(world, "AppSec", "R-1"))
    for i in range(3):
        body = {"id": f"odd-{i}", "eventType": f"zz.custom-{i}", "resource": {}}
        assert world.http.post("/hooks/ado", json=body, auth=auth).status_code == 200
    text = world.http.get("/metrics").get_data(as_text=True)
    assert "zz.custom" not in text
    assert re.search(r'adowh_hook_deliveries_total\{event_type="other",outcome="ignored"\}', text)
