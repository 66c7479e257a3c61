"""Every recorded Azure DevOps sample event parses (webhook.domain.hook_events).

The samples are the shared recordings in ../shared/azure-devops-samples/ (AZURE_DEVOPS.md 1.x);
work item events must yield the change they describe, the others (comments, creations) none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from webhook.domain.hook_events import HANDLED, parse_change

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "azure-devops-samples"
EVENTS = sorted(SAMPLES.glob("*.json")) if SAMPLES.is_dir() else []
pytestmark = pytest.mark.skipif(
    not EVENTS, reason=f"no Azure DevOps samples at {SAMPLES} (the shared folder is absent)"
)


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", EVENTS, ids=[p.name for p in EVENTS])
def test_every_sample_parses_without_error(path: Path) -> None:
    data = load(path)
    event_type = data.get("eventType")
    change = parse_change(str(event_type or ""), data.get("resource") or {})
    if event_type in HANDLED and "resource" in data:  # a delivery (subscription.json is not)
        assert change is not None and change.event_type == event_type
        assert change.work_item_id > 0
        assert change.rev is not None and change.rev > 0
        assert change.deleted is {"workitem.deleted": True, "workitem.restored": False}.get(
            event_type
        )
    else:
        assert change is None  # not a hook we act on (or not an event at all)


def test_the_updated_sample_gives_its_new_state_and_who_changed_it() -> None:
    path = SAMPLES / "workitem.updated.json"
    data = load(path)
    change = parse_change("workitem.updated", data["resource"])
    assert change is not None
    assert change.work_item_id == data["resource"]["workItemId"]
    assert change.state == data["resource"]["revision"]["fields"]["System.State"]
    assert change.rev == data["resource"]["rev"]
    assert change.by  # revisedBy
