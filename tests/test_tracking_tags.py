"""Tracking tags nobody else can write (issue 10.3), in process against the Azure DevOps stand-in.

A scanner used to be able to put `adowh-<installation>-<next risk id>` on its own risk; when the
victim's first create failed transiently, the retry adopted the attacker's item and then failed
forever on the unique link. Now: the reserved namespace is refused (422), the tag carries a MAC
keyed by a secret scanners never see, and a retry adopts only an item of proven provenance.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import ADMIN_TOKEN, Scanner, make_settings, pat_connection, risk
from webhook import create_app
from webhook.domain.templates import legacy_tracking_tag, split_tags
from webhook.sandbox import Sandbox
from webhook.services import Services
from webhook.storage.sqlite.storage import SqliteStorage
from webhook.storage.types import Job

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MAC_TAG = re.compile(r"adowh-[0-9a-f]{8}-(\d+)-[0-9a-f]{16}")


class World:
    """The service (Flask test client, no worker) wired to a stand-in, jobs run by hand."""

    def __init__(self, sb: Sandbox, app: Flask) -> None:
        self.sb = sb
        self.app = app
        self.client: FlaskClient = app.test_client()
        self.services: Services = app.extensions["adowh"]
        self.store: SqliteStorage = self.services.store
        self.sync = self.services.sync
        resp = self.client.post(
            "/admin/connections",
            headers=ADMIN,
            json=pat_connection(sb.org_url, sb.pat, name="sb"),
        )
        assert resp.status_code == 201, resp.get_json()
        self.connection_id = resp.get_json()["id"]
        resp = self.client.post(
            "/admin/templates",
            headers=ADMIN,
            json={
                "name": "bugs",
                "connection_id": self.connection_id,
                "project": "AppSec",
                "work_item_type": "Bug",
                "auto_create": True,
                "severity_threshold": "low",
            },
        )
        assert resp.status_code == 201, resp.get_json()
        self.template_id = resp.get_json()["id"]
        self.scanner = Scanner(self.client, ADMIN)

    def send(self, *risks: dict[str, Any]) -> list[int]:
        resp = self.scanner.send({"risks": list(risks)})
        assert resp.status_code == 202, resp.get_json()
        return [r["id"] for r in resp.get_json()["risks"]]

    def claim(self, risk_id: int) -> Job:
        job = self.store.claim_job("test-worker")
        assert job is not None and job.risk_id == risk_id and job.kind == "create_work_item"
        return job

    def run_create(self, risk_id: int) -> Job:
        """Claim the risk's create job and perform it once; return the job as claimed."""
        job = self.claim(risk_id)
        self.sync.create_work_item(job)
        assert self.store.complete_job(job)
        return job

    def fail_once(self, risk_id: int) -> None:
        """An attempt that ended transiently (its outcome lost): the job waits for a retry."""
        job = self.claim(risk_id)
        assert self.store.retry_job_later(job, "Azure DevOps unavailable", 0.0)

    def items(self) -> list[dict[str, Any]]:
        return [w for w in self.sb.work_items() if not w["deleted"]]

    def items_tagged(self, tag: str) -> list[dict[str, Any]]:
        wanted = tag.casefold()
        return [
            w
            for w in self.items()
            if wanted in {t.casefold() for t in split_tags(w["fields"].get("System.Tags"))}
        ]

    def link(self, risk_id: int) -> Any:
        return self.store.work_item_for(risk_id)

    def history(self, risk_id: int) -> list[dict[str, Any]]:
        detail = self.client.get(f"/admin/risks/{risk_id}", headers=ADMIN).get_json()
        return detail["history"]  # type: ignore[no-any-return]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with Sandbox() as sb:
        settings = make_settings(tmp_path, WEBHOOK_ALLOWED_ORG_HOSTS=urlsplit(sb.url).netloc)
        app = create_app(settings)
        try:
            yield World(sb, app)
        finally:
            app.extensions["adowh"].store.db.close()


# ---- the reserved namespace is refused where untrusted input enters ------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        # The input: the victim's (next) legacy tracking tag.
        ({"risks": [risk("A", tags=["sast", "pci", "adowh-1a2b3c4d-2"])]}, "risks.0.tags.2"),
        ({"risk": risk("A", tags=["ADOWH-x-7-0123456789abcdef"])}, "risk.tags.0"),
        ({"risks": [risk("ok"), risk("B", tags=["  adowh-x"])]}, "risks.1.tags.0"),
        ({"risk": risk("A", tags=["ok", "\x01adowh-x"])}, "risk.tags.1"),
    ],
)
def test_scanner_tags_in_the_reserved_namespace_are_422(
    client: FlaskClient, admin: dict[str, str], payload: dict[str, Any], field: str, settings
) -> None:
    scanner = Scanner(client, admin)
    resp = scanner.send(payload)
    assert resp.status_code == 422, resp.get_json()
    error = resp.get_json()["error"]
    assert field in error["details"], error["details"]
    assert "reserved" in " ".join(error["details"][field])
    listed = client.get("/admin/risks", headers=admin).get_json()
    assert listed["total"] == 0  # nothing stored


def test_scanner_tags_that_merely_mention_the_prefix_are_accepted(client, admin) -> None:
    scanner = Scanner(client, admin)
    resp = scanner.send({"risk": risk("A", tags=["adowh", "not-adowh-1", "ADO WH-1"])})
    assert resp.status_code == 202, resp.get_json()


@pytest.mark.parametrize("tags", [["adowh-1a2b3c4d-2"], ["Security", " Adowh-x"]])
def test_template_tags_in_the_reserved_namespace_are_422(world: World, tags: list[str]) -> None:
    body = {
        "name": "evil",
        "connection_id": world.connection_id,
        "project": "AppSec",
        "work_item_type": "Bug",
        "auto_create": True,
        "severity_threshold": "low",
        "tags": tags,
    }
    resp = world.client.post("/admin/templates", headers=ADMIN, json=body)
    assert resp.status_code == 422, resp.get_json()
    field = f"tags.{len(tags) - 1}"
    assert field in resp.get_json()["error"]["details"], resp.get_json()
    patched = world.client.patch(
        f"/admin/templates/{world.template_id}", headers=ADMIN, json={"tags": tags}
    )
    assert patched.status_code == 422 and field in patched.get_json()["error"]["details"]
    assert world.client.get("/admin/templates", headers=ADMIN).get_json()["total"] == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"System.Tags": "adowh-1a2b3c4d-2"},  # the acceptance run's input: dropped silently
        {"system.tags": "Security"},
        {"System.Title": "fixed title"},
        {"Microsoft.VSTS.TCM.ReproSteps": "<p>x</p>"},
    ],
)
def test_template_fields_the_service_writes_itself_are_422(
    world: World, fields: dict[str, str]
) -> None:
    body = {
        "name": "overrides",
        "connection_id": world.connection_id,
        "project": "AppSec",
        "work_item_type": "Bug",
        "auto_create": True,
        "severity_threshold": "low",
        "fields": fields,
    }
    resp = world.client.post("/admin/templates", headers=ADMIN, json=body)
    assert resp.status_code == 422, resp.get_json()
    (name,) = fields
    assert f"fields.{name}" in resp.get_json()["error"]["details"], resp.get_json()
    assert world.client.get("/admin/templates", headers=ADMIN).get_json()["total"] == 1


# ---- the tag itself ----------------------------------------------------------------------


def test_work_items_carry_one_unforgeable_tracking_tag(world: World) -> None:
    (rid,) = world.send(risk("A", tags=["sast"]))
    world.run_create(rid)
    (item,) = world.items()
    tags = split_tags(item["fields"]["System.Tags"])
    tracking = [t for t in tags if t.startswith("adowh-")]
    assert len(tracking) == 1 and MAC_TAG.fullmatch(tracking[0]), tags
    assert MAC_TAG.fullmatch(tracking[0]).group(1) == str(rid)  # type: ignore[union-attr]
    assert tracking[0] != legacy_tracking_tag(world.store.installation_id(), rid)
    assert world.link(rid).tag == tracking[0]


def test_stored_reserved_tags_are_never_written_to_an_item(world: World) -> None:
    """Risks and templates stored before the 422 existed cannot smuggle a tracking tag."""
    (rid,) = world.send(risk("A", tags=["sast"]))
    forged = legacy_tracking_tag(world.store.installation_id(), rid + 1)
    with world.store.db.write() as conn:
        conn.execute("UPDATE risks SET tags=? WHERE id=?", (json.dumps(["sast", forged]), rid))
        conn.execute("UPDATE templates SET tags=?", (json.dumps([forged.upper(), "team"]),))
    world.run_create(rid)
    (item,) = world.items()
    tags = split_tags(item["fields"]["System.Tags"])
    assert forged.casefold() not in {t.casefold() for t in tags}
    assert {"sast", "team"} <= set(tags)
    assert len([t for t in tags if t.startswith("adowh-")]) == 1


def test_tag_is_stable_across_restarts_and_secret_key_rotation(tmp_path: Path) -> None:
    old_key = Fernet.generate_key().decode()
    first = Services.from_settings(make_settings(tmp_path, WEBHOOK_SECRET_KEY=old_key))
    first.store.db.migrate()
    key = first.store.tracking_key()
    installation = first.store.installation_id()
    first.store.db.close()
    # A restart with a rotated WEBHOOK_SECRET_KEY (new key first, the old one kept).
    rotated = f"{Fernet.generate_key().decode()},{old_key}"
    second = Services.from_settings(make_settings(tmp_path, WEBHOOK_SECRET_KEY=rotated))
    assert second.store.tracking_key() == key
    assert second.store.installation_id() == installation
    second.store.db.close()
    # Without any key that decrypts it the service says so instead of inventing a new tag.
    stranger = Services.from_settings(make_settings(tmp_path))
    with pytest.raises(ValueError, match="WEBHOOK_SECRET_KEY"):
        stranger.store.tracking_key()
    stranger.store.db.close()


def test_tracking_key_is_made_once_and_never_stored_in_clear(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    stores = [Services.from_settings(settings).store for _ in range(3)]
    stores[0].db.migrate()
    keys = {store.tracking_key() for store in stores}
    assert len(keys) == 1
    (key,) = keys
    assert len(key) == 32
    rows = dict(stores[0].db.conn.execute("SELECT key, value FROM meta").fetchall())
    assert "tracking_key_enc" in rows and key.hex() not in rows["tracking_key_enc"]
    for store in stores:
        store.db.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("webhook.db*"))
    assert key not in raw and key.hex().encode() not in raw


# ---- provenance before adopting (the scenario at the sync level) -----------------


def plant_attackers_item(world: World, attacker: int, victim: int) -> dict[str, Any]:
    """The state an attack left before this change: the attacker's risk linked to an item that
    carries its own legacy tag and the victim's, created by the service from the template."""
    installation = world.store.installation_id()
    tags = f"sast; high; {legacy_tracking_tag(installation, victim)}; " + legacy_tracking_tag(
        installation, attacker
    )
    item = world.sb.create_item("AppSec", "Bug", {"System.Title": "A", "System.Tags": tags})
    assert world.store.link_work_item(
        attacker,
        connection_id=world.connection_id,
        template_id=world.template_id,
        project="AppSec",
        work_item_type="Bug",
        item=item,
        tag=legacy_tracking_tag(installation, attacker),
        adopted=False,
        state_category="Proposed",
        rendered_severity="high",
    )
    return item


def test_retry_across_the_upgrade_never_adopts_the_attackers_item(world: World) -> None:
    attacker, victim = world.send(risk("A"), risk("V"))
    planted = plant_attackers_item(world, attacker, victim)
    world.run_create(attacker)  # already linked: nothing to do
    # The victim's first attempt (before the upgrade, legacy tag) failed transiently.
    world.fail_once(victim)
    job = world.run_create(victim)
    assert job.attempts == 2
    link = world.link(victim)
    assert link is not None and link.ado_id != planted["id"]
    assert world.link(attacker).ado_id == planted["id"]  # untouched
    assert MAC_TAG.fullmatch(link.tag) and len(world.items_tagged(link.tag)) == 1
    assert len(world.items()) == 2
    refused = [h for h in world.history(victim) if h["event"] == "work_item_adoption_refused"]
    assert refused and refused[0]["detail"]["items"][0]["id"] == planted["id"]
    reasons = " ".join(refused[0]["detail"]["items"][0]["reasons"])
    assert "other tracking tags" in reasons and f"linked to risk {attacker}" in reasons
    assert [h["event"] for h in world.history(victim)][-1] == "work_item_created"
    assert world.store.list_jobs("failed", 1, 10)[1] == 0


@pytest.mark.parametrize(
    ("type_name", "extra_tag", "reason"),
    [
        ("Task", None, "is a 'Task', not a 'Bug'"),  # the right tag on the wrong type
        ("Bug", "adowh-{inst}-{other}", "other tracking tags"),
    ],
)
def test_an_unlinked_item_with_the_legacy_tag_is_adopted_only_if_it_is_ours(
    world: World, type_name: str, extra_tag: str | None, reason: str
) -> None:
    (victim,) = world.send(risk("V"))
    installation = world.store.installation_id()
    tags = [legacy_tracking_tag(installation, victim)]
    if extra_tag:
        tags.append(extra_tag.format(inst=installation, other=victim + 1))
    planted = world.sb.create_item(
        "AppSec", type_name, {"System.Title": "x", "System.Tags": "; ".join(tags)}
    )
    world.fail_once(victim)
    world.run_create(victim)
    link = world.link(victim)
    assert link.ado_id != planted["id"] and MAC_TAG.fullmatch(link.tag)
    refused = [h for h in world.history(victim) if h["event"] == "work_item_adoption_refused"]
    assert reason in " ".join(refused[0]["detail"]["items"][0]["reasons"])


def test_a_legacy_job_still_adopts_the_item_its_first_attempt_made(world: World) -> None:
    """Compatibility: a create pending across the upgrade whose attempt 1 did create its item
    (legacy tag, right project and type, linked to nobody) adopts it: still exactly one."""
    (victim,) = world.send(risk("V"))
    legacy = legacy_tracking_tag(world.store.installation_id(), victim)
    made = world.sb.create_item("AppSec", "Bug", {"System.Title": "V", "System.Tags": legacy})
    world.fail_once(victim)
    world.run_create(victim)
    assert world.link(victim).ado_id == made["id"] and world.link(victim).tag == legacy
    assert len(world.items()) == 1
    assert world.history(victim)[-1]["event"] == "work_item_adopted"


def test_a_lost_create_response_is_adopted_by_the_tag_recorded_before_sending(
    world: World,
) -> None:
    (rid,) = world.send(risk("V"))
    world.sb.add_fault(
        kind="lost_response", method="POST", path_contains="/workitems/$", times=1, then="500"
    )
    job = world.claim(rid)
    with pytest.raises(Exception):  # noqa: B017 - whatever the client makes of a lost answer
        world.sync.create_work_item(job)
    assert world.store.retry_job_later(job, "lost", 0.0)
    (made,) = world.items()  # Azure DevOps did create it
    recorded = json.loads(
        world.store.db.conn.execute("SELECT payload FROM jobs WHERE id=?", (job.id,)).fetchone()[0]
    )["tag"]
    assert MAC_TAG.fullmatch(recorded) and recorded in made["fields"]["System.Tags"]
    world.run_create(rid)
    assert world.link(rid).ado_id == made["id"] and world.link(rid).tag == recorded
    assert len(world.items()) == 1
