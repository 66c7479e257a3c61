"""Every outbound call is bounded: a total deadline whatever each read takes, a cap on the answer
read, and a share of the worker's threads per destination (issue 10 item 2).

The peers are real sockets on 127.0.0.1 (tests/rawhttp.py) that trickle, flood or hold."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from webhook import ado, callbacks, outbound
from webhook.ado import AdoClient, AdoTransient, EntraTokenProvider, PatAuth, ServicePrincipalAuth
from webhook.callbacks import CallbackSender
from webhook.domain.orgurl import OrgUrl, parse_organization_url
from webhook.domain.sync_plan import JobSpec
from webhook.outbound import Bounds, DestinationBusy, Shares
from webhook.storage.sqlite.storage import SqliteStorage
from webhook.storage.types import Job
from webhook.worker import RetryLater, RetryPolicy, Worker

from .conftest import make_services
from .rawhttp import RawServer, flood, hold, trickle_body, trickle_head

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
PAT = "pat-0123456789abcdef0123456789abcdef0123456789abcdef"
HUGE = 200 * 1024 * 1024  # generated on the fly by the peer, never held in memory
SHORT = 0.6  # the total deadline the tests set (seconds); a trickle lasts 4 s
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"


@pytest.fixture
def store(tmp_path: Path) -> SqliteStorage:
    return make_services(tmp_path).store


@pytest.fixture
def servers() -> Iterator[list[RawServer]]:
    started: list[RawServer] = []
    yield started
    for server in started:
        server.close()


def serve(servers: list[RawServer], respond: Any) -> RawServer:
    server = RawServer(respond)
    servers.append(server)
    return server


class FixedSender(CallbackSender):
    """The real sender, pointed at a test URL instead of a source read from the store."""

    def __init__(self, store: SqliteStorage, url: str) -> None:
        super().__init__(store)
        self.url = url

    def payload(self, job: Job) -> tuple[dict[str, Any], str, str]:
        event = {"type": "risk.resolution_changed", "risk": {"id": job.risk_id, "key": "R-1"}}
        return event, self.url, SECRET


def callback_job(job_id: int = 1) -> Job:
    return Job(job_id, "callback", 1, "risk:1:cb", {"status": "resolved"}, 1, None)


def org_for(server: RawServer) -> OrgUrl:
    host = f"127.0.0.1:{server.port}"
    return parse_organization_url(f"http://{host}/org", extra_hosts=frozenset({host}))


# --------------------------------------------------------------------------- callbacks


@pytest.mark.parametrize("respond", [trickle_body(), trickle_head()], ids=["body", "status line"])
def test_a_trickling_scanner_is_cut_at_the_total_deadline(
    store: SqliteStorage, servers: list[RawServer], respond: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One byte every 0.1 s: each read is quick, the whole answer would take 4 s.
    short = Bounds(1.0, 15.0, SHORT, 4096, truncate=True)
    monkeypatch.setattr(callbacks, "BOUNDS", short, raising=False)
    server = serve(servers, respond)
    sender = FixedSender(store, server.url + "/hooks/risks")
    with pytest.raises(RetryLater) as info:
        sender.send(callback_job())
    assert f"longer than {SHORT:g} s in all" in str(info.value)
    assert info.value.count_attempt is True  # a failed delivery counts toward backoff
    how, _ = server.outcome()
    assert how == "cut"  # the connection was dropped, the thread went back to work


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "until-close"])
def test_a_huge_callback_answer_is_not_read(
    store: SqliteStorage, servers: list[RawServer], declare_length: bool
) -> None:
    server = serve(servers, flood(HUGE, declare_length=declare_length))
    sender = FixedSender(store, server.url + "/hooks/risks")
    sender.send(callback_job())  # 200 acknowledges the delivery; the body is not needed
    how, sent = server.outcome()
    assert how == "cut"
    assert sent < HUGE // 4


# --------------------------------------------------------------------------- Azure DevOps


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "until-close"])
def test_an_azure_devops_answer_over_the_cap_fails_as_transient(
    servers: list[RawServer], declare_length: bool
) -> None:
    server = serve(servers, flood(HUGE, declare_length=declare_length))
    client = AdoClient(org_for(server), PatAuth(PAT))
    with pytest.raises(AdoTransient) as info:
        client.get_project("AppSec")
    assert "larger than 32 MiB" in info.value.message
    assert info.value.outcome_unknown is False  # a GET changed nothing
    how, sent = server.outcome()
    assert how == "cut"
    assert sent < HUGE // 4
    client.close()


@pytest.mark.parametrize(
    "respond",
    [trickle_body(content_type="application/json"), trickle_head()],
    ids=["body", "status line"],
)
def test_a_trickling_azure_devops_is_cut_at_the_total_deadline(
    servers: list[RawServer], respond: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ado, "DEFAULT_DEADLINE", SHORT, raising=False)
    server = serve(servers, respond)
    client = AdoClient(org_for(server), PatAuth(PAT), timeout=(1.0, 15.0))
    with pytest.raises(AdoTransient) as info:
        client.create_work_item("AppSec", "Bug", [{"op": "add", "path": "/x", "value": 1}])
    assert f"longer than {SHORT:g} s in all" in info.value.message
    assert info.value.outcome_unknown is True  # the POST may have been performed
    assert server.outcome()[0] == "cut"
    client.close()


def test_a_trickling_entra_token_endpoint_is_cut_at_the_total_deadline(
    servers: list[RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ado, "TOKEN_DEADLINE", SHORT, raising=False)
    server = serve(servers, trickle_body(content_type="application/json"))
    provider = EntraTokenProvider(
        server.url, ServicePrincipalAuth(TENANT, CLIENT_ID, "secret~value"), timeout=(1.0, 15.0)
    )
    with pytest.raises(AdoTransient) as info:
        provider.token()
    assert info.value.message.startswith("Entra ID token request failed")
    assert f"longer than {SHORT:g} s in all" in info.value.message
    assert "secret~value" not in info.value.message
    assert server.outcome()[0] == "cut"


def test_a_huge_entra_answer_is_not_read(servers: list[RawServer]) -> None:
    server = serve(servers, flood(HUGE, declare_length=False))
    provider = EntraTokenProvider(server.url, ServicePrincipalAuth(TENANT, CLIENT_ID, "s"))
    with pytest.raises(AdoTransient) as info:
        provider.token()
    assert "larger than 64 KiB" in info.value.message
    how, sent = server.outcome()
    assert how == "cut" and sent < HUGE // 4


# --------------------------------------------------------------------------- shares


def add_jobs(store: SqliteStorage, jobs: list[tuple[str, str]]) -> None:
    with store.unit_of_work() as uow:
        for kind, lane in jobs:
            uow.jobs.enqueue([JobSpec(kind, "x", {"status": "resolved"})], lane=lane, at=0.0)


def test_a_slow_scanner_never_holds_up_azure_devops_work(
    store: SqliteStorage, servers: list[RawServer]
) -> None:
    release = threading.Event()
    server = serve(servers, hold(release))  # answers nothing until the test ends
    sender = FixedSender(store, server.url + "/hooks/risks")
    created = threading.Event()

    def create_work_item(job: Job) -> None:
        created.set()

    # Ten deliveries to the slow scanner are older than the work item job: with 8 threads and
    # no per-destination share, all 8 would wait on the scanner (15 s per read).
    add_jobs(store, [("callback", f"cb{i}") for i in range(10)] + [("create_work_item", "wi")])
    worker = Worker(
        store=store,
        handlers={"callback": sender.send, "create_work_item": create_work_item},
        policy=RetryPolicy(base=0.01, cap=0.01),
        idle_poll=0.02,
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), kwargs={"threads": 8})
    thread.start()
    try:
        assert created.wait(10), "the Azure DevOps job waited behind the slow scanner"
        assert server.max_concurrent <= 2  # max(1, 8 // 4) threads for one callback host
        bounced = store.db.conn.execute(
            "SELECT attempts, last_error FROM jobs WHERE kind='callback' AND state='pending'"
            " AND last_error IS NOT NULL"
        ).fetchall()
        assert bounced, "callbacks over the share are put back, not waited for"
        for row in bounced:
            assert row["attempts"] == 0  # waiting for a share is not a failed attempt
            assert "its share of the worker's threads" in row["last_error"]
    finally:
        release.set()
        stop.set()
        thread.join(60)
    assert not thread.is_alive()


def test_shares_cap_each_destination_and_let_others_through() -> None:
    shares = Shares()
    first = shares.acquire([("callbacks", 2), ("callback a:443", 1)])
    with pytest.raises(DestinationBusy) as info:
        shares.acquire([("callbacks", 2), ("callback a:443", 1)], wait=0.0)
    assert info.value.destination == "callback a:443"
    assert 1.0 <= info.value.delay <= 3.0
    second = shares.acquire([("callbacks", 2), ("callback b:443", 1)], wait=0.0)
    with pytest.raises(DestinationBusy) as total:
        shares.acquire([("callbacks", 2), ("callback c:443", 1)], wait=0.0)
    assert total.value.destination == "callbacks"
    with shares.slot([("ado https://dev.azure.com/x", 6)], wait=0.0):
        assert shares.in_flight("ado https://dev.azure.com/x") == 1
    first()
    first()  # releasing twice is harmless
    assert shares.in_flight("callback a:443") == 0
    assert shares.in_flight("callbacks") == 1
    shares.acquire([("callbacks", 2), ("callback a:443", 1)], wait=0.0)
    second()


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://Scanner.example/cb", "callback scanner.example:443"),
        ("http://scanner.example/cb", "callback scanner.example:80"),
        ("https://user:pw@scanner.example:8443/cb", "callback scanner.example:8443"),
    ],
)
def test_callback_destination_is_host_and_port(url: str, key: str) -> None:
    assert callbacks.destination(url) == key


def test_a_slow_organization_leaves_threads_for_other_work(
    tmp_path: Path, servers: list[RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbound, "_worker_threads", 4, raising=False)
    release = threading.Event()
    slow = serve(servers, hold(release))
    host = f"127.0.0.1:{slow.port}"
    services = make_services(tmp_path, WEBHOOK_ALLOWED_ORG_HOSTS=host)
    store = services.store
    connection = store.create_connection(
        "slow", f"http://{host}/org", {"type": "pat", "token": PAT}
    ).id
    ado_gateway = services.gateway
    other = threading.Event()

    def read_project(job: Job) -> None:
        ado_gateway.client(connection).get_project("AppSec")

    add_jobs(store, [("read_project", f"p{i}") for i in range(6)] + [("other", "o")])
    worker = Worker(
        store=store,
        handlers={"read_project": read_project, "other": lambda job: other.set()},
        policy=RetryPolicy(base=0.01, cap=0.01),
        idle_poll=0.02,
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), kwargs={"threads": 4})
    thread.start()
    try:
        assert other.wait(10), "every worker thread waited on one slow organization"
        assert slow.max_concurrent <= 3  # max(1, 4 - 4 // 4) threads for one organization
        bounced = store.db.conn.execute(
            "SELECT attempts FROM jobs WHERE kind='read_project' AND last_error LIKE '%share%'"
        ).fetchall()
        assert bounced and all(row["attempts"] == 0 for row in bounced)
    finally:
        release.set()
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
