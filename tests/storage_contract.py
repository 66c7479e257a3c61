"""The storage contract: guarantees every implementation of webhook.storage.interfaces keeps.

Written once against the Protocols; `tests/test_storage_contract_<engine>.py` runs it by
providing a `storage` fixture (a fresh, migrated, empty `Storage`). Only public verbs are used.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import hook_record, template_record
from webhook.domain.models import Risk
from webhook.domain.sync_plan import JobSpec, WrittenContent
from webhook.storage.errors import AlreadyExists, InUse, Missing
from webhook.storage.interfaces import Storage
from webhook.storage.types import Job, Lease, SourceAuth, WorkItemChange


def _world(storage: Storage, *, callback: str | None = None) -> tuple[SourceAuth, int, int]:
    """A source, a connection and an auto-creating template: (source, connection, template)."""
    storage.sources.create_source("sast", callback)
    source = storage.sources.find_source("sast", fresh=True)
    assert source is not None
    connection = storage.connections.create_connection(
        "org", "https://dev.azure.com/org", {"type": "pat", "token": "contract-token-123"}
    )
    template = storage.templates.create_template(template_record(connection.id, project="P"))
    return source, connection.id, template.id


def _risk(key: str, severity: str = "high", status: str = "open") -> Risk:
    return Risk(
        id=None, source="sast", key=key, name=f"risk {key}", severity=severity, status=status
    )


def _claim_all(storage: Storage, owner: str = "w1") -> list[Job]:
    return storage.jobs.claim_jobs(owner, limit=100)


def _link(storage: Storage, risk_id: int, connection: int, template: int, ado_id: int) -> bool:
    return storage.work_items.link_work_item(
        risk_id,
        connection_id=connection,
        template_id=template,
        project="P",
        work_item_type="Bug",
        item={"id": ado_id, "rev": 1, "fields": {"System.State": "New"}},
        tag="t",
        adopted=False,
        state_category="Proposed",
        rendered_severity="high",
        written=WrittenContent("risk", "body", None),
    )


# ---- errors -------------------------------------------------------------------------------


def test_names_are_unique_and_missing_rows_say_so(storage: Storage) -> None:
    storage.sources.create_source("sast", None)
    with pytest.raises(AlreadyExists):
        storage.sources.create_source("sast", None)
    with pytest.raises(Missing):
        storage.sources.get_source(999)
    with pytest.raises(Missing):
        storage.connections.get_connection(999)
    with pytest.raises(Missing):
        storage.templates.get_template(999)
    with pytest.raises(Missing):
        storage.hooks.get_hook(999)


def test_a_connection_used_by_a_template_cannot_be_deleted(storage: Storage) -> None:
    _, connection, template = _world(storage)
    with pytest.raises(InUse):
        storage.connections.delete_connection(connection)
    storage.templates.delete_template(template)
    storage.connections.delete_connection(connection)
    with pytest.raises(Missing):
        storage.connections.get_connection(connection)


# ---- sources ------------------------------------------------------------------------------


def test_a_rotated_secret_keeps_the_previous_one_valid(storage: Storage) -> None:
    _, first = storage.sources.create_source("sast", None)
    _, second = storage.sources.rotate_source_secret(1)
    found = storage.sources.find_source("sast", fresh=True)
    assert found is not None and found.secrets == (second, first)
    assert storage.sources.find_source("nope") is None


# ---- ingestion ----------------------------------------------------------------------------


def test_a_replayed_webhook_id_answers_the_first_response_and_records_nothing(
    storage: Storage,
) -> None:
    source, _, _ = _world(storage)
    first = storage.risks.record_risks(source, "msg_1", [_risk("a")])
    assert not first.replayed and first.actions == ("created",)
    again = storage.risks.record_risks(source, "msg_1", [_risk("a"), _risk("b")])
    assert again.replayed and (again.status, again.response) == (first.status, first.response)
    assert storage.risks.count_risks() == 1
    assert [j.kind for j in _claim_all(storage)] == ["create_work_item"]


def test_a_delivery_records_its_risks_and_their_jobs_together(storage: Storage) -> None:
    source, _, _ = _world(storage)
    outcome = storage.risks.record_risks(source, "msg_1", [_risk("a"), _risk("b", "low")])
    body = json.loads(outcome.response)
    ids = [r["id"] for r in body["risks"]]
    assert [r["action"] for r in body["risks"]] == ["created", "created"]
    # Only the high one meets the template's threshold.
    assert [(j.kind, j.risk_id) for j in _claim_all(storage)] == [("create_work_item", ids[0])]
    unchanged = storage.risks.record_risks(source, "msg_2", [_risk("a")])
    assert unchanged.actions == ("unchanged",)


# ---- jobs ---------------------------------------------------------------------------------


def _hook(storage: Storage, connection: int) -> int:
    hook = storage.hooks.save_hook(
        **hook_record(
            connection,
            project="P",
            project_id="pid",
            subscription_id="sub",
            username="u1",
            password_hash="h",
        )
    )
    return hook.id


def _events(storage: Storage, owner: str = "w1") -> list[Job]:
    return storage.jobs.claim_jobs(owner, limit=100, kinds=("apply_hook_event",))


def _two_events(storage: Storage) -> None:
    """A linked risk (its create job done) and two hook events for its item: one lane."""
    source, connection, template = _world(storage)
    storage.risks.record_risks(source, "m1", [_risk("a")])
    (create,) = _claim_all(storage)
    assert _link(storage, 1, connection, template, 70)
    assert storage.jobs.complete_job(create)
    hook = _hook(storage, connection)
    for event_id in ("e1", "e2"):
        outcome = storage.hooks.record_hook_event(
            hook_id=hook,
            connection_id=connection,
            event_id=event_id,
            event_type="workitem.updated",
            work_item_id=70,
            rev=2,
            change={},
        )
        assert outcome == "recorded"


def test_a_lane_runs_its_jobs_one_at_a_time_in_order(storage: Storage) -> None:
    _two_events(storage)
    (first,) = _events(storage)
    assert first.kind == "apply_hook_event"
    assert _events(storage, "w2") == []  # the second event waits behind the first
    assert storage.jobs.complete_job(first)
    assert not storage.jobs.complete_job(first)  # once
    (second,) = _events(storage)
    assert second.lane == first.lane and second.id > first.id


def test_a_failed_job_holds_its_lane_until_retried(storage: Storage) -> None:
    _two_events(storage)
    (first,) = _events(storage)
    assert storage.jobs.fail_job(first, "boom")
    assert _events(storage) == []
    with pytest.raises(InUse):
        storage.jobs.retry_job(first.id + 1)  # only failed jobs can be retried
    with pytest.raises(Missing):
        storage.jobs.retry_job(999)
    storage.jobs.retry_job(first.id)
    (again,) = _events(storage)
    assert again.id == first.id and again.attempts == 1  # a fresh budget


def test_a_taken_over_claim_is_fenced_off(storage: Storage) -> None:
    source, _, _ = _world(storage)
    storage.risks.record_risks(source, "m1", [_risk("a")])
    (held,) = _claim_all(storage, "w1")
    (lease,) = storage.jobs.running_leases()
    assert lease == Lease(held.id, held.token, 0)
    (taken,) = storage.jobs.claim_jobs("w2", stale=(lease,))
    assert taken.id == held.id and taken.taken_over and taken.token == held.token + 1
    assert not storage.jobs.complete_job(held)  # the first holder's outcome is not recorded
    assert storage.jobs.renew_leases("w1", [held]) == {held.id}
    assert storage.jobs.renew_leases("w2", [taken]) == set()
    assert storage.jobs.complete_job(taken)


def test_a_renewed_lease_is_not_taken_over(storage: Storage) -> None:
    source, _, _ = _world(storage)
    storage.risks.record_risks(source, "m1", [_risk("a")])
    (held,) = _claim_all(storage, "w1")
    (seen,) = storage.jobs.running_leases()
    storage.jobs.renew_leases("w1", [held])
    assert storage.jobs.claim_jobs("w2", stale=(seen,)) == []


def test_a_pause_does_not_count_as_an_attempt(storage: Storage) -> None:
    source, _, _ = _world(storage)
    storage.risks.record_risks(source, "m1", [_risk("a")])
    (held,) = _claim_all(storage)
    assert storage.jobs.retry_job_later(held, "paused", 0.0, count_attempt=False)
    (again,) = _claim_all(storage)
    assert again.attempts == 1


# ---- work items ---------------------------------------------------------------------------


def test_a_risk_is_linked_to_exactly_one_work_item(storage: Storage) -> None:
    source, connection, template = _world(storage)
    storage.risks.record_risks(source, "m1", [_risk("a")])
    assert _link(storage, 1, connection, template, 70)
    assert not _link(storage, 1, connection, template, 71)
    link = storage.work_items.work_item_for(1)
    assert link is not None and (link.ado_id, link.deleted, link.rev) == (70, False, 1)
    assert storage.work_items.work_item_owner(connection, 70) == 1
    assert storage.work_items.work_item_owner(connection, 71) is None
    assert list(storage.work_items.linked_work_items(connection, "P")) == [70]


def test_a_stale_claim_cannot_link(storage: Storage) -> None:
    source, connection, template = _world(storage)
    storage.risks.record_risks(source, "m1", [_risk("a")])
    (held,) = _claim_all(storage, "w1")
    (lease,) = storage.jobs.running_leases()
    storage.jobs.claim_jobs("w2", stale=(lease,))
    linked = storage.work_items.link_work_item(
        1,
        connection_id=connection,
        template_id=template,
        project="P",
        work_item_type="Bug",
        item={"id": 70, "rev": 1},
        tag="t",
        adopted=False,
        state_category=None,
        rendered_severity="high",
        job=held,
    )
    assert not linked and storage.work_items.work_item_for(1) is None


def test_work_item_changes_apply_in_rev_order(storage: Storage) -> None:
    source, connection, template = _world(storage)
    storage.risks.record_risks(source, "m1", [_risk("a")])
    _link(storage, 1, connection, template, 70)
    done = WorkItemChange(rev=3, state="Done", category="Completed", by="Ann", at=None)
    assert storage.work_items.apply_work_item_change(1, done)
    assert storage.risks.get_risk(1).status == "resolved"
    older = WorkItemChange(rev=2, state="New", category="Proposed", by="Bob", at=None)
    assert not storage.work_items.apply_work_item_change(1, older)
    assert storage.risks.get_risk(1).status == "resolved"
    link = storage.work_items.work_item_for(1)
    assert link is not None and (link.rev, link.state) == (3, "Done")


# ---- hooks --------------------------------------------------------------------------------


def test_a_hook_event_is_recorded_once_and_only_for_linked_items(storage: Storage) -> None:
    source, connection, template = _world(storage)
    storage.risks.record_risks(source, "m1", [_risk("a")])
    _link(storage, 1, connection, template, 70)
    hook = _hook(storage, connection)
    auth = storage.hooks.hook_credentials("u1")
    assert auth is not None and (auth.hook_id, auth.project_id) == (hook, "pid")

    def record(event_id: str, work_item: int) -> str:
        return storage.hooks.record_hook_event(
            hook_id=hook,
            connection_id=connection,
            event_id=event_id,
            event_type="workitem.updated",
            work_item_id=work_item,
            rev=2,
            change={"state": "Done"},
        )

    assert record("e1", 70) == "recorded"
    assert record("e1", 70) == "duplicate"
    assert record("e2", 99) == "not_ours"
    kinds = [j.kind for j in storage.jobs.claim_jobs("w", limit=10, kinds=("apply_hook_event",))]
    assert kinds == ["apply_hook_event"]


def test_an_event_for_a_deleted_hook_is_missing_not_a_duplicate(storage: Storage) -> None:
    source, connection, template = _world(storage)
    storage.risks.record_risks(source, "m1", [_risk("a")])
    _link(storage, 1, connection, template, 70)
    hook = _hook(storage, connection)
    storage.hooks.delete_hook(hook)
    for event_id, work_item in (("e1", 70), ("e2", 99)):  # a linked item and a foreign one
        with pytest.raises(Missing):
            storage.hooks.record_hook_event(
                hook_id=hook,
                connection_id=connection,
                event_id=event_id,
                event_type="workitem.updated",
                work_item_id=work_item,
                rev=2,
                change={"state": "Done"},
            )
    with pytest.raises(Missing):  # a hook id that never existed
        storage.hooks.record_hook_event(
            hook_id=hook + 100,
            connection_id=connection,
            event_id="e3",
            event_type="workitem.deleted",
            work_item_id=70,
            rev=None,
            change={},
        )
    assert storage.jobs.claim_jobs("w", limit=10, kinds=("apply_hook_event",)) == []


# ---- operations ---------------------------------------------------------------------------


def test_a_periodic_task_runs_under_one_lease_at_a_time(storage: Storage) -> None:
    ops = storage.operations
    assert ops.start_periodic("reconcile", 900, "w1", 60)
    assert not ops.start_periodic("reconcile", 900, "w2", 60)
    ops.finish_periodic("reconcile", "w1", False, {"error": "x", "watermark": "w"})
    assert not ops.start_periodic("reconcile", 900, "w2", 60)  # not due yet
    ops.request_periodic("reconcile")
    assert ops.start_periodic("reconcile", 900, "w2", 60)
    ops.finish_periodic("reconcile", "w2", False, {"error": "y"})
    result = ops.periodic_status()["reconcile"].last_result
    assert result == {"error": "y", "watermark": "w", "consecutive_failures": 2}


def test_an_organization_pause_is_never_shortened(storage: Storage) -> None:
    ops = storage.operations
    far, near = 4_000_000_000.0, 3_000_000_000.0
    assert ops.organization_paused_until("https://dev.azure.com/org") is None
    ops.pause_organization("https://dev.azure.com/org", far)
    ops.pause_organization("https://dev.azure.com/org", near)
    assert ops.organization_paused_until("https://dev.azure.com/org") == far


def test_the_installation_facts_are_made_once(storage: Storage) -> None:
    ops = storage.operations
    assert ops.installation_id() == ops.installation_id()
    assert len(ops.tracking_key()) == 32


# ---- units of work ------------------------------------------------------------------------


def test_enqueued_jobs_run_in_their_lane_in_order(storage: Storage) -> None:
    ids = storage.jobs.enqueue(
        [JobSpec("callback", "out", {"n": 1}), JobSpec("callback", "out", {"n": 2})],
        lane="wi:1:70",
        at=0.0,
    )
    assert len(ids) == 2 and ids[0] < ids[1]
    first = storage.jobs.claim_jobs("w1", limit=10)
    assert [(j.id, j.lane, j.payload) for j in first] == [(ids[0], "wi:1:70:out", {"n": 1})]
    assert storage.jobs.complete_job(first[0])
    assert [j.id for j in storage.jobs.claim_jobs("w1", limit=10)] == [ids[1]]


def test_a_unit_of_work_records_a_change_and_its_jobs_together_or_not_at_all(
    storage: Storage,
) -> None:
    with pytest.raises(RuntimeError), storage.unit_of_work() as uow:
        uow.sources.create_source("sast", None)
        uow.jobs.enqueue([JobSpec("callback", "out")], lane="source:sast")
        assert uow.sources.list_sources(1, 10)[1] == 1  # its own writes are visible
        raise RuntimeError("the request failed after both writes")
    assert storage.sources.list_sources(1, 10)[1] == 0
    assert storage.jobs.claim_jobs("w1", limit=10) == []

    with storage.unit_of_work() as uow:
        uow.sources.create_source("sast", None)
        uow.jobs.enqueue([JobSpec("callback", "out")], lane="source:sast")
    assert storage.sources.list_sources(1, 10)[1] == 1
    assert [j.lane for j in storage.jobs.claim_jobs("w1", limit=10)] == ["source:sast:out"]


def test_a_failed_verb_inside_a_unit_of_work_undoes_only_itself(storage: Storage) -> None:
    source, connection, _template = _world(storage)
    with storage.unit_of_work() as uow:
        uow.risks.record_risks(source, "m1", [_risk("a")])  # batched verbs join the unit
        with pytest.raises(AlreadyExists):
            uow.sources.create_source("sast", None)
        with pytest.raises(Missing):
            uow.hooks.record_hook_event(
                hook_id=999,
                connection_id=connection,
                event_id="e1",
                event_type="workitem.updated",
                work_item_id=70,
                rev=2,
                change={},
            )
    assert storage.risks.count_risks() == 1
    kinds = [j.kind for j in storage.jobs.claim_jobs("w1", limit=10)]
    assert kinds == ["create_work_item"]


# ---- several nodes ------------------------------------------------------------------------


def test_concurrent_claims_from_two_nodes_never_share_a_job_and_keep_lane_order(
    storage: Storage, peer: Storage
) -> None:
    """Eight threads, half on each of two storage objects over one database (two nodes),
    claim and finish 120 jobs in 24 lanes: every job is done exactly once, a lane never has
    two jobs in flight, and each lane's jobs finish in the order they were recorded."""
    import threading

    lanes = {
        f"lane{n}": storage.jobs.enqueue(
            [JobSpec("callback", "out", {"n": i}) for i in range(5)], lane=f"lane{n}", at=0.0
        )
        for n in range(24)
    }
    done: list[int] = []
    in_flight: set[str] = set()
    overlaps: list[str] = []
    order: dict[str, list[int]] = {lane: [] for lane in lanes}
    mutex = threading.Lock()

    def drain(node: Storage, owner: str) -> None:
        idle = 0
        while idle < 20:
            jobs = node.jobs.claim_jobs(owner, limit=3)
            if not jobs:
                idle += 1
                threading.Event().wait(0.01)
                continue
            idle = 0
            for job in jobs:
                lane = job.lane.rsplit(":", 1)[0]
                with mutex:
                    if lane in in_flight:
                        overlaps.append(lane)
                    in_flight.add(lane)
                    order[lane].append(job.id)
                threading.Event().wait(0.001)
                with mutex:
                    in_flight.discard(lane)
                    done.append(job.id)
                assert node.jobs.complete_job(job)

    threads = [
        threading.Thread(target=drain, args=(storage if n % 2 else peer, f"node{n % 2}-{n}"))
        for n in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not overlaps, f"lanes with two jobs in flight: {sorted(set(overlaps))}"
    assert sorted(done) == sorted(i for ids in lanes.values() for i in ids)
    assert {lane: ids for lane, ids in order.items()} == lanes
