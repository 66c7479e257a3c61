"""End to end through `ado-webhook serve` against the Azure DevOps stand-in (real HTTP)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from html.parser import HTMLParser

import pytest

from tests.conftest import pat_connection, risk
from tests.e2e import rig, wait_for

# Once per storage engine (SPEC 6): SQLite, and PostgreSQL when a server is reachable.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("engine")]

TRACK = "adowh-"


def tracking_tags(item: dict) -> list[str]:
    tags = [t.strip() for t in (item["fields"].get("System.Tags") or "").split(";")]
    return [t for t in tags if t.startswith(TRACK)]


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)


def test_connection_and_template_validation(tmp_path) -> None:
    with rig(tmp_path) as r:
        bad = r.admin(
            "POST",
            "/admin/connections",
            json=pat_connection(r.sb.org_url, "nope", name="x"),
        )
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "ado_auth_failed"
        assert "nope" not in bad.text
        evil = r.admin(
            "POST",
            "/admin/connections",
            json=pat_connection("https://dev.azure.com.evil.example/x", "t", name="x"),
        )
        assert evil.status_code == 422
        unreachable = r.admin(
            "POST",
            "/admin/connections",
            json=pat_connection("https://dev.azure.com/x-" + "y" * 5, "t", name="x"),
        )
        assert unreachable.status_code == 502
        assert unreachable.json()["error"]["code"] == "ado_unreachable"
        created = r.admin(
            "POST",
            "/admin/connections",
            json=pat_connection(r.sb.org_url, r.sb.pat),
        )
        assert created.status_code == 201
        assert {"id", "name"} <= set(created.json()["projects"][0])
        assert r.sb.pat not in created.text
        conn = created.json()["id"]
        assert r.admin("POST", f"/admin/connections/{conn}/test").json()["ok"] is True
        types = r.admin("GET", f"/admin/connections/{conn}/projects/AppSec/work-item-types").json()
        bug = next(t for t in types["items"] if t["name"] == "Bug")
        assert {"name": "Resolved", "category": "Resolved"} in bug["states"]
        base = {
            "name": "t",
            "connection_id": conn,
            "auto_create": True,
            "severity_threshold": "high",
        }
        missing = r.admin(
            "POST", "/admin/templates", json={**base, "project": "Strict", "work_item_type": "Bug"}
        )
        assert missing.status_code == 422
        assert "Custom.Team" in missing.json()["error"]["message"]
        assert missing.json()["error"]["details"]["missing_fields"] == ["Custom.Team"]
        no_type = r.admin(
            "POST",
            "/admin/templates",
            json={**base, "project": "Platform", "work_item_type": "Bug"},
        )
        assert no_type.status_code == 422
        no_project = r.admin(
            "POST", "/admin/templates", json={**base, "project": "Nope", "work_item_type": "Bug"}
        )
        assert no_project.status_code == 422
        picklist = r.admin(
            "POST",
            "/admin/templates",
            json={
                **base,
                "project": "Strict",
                "work_item_type": "Bug",
                "fields": {"Custom.Team": "Green"},
            },
        )
        assert picklist.status_code == 422
        ok = r.admin(
            "POST",
            "/admin/templates",
            json={
                **base,
                "project": "Strict",
                "work_item_type": "Bug",
                "fields": {"Custom.Team": "Red"},
            },
        )
        assert ok.status_code == 201, ok.text
        assert r.admin("DELETE", f"/admin/connections/{conn}").status_code == 409


def test_routing_body_severity_comment_and_manual_export(tmp_path) -> None:
    with rig(tmp_path) as r:
        conn = r.connect()
        r.bugs(
            conn,
            name="sec-bugs",
            severity_threshold="high",
            tags=["security"],
            title_format="Scanner - Project '{project}' contains issue '{name}'",
        )
        tasks = r.template(
            name="backlog",
            connection_id=conn,
            project="Platform",
            work_item_type="Task",
            auto_create=True,
            severity_threshold="medium",
        )
        r.source()
        evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
        r.send(
            risk(
                "crit",
                severity="critical",
                project="shop",
                url="https://scanner.example/f/1",
                definition=f"**Bad** [x](javascript:alert(3)) {evil}",
                evidence=evil,
                proof="GET /?q=' OR 1=1",
                remediation="Use *parameters*.",
                assets=[
                    {"group": "host", "identifier": "db1"},
                    {"group": "repo", "identifier": evil},
                ],
            ),
            risk("high", severity="high"),
            risk("med", severity="medium"),
            risk("low", severity="low"),
        )
        wait_for(lambda: len(r.items()) == 3 and sum(1 for x in r.risks() if x["work_item"]) == 3)
        items = {tuple(tracking_tags(w)): w for w in r.items()}
        assert len(items) == 3
        by_type = Counter((w["project"], w["type"]) for w in r.items())
        assert by_type == {("AppSec", "Bug"): 2, ("Platform", "Task"): 1}
        crit = next(w for w in r.items() if "crit" in w["fields"]["System.Title"])
        assert crit["fields"]["System.Title"] == (
            "Scanner - Project 'shop' contains issue 'SQL injection crit'"
        )
        assert crit["fields"]["Microsoft.VSTS.Common.Severity"] == "1 - Critical"
        body = crit["fields"]["Microsoft.VSTS.TCM.ReproSteps"]
        parser = Elements()
        parser.feed(body)
        assert not {"script", "img", "iframe", "object", "embed", "style"} & set(parser.tags)
        assert "table" in parser.tags and "pre" in parser.tags and "a" in parser.tags
        assert all(not n.startswith("on") and n != "style" for n, _ in parser.attrs)
        assert all("javascript:" not in (v or "").lower() for _, v in parser.attrs)
        assert "db1" in body and "&lt;script&gt;" in body
        assert {"security", "critical"} <= {
            t.strip() for t in crit["fields"]["System.Tags"].split(";")
        }
        assert any(rel["url"] == "https://scanner.example/f/1" for rel in crit["relations"])
        task = next(w for w in r.items() if w["type"] == "Task")
        assert "Microsoft.VSTS.Common.Severity" not in task["fields"]
        assert task["fields"]["Microsoft.VSTS.Common.Priority"] == 3
        assert "System.Description" in task["fields"]

        listed = {x["key"]: x for x in r.risks()}
        assert listed["crit"]["work_item"]["id"] == crit["id"]
        assert listed["low"]["work_item"] is None

        # Severity change: one comment and the field updated, and no comment without a change.
        r.send(risk("high", severity="critical"))
        high = wait_for(
            lambda: next(
                (w for w in r.items() if "high" in w["fields"]["System.Title"] and w["comments"]),
                None,
            )
        )
        assert high["fields"]["Microsoft.VSTS.Common.Severity"] == "1 - Critical"
        r.send(risk("high", severity="critical"))
        r.send(risk("crit", severity="critical", name="SQL injection crit (renamed)"))
        r.settle()
        high = next(w for w in r.items() if w["id"] == high["id"])
        assert len(high["comments"]) == 1
        assert "Severity changed from High to Critical" in high["comments"][0]["text"]

        # Rising above a threshold files the item then; manual export for the rest.
        r.send(risk("low", severity="medium"))
        wait_for(lambda: len(r.items()) == 4)
        r.settle()
        r.send(risk("info-one", severity="info"))
        info_id = next(x["id"] for x in r.risks() if x["key"] == "info-one")
        export = r.admin(
            "POST", f"/admin/risks/{info_id}/work-item", json={"template_id": tasks["id"]}
        )
        assert export.status_code == 202
        wait_for(lambda: len(r.items()) == 5)
        r.settle()
        again = r.admin(
            "POST", f"/admin/risks/{info_id}/work-item", json={"template_id": tasks["id"]}
        )
        assert again.status_code == 409


def test_faults_lose_nothing_and_duplicate_nothing(tmp_path) -> None:
    with rig(tmp_path) as r:
        r.setup_bugs()
        # 429 with Retry-After: the organization pauses, then the item is created.
        r.sb.add_fault(
            kind="status",
            status=429,
            retry_after="2",
            method="POST",
            path_contains="/workitems/$",
            times=1,
        )
        r.send(risk("rate-limited"))
        wait_for(lambda: len(r.items()) == 1, timeout=20)
        creates = [
            e
            for e in r.sb.requests_log()
            if e["method"] == "POST"
            and "/workitems/$" in e["path"]
            and e["query"].get("validateOnly") != "true"
        ]
        assert [e["status"] for e in creates] == [429, 200]
        gap = datetime.fromisoformat(
            creates[1]["at"].replace("Z", "+00:00")
        ) - datetime.fromisoformat(creates[0]["at"].replace("Z", "+00:00"))
        assert gap.total_seconds() >= 1.9

        # The response to a create is lost: the retry adopts the item instead of filing another.
        r.sb.add_fault(
            kind="lost_response", method="POST", path_contains="/workitems/$", times=1, then="500"
        )
        r.send(risk("lost"))
        r.settle(timeout=20)
        lost = [w for w in r.items() if "lost" in w["fields"]["System.Title"]]
        assert len(lost) == 1

        # An outage: every call fails for a while; nothing is lost, nothing doubles.
        r.sb.add_fault(kind="status", status=503, times=40)
        r.send(*[risk(f"outage-{i}") for i in range(20)])
        wait_for(lambda: len(r.items()) == 22, timeout=60)
        tags = Counter(t for w in r.items() for t in tracking_tags(w))
        assert all(n == 1 for n in tags.values()) and len(tags) == 22
        assert r.failed_jobs() == 0


def test_rule_error_fails_the_job_with_azure_devops_message_and_retry(tmp_path) -> None:
    with rig(tmp_path) as r:
        r.setup_bugs(name="strict", project="Strict", fields={"Custom.Team": "Red"})
        r.sb.add_fault(
            kind="status", status=400, method="POST", path_contains="/workitems/$", times=1
        )
        r.send(risk("rule"))
        failed = wait_for(lambda: r.jobs(state="failed"))
        assert failed[0]["kind"] == "create_work_item" and failed[0]["last_error"]
        assert r.admin("POST", f"/admin/jobs/{failed[0]['id']}/retry").status_code == 200
        wait_for(lambda: len(r.items()) == 1)


def test_two_workers_create_no_duplicates(tmp_path) -> None:
    with rig(tmp_path, latency=0.01) as r:
        r.setup_bugs(severity_threshold="info")
        r.start_extra_worker()
        r.start_extra_worker()
        for start in range(0, 150, 50):
            r.send(*[risk(f"k{i}") for i in range(start, start + 50)])
        wait_for(lambda: len(r.items()) >= 150, timeout=90)
        r.settle()
        tags = Counter(t for w in r.items() for t in tracking_tags(w))
        assert len(r.items()) == 150 and len(tags) == 150 and max(tags.values()) == 1


def test_service_principal_connection_and_credential_rotation(tmp_path) -> None:
    with rig(tmp_path) as r:
        sp = r.sb.sp
        created = r.admin(
            "POST",
            "/admin/connections",
            json={
                "name": "sp",
                "organization_url": r.sb.org_url,
                "auth": {"type": "service_principal", **sp},
            },
        )
        assert created.status_code == 201, created.text
        assert sp["client_secret"] not in created.text
        conn = created.json()["id"]
        assert created.json()["auth"] == {
            "type": "service_principal",
            "tenant_id": sp["tenant_id"],
            "client_id": sp["client_id"],
        }
        assert r.admin("POST", f"/admin/connections/{conn}/test").json()["ok"] is True
        token_calls = [e for e in r.sb.requests_log() if "oauth2" in e["path"]]
        assert token_calls, "the Entra token endpoint of the stand-in was used"
        bad = r.admin(
            "PATCH", f"/admin/connections/{conn}", json={"auth": {"type": "pat", "token": "wrong"}}
        )
        assert bad.status_code == 400
        good = r.admin(
            "PATCH",
            f"/admin/connections/{conn}",
            json={"auth": {"type": "pat", "token": r.sb.pat}, "name": "renamed"},
        )
        assert good.status_code == 200 and good.json()["auth"] == {"type": "pat"}
        assert r.admin("POST", f"/admin/connections/{conn}/test").json()["ok"] is True
        assert r.admin("DELETE", f"/admin/connections/{conn}").status_code == 204


# ---- content follows the risk; links people can open ------------------------------------------


def body_of(item: dict) -> str:
    return item["fields"]["Microsoft.VSTS.TCM.ReproSteps"]


def test_content_follows_the_risk_in_one_update_and_links_only_what_people_can_open(
    tmp_path,
) -> None:
    with rig(tmp_path, WEBHOOK_CONTENT_SYNC_SECONDS="3") as r:
        r.setup_bugs()
        db = [{"group": "host", "identifier": f"db{i}"} for i in range(1, 4)]
        r.send(
            risk("plain", evidence="first evidence", assets=db[:1]),
            risk("linked", url="https://scanner.example/f/7"),
        )
        wait_for(lambda: len(r.items()) == 2 and all(x["work_item"] for x in r.risks()))
        r.settle()
        ids = {x["key"]: x["work_item"]["id"] for x in r.risks()}
        plain, linked = r.sb.work_item(ids["plain"]), r.sb.work_item(ids["linked"])
        # WEBHOOK_PUBLIC_URL is set, yet nothing points at the admin API people cannot open.
        for item in (plain, linked):
            assert "/admin/" not in json.dumps(item)
        assert "<a" not in body_of(plain) and not plain["relations"]
        hrefs = Elements()
        hrefs.feed(body_of(linked))
        assert [v for n, v in hrefs.attrs if n == "href"] == ["https://scanner.example/f/7"]

        # Two reports within WEBHOOK_CONTENT_SYNC_SECONDS: one update, no comment.
        rev = plain["rev"]
        r.send(risk("plain", evidence="second evidence", assets=db[:2]))
        r.send(risk("plain", name="Renamed plain", evidence="third evidence", assets=db))
        wait_for(lambda: "third evidence" in body_of(r.sb.work_item(ids["plain"])))
        r.settle()
        plain = r.sb.work_item(ids["plain"])
        assert plain["rev"] == rev + 1
        assert plain["comments"] == []
        assert "db3" in body_of(plain) and "first evidence" not in body_of(plain)
        assert plain["fields"]["System.Title"] == "Renamed plain"  # nobody had changed it

        # A person's title wins over a rename by the scanner; the body still follows.
        r.sb.update_fields(ids["linked"], {"System.Title": "Ann's title"}, by="Ann <ann@x.example>")
        rev = r.sb.work_item(ids["linked"])["rev"]
        r.send(risk("linked", name="Renamed linked", url="https://scanner.example/f/7"))
        wait_for(lambda: "Renamed linked" in body_of(r.sb.work_item(ids["linked"])))
        r.settle()
        linked = r.sb.work_item(ids["linked"])
        assert linked["fields"]["System.Title"] == "Ann's title"
        assert linked["rev"] == rev + 1 and linked["comments"] == []

        # A severity change: field, comment and body in one revision.
        rev = plain["rev"]
        r.send(
            risk(
                "plain",
                name="Renamed plain",
                severity="critical",
                evidence="third evidence",
                assets=db,
            )
        )
        wait_for(lambda: r.sb.work_item(ids["plain"])["comments"])
        r.settle()
        plain = r.sb.work_item(ids["plain"])
        assert plain["rev"] == rev + 1
        assert plain["fields"]["Microsoft.VSTS.Common.Severity"] == "1 - Critical"
        assert "<td>Critical</td>" in body_of(plain) and "<td>High</td>" not in body_of(plain)
        [comment] = plain["comments"]
        assert "Severity changed from High to Critical" in comment["text"]
        assert "/admin/" not in comment["text"]


def test_backfill_applies_a_template_added_after_the_scan(tmp_path) -> None:
    with rig(tmp_path) as r:
        conn = r.connect()
        r.source()
        r.send(
            risk("a", severity="critical"),
            risk("b", severity="high"),
            risk("c", severity="low"),
            risk("d", severity="high", status="resolved"),
        )
        template = r.bugs(conn, severity_threshold="high")
        path = f"/admin/templates/{template['id']}/backfill"
        dry = r.admin("POST", path, json={"dry_run": True})
        assert dry.status_code == 200 and dry.json() == {"matched": 2, "queued": 0}
        assert r.jobs() == []
        real = r.admin("POST", path, json={"dry_run": False})
        assert real.json() == {"matched": 2, "queued": 2}
        wait_for(lambda: len(r.items()) == 2)
        assert r.admin("POST", path, json={"dry_run": False}).json() == {"matched": 0, "queued": 0}
        r.settle()
        assert sorted(x["key"] for x in r.risks() if x["work_item"]) == ["a", "b"]
        assert len(r.items()) == 2


def test_template_warns_without_hooks_and_registering_them_reconciles_at_once(tmp_path) -> None:
    with rig(tmp_path, WEBHOOK_RECONCILE_SECONDS="3600") as r:
        conn = r.connect()
        template = r.bugs(conn)
        assert template["hooks"]["registered"] is False
        assert "POST /admin/hooks" in template["hooks"]["message"]
        ready = r.admin("GET", "/readyz")
        assert [w["project"] for w in ready.json()["checks"]["service_hooks"]] == ["AppSec"]
        r.source()
        r.send(risk("R-1"))
        wi = wait_for(lambda: next(x for x in r.risks() if x["key"] == "R-1")["work_item"])
        r.settle()
        # Closed while no hook is registered: nothing is delivered.
        r.sb.set_state(wi["id"], "Closed")
        hooks = r.admin("POST", "/admin/hooks", json={"connection_id": conn, "project": "AppSec"})
        assert hooks.status_code == 201
        # Reconciliation runs now, not at its next interval an hour away.
        got = wait_for(
            lambda: (
                (x := next(x for x in r.risks() if x["key"] == "R-1"))["status"] == "resolved" and x
            )
        )
        history = r.admin("GET", f"/admin/risks/{got['id']}").json()["history"]
        assert any(h["detail"].get("via") == "reconcile" for h in history)
        changed = r.admin("PATCH", f"/admin/templates/{template['id']}", json={"tags": ["sec"]})
        assert changed.json()["hooks"] == {
            "registered": True,
            "healthy": True,
            "missing": [],
            "message": None,
        }
        assert r.admin("GET", "/readyz").json()["checks"]["service_hooks"] == "ok"


def test_a_title_edited_while_the_service_rewrites_it_is_kept(tmp_path) -> None:
    with rig(tmp_path, WEBHOOK_CONTENT_SYNC_SECONDS="1") as r:
        r.setup_bugs()
        r.send(risk("R-1"))
        wi = wait_for(lambda: next(x for x in r.risks() if x["key"] == "R-1")["work_item"])
        r.settle()
        path = f"/workitems/{wi['id']}"
        # The service reads the item (its title is still ours), then writes; a person renames
        # it in between: the write is refused whole, read again, and the person's title stays.
        r.sb.add_fault(kind="delay", delay=3, method="PATCH", path_contains=path, times=1)
        r.sb.clear_requests_log()
        r.send(risk("R-1", name="Renamed by the scanner"))
        wait_for(
            lambda: any(
                e["method"] == "GET" and e["path"].endswith(path) for e in r.sb.requests_log()
            )
        )
        r.sb.update_fields(wi["id"], {"System.Title": "Ann's title"}, by="Ann <ann@x.example>")
        wait_for(lambda: "Renamed by the scanner" in body_of(r.sb.work_item(wi["id"])))
        r.settle()
        item = r.sb.work_item(wi["id"])
        assert item["fields"]["System.Title"] == "Ann's title"
        assert r.failed_jobs() == 0
        patches = [e["status"] for e in r.sb.requests_log() if e["method"] == "PATCH"]
        assert patches[0] == 412 and patches[-1] == 200
