"""The admin API's JSON answers, byte for byte (keys, their order, null vs missing), as they
were when storage built them as dictionaries: storage now hands out dataclasses and the
schemas dump them, and nothing a client reads may change."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

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
