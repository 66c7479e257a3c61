"""Issue 10.3 end to end: `ado-webhook serve` and the Azure DevOps stand-in as real processes."""

from __future__ import annotations

import re

import pytest

from tests.conftest import risk
from tests.e2e import rig, wait_for

# Once per storage engine (SPEC 6): SQLite, and PostgreSQL when a server is reachable.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("engine")]
MAC_TAG = re.compile(r"adowh-([0-9a-f]{8})-(\d+)-[0-9a-f]{16}")


def tracking(item: dict) -> list[str]:
    tags = [t.strip() for t in (item["fields"].get("System.Tags") or "").split(";")]
    return [t for t in tags if t.casefold().startswith("adowh-")]


def test_a_scanner_cannot_claim_the_next_risks_work_item(tmp_path) -> None:
    with rig(tmp_path) as r:
        r.setup_bugs()
        # The attacker learns the installation id from any work item and its risk id from 202.
        first = r.send(risk("attacker-1")).json()["risks"][0]["id"]
        (item,) = wait_for(lambda: r.items())
        (tag,) = tracking(item)
        match = MAC_TAG.fullmatch(tag)
        assert match and match.group(2) == str(first), tag
        installation = match.group(1)
        for forged in (f"adowh-{installation}-{first + 1}", f" ADOWH-{installation}-{first + 1}"):
            resp = r.post_risks(risk("attacker-2", tags=["sast", forged]))
            assert resp.status_code == 422, resp.text
            assert "risks.0.tags.1" in resp.json()["error"]["details"]
        assert [x["key"] for x in r.risks()] == ["attacker-1"]  # nothing stored
        # The victim's first create fails after Azure DevOps made the item: the retry finds
        # exactly that item by the tag recorded before sending, and files nothing else.
        r.sb.add_fault(
            kind="lost_response", method="POST", path_contains="/workitems/$", times=1, then="500"
        )
        victim = r.send(risk("victim")).json()["risks"][0]["id"]
        assert victim == first + 1
        r.settle()
        mine = [w for w in r.items() if any(t.split("-")[2] == str(victim) for t in tracking(w))]
        assert len(mine) == 1 and len(r.items()) == 2
        (victim_tag,) = tracking(mine[0])
        assert MAC_TAG.fullmatch(victim_tag)
        listed = {x["key"]: x for x in r.risks()}
        assert listed["victim"]["work_item"]["id"] == mine[0]["id"]
        detail = r.admin("GET", f"/admin/risks/{victim}").json()
        events = [h["event"] for h in detail["history"]]
        assert events.count("work_item_adopted") == 1 and "work_item_created" not in events
        assert r.failed_jobs() == 0
