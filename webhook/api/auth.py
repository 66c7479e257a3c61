"""Admin bearer authentication (constant-time compare)."""

from __future__ import annotations

from flask import request

from webhook.crypto import tokens_equal
from webhook.errors import Unauthorized
from webhook.services import get_services


def require_admin() -> None:
    """before_request hook: reject requests without the admin bearer token."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    expected = get_services().settings.admin_token
    if scheme.lower() != "bearer" or not token or not tokens_equal(token.strip(), expected):
        raise Unauthorized(
            "missing or wrong admin token; send `Authorization: Bearer $WEBHOOK_ADMIN_TOKEN`",
            headers={"WWW-Authenticate": 'Bearer realm="ado-webhook admin"'},
        )
