"""Standard Webhooks signing and verification over the raw body (pure functions)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

TOLERANCE_SECONDS = 5 * 60
MAX_SIGNATURES = 16


class SignatureError(Exception):
    """The request's Standard Webhooks headers are missing, malformed or do not match."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class SignedHeaders:
    webhook_id: str
    timestamp: int
    signatures: tuple[bytes, ...]


def secret_key(secret: str) -> bytes:
    """Decode the key part of a `whsec_` secret."""
    raw = secret.removeprefix("whsec_")
    return base64.b64decode(raw)


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Return the `v1,<base64>` signature for a message."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def parse_headers(
    webhook_id: str | None, timestamp: str | None, signature: str | None
) -> SignedHeaders:
    """Parse and sanity-check the three Standard Webhooks headers."""
    if not webhook_id or not timestamp or not signature:
        missing = [
            name
            for name, value in (
                ("webhook-id", webhook_id),
                ("webhook-timestamp", timestamp),
                ("webhook-signature", signature),
            )
            if not value
        ]
        raise SignatureError("missing_header", f"missing header(s): {', '.join(missing)}")
    if len(webhook_id) > 256 or not webhook_id.isprintable():
        raise SignatureError("malformed_id", "webhook-id is malformed")
    ts = timestamp.strip()
    if not ts.isascii() or not ts.isdigit() or len(ts) > 12:
        raise SignatureError("malformed_timestamp", "webhook-timestamp must be unix seconds")
    sigs: list[bytes] = []
    for part in signature.split(" ")[:MAX_SIGNATURES]:
        version, _, value = part.partition(",")
        if version != "v1" or not value:
            continue
        try:
            sigs.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not sigs:
        raise SignatureError("malformed_signature", "webhook-signature has no v1 signature")
    return SignedHeaders(webhook_id=webhook_id, timestamp=int(ts), signatures=tuple(sigs))


def verify(
    headers: SignedHeaders,
    body: bytes,
    secrets: Iterable[str],
    *,
    now: float,
    tolerance: int = TOLERANCE_SECONDS,
) -> None:
    """Raise SignatureError unless one signature matches one secret within the tolerance."""
    if abs(now - headers.timestamp) > tolerance:
        raise SignatureError("timestamp_out_of_range", "webhook-timestamp is outside ±5 minutes")
    signed = f"{headers.webhook_id}.{headers.timestamp}.".encode() + body
    for secret in secrets:
        expected = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
        for candidate in headers.signatures:
            if hmac.compare_digest(expected, candidate):
                return
    raise SignatureError("mismatch", "no webhook-signature matches")
