"""Risk lists stay small however large the risks are (issue 10.8, first half).

`GET /admin/risks?per_page=1000` over large risks used to answer 129 MB and grow a worker to
643 MB: every item embedded every asset. Lists now show the first ASSETS_IN_LIST assets plus
`assets_total`; one risk (`GET /admin/risks/<id>`) still shows them all.
"""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.conftest import Scanner, risk
from webhook.storage.constants import ASSETS_IN_LIST

BIG_TEXT = "e" * (256 * 1024)


def assets(n: int, prefix: str = "h") -> list[dict[str, str]]:
    return [{"group": "host", "identifier": f"{prefix}-{i:05d}.example.com"} for i in range(n)]


def test_a_per_page_1000_list_of_large_risks_stays_small(
    client: FlaskClient, admin: dict[str, str], scanner: Scanner
) -> None:
    many = assets(10_000)
    for batch in range(2):
        body = {
            "risks": [
                risk(f"R-{batch}-{i}", assets=many, evidence=BIG_TEXT, definition=BIG_TEXT)
                for i in range(10)
            ]
        }
        assert scanner.send(body).status_code == 202
    resp = client.get("/admin/risks?per_page=1000", headers=admin)
    assert resp.status_code == 200
    # 20 risks x (10,000 assets + 512 KiB of text) is about 20 MB stored.
    assert len(resp.data) < 1_000_000, len(resp.data)
    page = resp.get_json()
    assert page["total"] == 20 and len(page["items"]) == 20
    for item in page["items"]:
        assert item["assets_total"] == 10_000
        assert item["assets"] == many[:ASSETS_IN_LIST]
        assert "evidence" not in item and "definition" not in item
    # One risk still shows everything.
    one = client.get(f"/admin/risks/{page['items'][0]['id']}", headers=admin).get_json()
    assert one["assets"] == many and one["assets_total"] == 10_000
    assert one["evidence"] == BIG_TEXT and one["definition"] == BIG_TEXT


def listed(client: FlaskClient, admin: dict[str, str], key: str) -> dict[str, Any]:
    page = client.get(f"/admin/risks?key={key}", headers=admin).get_json()
    return page["items"][0]  # type: ignore[no-any-return]


def test_small_and_empty_asset_lists_are_shown_whole_in_order(
    client: FlaskClient, admin: dict[str, str], scanner: Scanner
) -> None:
    few = assets(ASSETS_IN_LIST, "z")[::-1]  # not in sorted order: order is the scanner's
    odd = [{"group": 'quote " and \\ back', "identifier": "ünïcode 🙂 <b>"}]
    scanner.send(
        {
            "risks": [
                risk("few", assets=few),
                risk("one-more", assets=assets(ASSETS_IN_LIST + 1)),
                risk("none"),
                risk("odd", assets=odd),
            ]
        }
    )
    assert listed(client, admin, "few")["assets"] == few
    assert listed(client, admin, "few")["assets_total"] == ASSETS_IN_LIST
    more = listed(client, admin, "one-more")
    assert more["assets"] == assets(ASSETS_IN_LIST) and more["assets_total"] == ASSETS_IN_LIST + 1
    assert listed(client, admin, "none")["assets"] == []
    assert listed(client, admin, "none")["assets_total"] == 0
    assert listed(client, admin, "odd")["assets"] == odd
    # A scanner update replaces the assets; the list follows.
    scanner.send({"risk": risk("few", assets=assets(3))})
    assert listed(client, admin, "few")["assets_total"] == 3
