"""The admin API's JSON answers, byte for byte (keys, their order, null vs missing), as they
were when storage built them as dictionaries: storage now hands out dataclasses and the
schemas dump them, and nothing a client reads may change."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from tests.conftest import risk
from tests.inproc import loop

ISO = re.compile(r'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)"')
SECRET = re.compile(r'"whsec_[A-Za-z0-9+/=]+"')


def body(resp) -> str:  # type: ignore[no-untyped-def]
    """The answer's bytes with times and secrets replaced by placeholders."""
    return SECRET.sub('"<secret>"', ISO.sub('"<time>"', resp.get_data(as_text=True))).strip()


SOURCE = (
    '{"callback_url":"https://scanner.internal/cb","created_at":"<time>","id":1,"name":"sast",'
    '"previous_secret_valid_until":null,"updated_at":"<time>",'
    '"webhook_url":"http://localhost/webhooks/risks/sast"}'
)


def test_source_answers_keep_their_shape(client: FlaskClient, admin) -> None:
    created = client.post(
        "/admin/sources",
        json={"name": "sast", "callback_url": "https://scanner.internal/cb"},
        headers=admin,
    )
    assert body(created) == (
        '{"callback_url":"https://scanner.internal/cb","created_at":"<time>","id":1,'
        '"name":"sast","previous_secret_valid_until":null,"secret":"<secret>",'
        '"updated_at":"<time>","webhook_url":"http://localhost/webhooks/risks/sast"}'
    )
    listing = client.get("/admin/sources", headers=admin)
    assert body(listing) == (f'{{"items":[{SOURCE}],"page":1,"per_page":100,"total":1}}')
    rotated = client.post("/admin/sources/1/rotate-secret", headers=admin)
    assert body(rotated) == (
        '{"callback_url":"https://scanner.internal/cb","created_at":"<time>","id":1,'
        '"name":"sast","previous_secret_valid_until":"<time>","secret":"<secret>",'
        '"updated_at":"<time>","webhook_url":"http://localhost/webhooks/risks/sast"}'
    )


GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def loop_body(resp, org_url: str) -> str:  # type: ignore[no-untyped-def]
    """`body` with the stand-in's address and every GUID replaced by placeholders too."""
    return GUID.sub("<guid>", body(resp).replace(org_url, "<org>"))


TEMPLATE = (
    '{"area_path":null,"auto_create":true,"close_on_resolve":false,"connection_id":1,'
    '"created_at":"<time>","fields":{},"id":1,"iteration_path":null,"name":"t-AppSec",'
    '"project":"AppSec","severity_threshold":"low","sources":["src-AppSec"],"tags":[],'
    '"title_format":"{name}","updated_at":"<time>","work_item_type":"Bug"}'
)
HOOKS = "".join(
    f'{{"connection_id":1,"event_type":"workitem.{event}","heal_count":0,"id":{n},'
    '"last_checked_at":"<time>","last_error":null,"last_healed_at":null,"project":"AppSec",'
    '"project_id":"<guid>","status":"enabled","subscription_id":"<guid>"},'
    for n, event in enumerate(("updated", "deleted", "restored"), 1)
).rstrip(",")
CONNECTION = (
    '{"auth":{"type":"pat"},"created_at":"<time>","id":1,"name":"sandbox",'
    '"organization_url":"<org>","updated_at":"<time>"}'
)
RISK = (
    '"assets":[],"assets_total":0,"created_at":"<time>",{text}"id":1,"key":"R-1",'
    '"name":"SQL injection R-1","project":null,{proof}"resolution":null,"severity":"high",'
    '"source":"src-AppSec","status":"open","tags":[],"updated_at":"<time>","url":null,'
    '"work_item":{work_item}'
)
WORK_ITEM = (
    '{"deleted":false,"id":101,"project":"AppSec","state":"New","type":"Bug",'
    '"url":"<org>/<guid>/_workitems/edit/101"}'
)


def test_template_job_risk_connection_and_hook_answers_keep_their_shape(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with loop(tmp_path) as world:
        world.setup(("AppSec", "Bug"))
        org = world.sb.org_url
        http, admin = world.http, world.admin_headers

        def get(path: str) -> str:
            resp = http.get(path, headers=admin)
            assert resp.status_code == 200
            return loop_body(resp, org)

        assert (
            get("/admin/templates") == f'{{"items":[{TEMPLATE}],"page":1,"per_page":100,"total":1}}'
        )
        assert get("/admin/templates/1") == TEMPLATE
        patched = http.patch("/admin/templates/1", json={"tags": ["x"]}, headers=admin)
        assert loop_body(patched, org) == TEMPLATE.replace('"tags":[]', '"tags":["x"]').replace(
            '"fields":{},',
            '"fields":{},"hooks":{"healthy":true,"message":null,"missing":[],"registered":true},',
        )

        assert get("/admin/connections") == (
            f'{{"items":[{CONNECTION}],"page":1,"per_page":100,"total":1}}'
        )
        assert get("/admin/connections/1") == CONNECTION
        renamed = http.patch("/admin/connections/1", json={"name": "renamed"}, headers=admin)
        assert loop_body(renamed, org) == CONNECTION.replace('"sandbox"', '"renamed"')
        assert get("/admin/hooks") == f'{{"items":[{HOOKS}],"page":1,"per_page":100,"total":3}}'

        world.send("AppSec", risk("R-1"))
        pending = (
            '{"attempts":0,"id":1,"kind":"create_work_item","last_error":null,'
            '"next_attempt_at":"<time>","risk_id":1,"state":"pending"}'
        )
        assert get("/admin/jobs") == f'{{"items":[{pending}],"page":1,"per_page":100,"total":1}}'
        listed = RISK.format(text="", proof="", work_item="null")
        assert (
            get("/admin/risks") == f'{{"items":[{{{listed}}}],"page":1,"per_page":100,"total":1}}'
        )
        world.drain()
        history = (
            '"history":[{"at":"<time>","detail":{"severity":"high","status":"open"},'
            '"event":"risk_created"},{"at":"<time>","detail":{"id":101,"project":"AppSec",'
            '"type":"Bug","url":"<org>/<guid>/_workitems/edit/101"},"event":"work_item_created"}],'
        )
        detail = RISK.format(
            text=f'"definition":null,"evidence":null,{history}',
            proof='"proof":null,"remediation":null,',
            work_item=WORK_ITEM,
        )
        assert get("/admin/risks/1") == f"{{{detail}}}"
        assert get("/admin/risks") == (
            f'{{"items":[{{{RISK.format(text="", proof="", work_item=WORK_ITEM)}}}],'
            '"page":1,"per_page":100,"total":1}'
        )

        world.send("AppSec", risk("R-2", severity="info"))
        exported = http.post("/admin/risks/2/work-item", json={"template_id": 1}, headers=admin)
        assert exported.status_code == 202
        assert loop_body(exported, org) == pending.join(('{"job":', "}")).replace(
            '"id":1', '"id":2'
        ).replace('"risk_id":1', '"risk_id":2')
        with world.store.db.write() as conn:
            conn.execute("UPDATE jobs SET state='failed', last_error='TF1: no' WHERE id=2")
        failed = pending.replace('"id":1', '"id":2').replace('"risk_id":1', '"risk_id":2')
        failed = failed.replace('"next_attempt_at":"<time>"', '"next_attempt_at":null')
        failed = failed.replace('"last_error":null', '"last_error":"TF1: no"')
        assert get("/admin/jobs?state=failed") == (
            f'{{"items":[{failed.replace("pending", "failed")}],"page":1,"per_page":100,"total":1}}'
        )
        retried = http.post("/admin/jobs/2/retry", headers=admin)
        assert loop_body(retried, org) == failed.replace(
            '"next_attempt_at":null', '"next_attempt_at":"<time>"'
        )


def test_hook_setup_answers_keep_their_shape(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """POST /admin/hooks: subscriptions created now show no project_id, those kept do; a
    healed one (recreated) is shown as created."""
    with loop(tmp_path) as world:
        world.setup(("AppSec", "Bug"), hooks=False)
        org = world.sb.org_url
        http, admin = world.http, world.admin_headers
        project = {"connection_id": world.connection_id, "project": "AppSec"}

        def hook(n: int, event: str, *, kept: bool, heal_count: int = 0) -> str:
            healed_at = '"<time>"' if heal_count else "null"
            project_id = '"project_id":"<guid>",' if kept else ""
            return (
                f'{{"connection_id":1,"event_type":"workitem.{event}","heal_count":{heal_count},'
                f'"id":{n},"last_checked_at":"<time>","last_error":null,'
                f'"last_healed_at":{healed_at},"project":"AppSec",{project_id}'
                '"status":"enabled","subscription_id":"<guid>"}'
            )

        created = http.post("/admin/hooks", json=project, headers=admin)
        assert created.status_code == 201
        events = ("updated", "deleted", "restored")
        fresh = ",".join(hook(n, e, kept=False) for n, e in enumerate(events, 1))
        assert loop_body(created, org) == f'{{"subscriptions":[{fresh}]}}'

        again = http.post("/admin/hooks", json=project, headers=admin)
        assert again.status_code == 200
        kept = ",".join(hook(n, e, kept=True) for n, e in enumerate(events, 1))
        assert loop_body(again, org) == f'{{"subscriptions":[{kept}]}}'

        (deleted,) = [s for s in world.sb.subscriptions() if s["eventType"] == "workitem.deleted"]
        world.sb.set_subscription_status(deleted["id"], "disabledBySystem")
        healed = http.post("/admin/hooks", json=project, headers=admin)
        assert healed.status_code == 201
        mixed = ",".join(
            (
                hook(1, "updated", kept=True),
                hook(2, "deleted", kept=False, heal_count=1),
                hook(3, "restored", kept=True),
            )
        )
        assert loop_body(healed, org) == f'{{"subscriptions":[{mixed}]}}'


STORE_SERIES = (
    "adowh_jobs{",
    "adowh_job_oldest_age_seconds",
    "adowh_subscription_status",
    "adowh_reconcile_",
    "adowh_hook_check_",
    "adowh_worker_heartbeat_age_seconds",
)


def test_readyz_body_and_database_metrics_keep_their_shape(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """/readyz's checks (with a reconciliation that ran) and the /metrics series computed from
    the database (jobs by state, subscriptions, reconciliation, hook check, heartbeat)."""
    with loop(tmp_path) as world:
        world.setup(("AppSec", "Bug"))
        world.send("AppSec", risk("R-1"))
        world.drain()
        world.reconcile()
        store = world.store
        assert store.start_periodic("hook_check", 0.0, "w", 60.0)
        store.finish_periodic("hook_check", "w", False, {"error": "boom"})
        world.send("AppSec", risk("R-2"), risk("R-3"))
        with store.db.write() as conn:
            conn.execute("UPDATE jobs SET state='failed', last_error='x' WHERE risk_id=3")
        store.heartbeat("w", 1, "test")

        ready = world.http.get("/readyz")
        assert ready.status_code == 200
        age = re.compile(r'("worker_heartbeat_age_seconds"):[0-9.]+')
        text = age.sub(r"\1:<age>", body(ready))
        assert text == (
            '{"checks":{"database":"ok","reconcile":{"consecutive_failures":0,"item_failures":0,'
            '"last_error":null,"last_ok":true,"last_run_at":"<time>"},"service_hooks":"ok",'
            '"worker":"ok","worker_heartbeat_age_seconds":<age>},"status":"ok"}'
        )

        scraped = world.http.get("/metrics").get_data(as_text=True)
        gauges = [
            line
            for line in scraped.splitlines()
            if line.startswith(STORE_SERIES)
            and not line.split("{")[0].split(" ")[0].endswith(("_total", "_created"))
        ]
        series = sorted(line.split(" ")[0] for line in gauges)
        series = [re.sub(r'id="\d+"', 'id="<n>"', s) for s in series]
        sub = (
            'adowh_subscription_status{{event_type="workitem.{}",id="<n>",project="AppSec",'
            'status="enabled"}}'
        )
        assert series == sorted(
            [
                "adowh_hook_check_consecutive_failures",
                "adowh_hook_check_last_ok",
                "adowh_hook_check_last_run_timestamp_seconds",
                'adowh_job_oldest_age_seconds{state="failed"}',
                'adowh_job_oldest_age_seconds{state="pending"}',
                'adowh_jobs{state="failed"}',
                'adowh_jobs{state="pending"}',
                "adowh_reconcile_consecutive_failures",
                "adowh_reconcile_item_failures",
                "adowh_reconcile_last_changes",
                "adowh_reconcile_last_ok",
                "adowh_reconcile_last_run_timestamp_seconds",
                *(sub.format(e) for e in ("updated", "deleted", "restored")),
                "adowh_worker_heartbeat_age_seconds",
            ]
        )
        values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in gauges}
        assert values['adowh_jobs{state="failed"}'] == 1
        assert values['adowh_jobs{state="pending"}'] == 1
        assert values["adowh_hook_check_last_ok"] == 0
        assert values["adowh_hook_check_consecutive_failures"] == 1
        assert values["adowh_reconcile_last_ok"] == 1
