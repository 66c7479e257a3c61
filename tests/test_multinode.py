"""Several nodes on one PostgreSQL database (SPEC 6, issue 13): two `serve --no-worker` web
nodes and two `worker` processes; scanners post a burst to both web nodes; one web node and one
worker are killed with SIGKILL mid-burst and restarted. Every acknowledged risk is kept, each
has exactly one work item, hook events for an item are applied in revision order, and no job
is left running past its lease."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e import Rig, tracking_tags, wait_for
from tests.servers import free_port, query_database, running_service, service_env, stop
from tests.test_faults import burst
from webhook.sandbox import Sandbox

pytestmark = pytest.mark.fault


@contextmanager
def worker_process(workdir: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`ado-webhook worker` in its own process group (its log in workdir)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = open(workdir / "worker.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "webhook.cli", "worker", "--threads", "4"],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        stop(proc)
        log.close()


def node_env(base: dict[str, str], workdir: Path) -> dict[str, str]:
    """The shared environment with this node's own folder (metrics, logs)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return {**base, "WEBHOOK_DB": str(workdir / "var" / "unused.db")}


def test_two_web_nodes_and_two_workers_survive_sigkill_mid_burst(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests import servers
    from tests.pg import fresh_database, require_postgres

    require_postgres()
    acked: list[str] = []
    with ExitStack() as stack:
        url = stack.enter_context(fresh_database("adowh_nodes"))
        monkeypatch.setattr(servers, "DATABASE_URL", url)  # query_database reads it too
        sb = stack.enter_context(Sandbox(latency=0.03))
        ports = [free_port(), free_port()]
        shared = service_env(
            tmp_path,
            WEBHOOK_DATABASE_URL=url,
            WEBHOOK_ALLOWED_ORG_HOSTS=urlsplit(sb.url).netloc,
            # Azure DevOps calls the second node, which is never killed.
            WEBHOOK_PUBLIC_URL=f"http://127.0.0.1:{ports[1]}",
            WEBHOOK_RECONCILE_SECONDS="3600",
        )
        envs = [node_env(shared, tmp_path / name) for name in ("web1", "web2", "wk1", "wk2")]
        web1 = stack.enter_context(
            running_service(tmp_path / "web1", "--no-worker", env=envs[0], port=ports[0])
        )
        web2 = stack.enter_context(
            running_service(tmp_path / "web2", "--no-worker", env=envs[1], port=ports[1])
        )
        worker1 = stack.enter_context(worker_process(tmp_path / "wk1", envs[2]))
        stack.enter_context(worker_process(tmp_path / "wk2", envs[3]))
        bases = [web1[0], web2[0]]
        r = Rig(web2[0], sb, tmp_path, shared)
        conn = r.setup_bugs()
        hooks = r.admin("POST", "/admin/hooks", json={"connection_id": conn, "project": "AppSec"})
        assert hooks.status_code == 201, hooks.text

        halt, mutex = threading.Event(), threading.Lock()
        sent: list[str] = []
        senders = [
            threading.Thread(
                target=burst, args=(bases, r.secret, f"s{n}", halt, acked, sent, mutex)
            )
            for n in range(3)
        ]
        for t in senders:
            t.start()
        time.sleep(2.0)
        os.killpg(web1[1].pid, signal.SIGKILL)  # one web node, mid-burst
        os.killpg(worker1.pid, signal.SIGKILL)  # and one worker, mid-drain
        web1[1].wait(timeout=10)
        worker1.wait(timeout=10)
        time.sleep(1.0)
        stack.enter_context(worker_process(tmp_path / "wk1", envs[2]))  # restarted
        web1b = stack.enter_context(
            running_service(tmp_path / "web1", "--no-worker", env=envs[0], port=ports[0])
        )
        time.sleep(1.0)
        halt.set()
        for t in senders:
            t.join(timeout=60)
        assert len(acked) > 30, "the burst should have been acknowledged in part"
        assert web1b[0] == bases[0]

        def open_jobs() -> dict[str, int]:
            return {
                state: int(r.admin("GET", "/admin/jobs", params={"state": state}).json()["total"])
                for state in ("pending", "running", "failed")
            }

        # A job its killed worker held is taken over after one lease (40 s) at most.
        wait_for(lambda: not any(open_jobs().values()), timeout=240, interval=0.5)

        stored = {k for (k,) in query_database(tmp_path, "SELECT key FROM risks")}
        missing = set(acked) - stored
        assert not missing, f"{len(missing)} acknowledged risks lost"
        items = [w for w in sb.work_items() if not w["deleted"]]
        tags = tracking_tags(items)
        assert len(items) == len(stored) == len(tags), (len(items), len(stored), len(tags))
        assert all(n == 1 for n in tags.values()), "a risk has two work items"

        # Hook events for one item, held and released newest first, are applied in rev order.
        linked: list[dict[str, Any]] = [x for x in r.risks() if x["work_item"]][:4]
        sb.hold_deliveries()
        for x in linked:
            sb.set_state(x["work_item"]["id"], "Resolved")
            sb.set_state(x["work_item"]["id"], "Active")
            sb.set_state(x["work_item"]["id"], "Closed")
        sb.release_deliveries(order="reverse")
        sb.wait_deliveries_idle(20)
        wait_for(lambda: not any(open_jobs().values()), timeout=60, interval=0.5)
        by_id = {x["id"]: x for x in r.risks()}
        for x in linked:
            now = by_id[x["id"]]
            assert now["status"] == "resolved", now
            assert now["work_item"]["state"] == "Closed", now
