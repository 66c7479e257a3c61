"""Outbound `risk.resolution_changed` callbacks to scanners, Standard-Webhooks signed.

Each delivery is bounded (:mod:`webhook.outbound`): :data:`BOUNDS` — 5 s to connect, 15 s
per read, :data:`DEADLINE` seconds in all, and at most :data:`MAX_BODY_BYTES` of the answer
read (only its status matters; a longer body is cut and the connection dropped). One callback
host holds at most ``outbound.callback_host_share()`` worker threads and all callbacks together
``outbound.callbacks_share()``; a delivery over its share is tried again a few seconds later
without counting an attempt, so a slow scanner never holds up Azure DevOps work.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

import requests

from webhook import metrics, outbound
from webhook.domain.signatures import sign
from webhook.jobs import RetryLater
from webhook.storage.interfaces import Storage
from webhook.storage.types import Job
from webhook.version import __version__

log = logging.getLogger(__name__)
TIMEOUT = (5.0, 15.0)
DEADLINE = 20.0
MAX_BODY_BYTES = 4 * 1024
BOUNDS = outbound.Bounds(TIMEOUT[0], TIMEOUT[1], DEADLINE, MAX_BODY_BYTES, truncate=True)
USER_AGENT = f"ado-webhook/{__version__} (callback)"


def destination(url: str) -> str:
    """The share key of a callback URL: ``callback host:port`` (default port by scheme)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or (443 if parts.scheme.lower() == "https" else 80)
    return f"callback {(parts.hostname or '').lower()}:{port}"


class CallbackSender:
    """POSTs a risk's new status to its source's callback URL until a 2xx acknowledges it."""

    def __init__(
        self,
        store: Storage,
        session: requests.Session | None = None,
        bounds: outbound.Bounds | None = None,
    ) -> None:
        self.store = store
        self.session = session or outbound.new_session()
        self.bounds = bounds or BOUNDS

    def payload(self, job: Job) -> tuple[dict[str, Any], str, str] | None:
        """(event, callback URL, current secret), or None when there is nowhere to send it."""
        assert job.risk_id is not None
        risk = self.store.risks.get_risk_summary(job.risk_id)
        if risk is None:
            return None
        source = self.store.sources.find_source(risk.source, fresh=True)  # sign with the newest
        if source is None or not source.callback_url:
            return None
        event = {
            "type": "risk.resolution_changed",
            "risk": {
                "id": risk.id,
                "source": risk.source,
                "key": risk.key,
                "status": job.payload["status"],
                "resolution": asdict(risk.resolution) if risk.resolution else None,
                "work_item": asdict(risk.work_item) if risk.work_item else None,
            },
        }
        return event, source.callback_url, source.secrets[0]

    def send(self, job: Job) -> None:
        """Deliver one callback; raise RetryLater unless the scanner acknowledged it."""
        built = self.payload(job)
        if built is None:
            return
        event, url, secret = built
        body = json.dumps(event, separators=(",", ":")).encode()
        # A stable id lets the scanner drop duplicates of a retried delivery.
        webhook_id = f"msg_adowh_{job.id}"
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",  # the answer's body is not used
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, webhook_id, timestamp, body),
        }
        try:
            release = outbound.SHARES.acquire(
                [
                    ("callbacks", outbound.callbacks_share()),
                    (destination(url), outbound.callback_host_share()),
                ]
            )
        except outbound.DestinationBusy as exc:
            raise RetryLater(str(exc), delay=exc.delay, count_attempt=False) from None
        try:
            resp = outbound.send(
                self.session, "POST", url, bounds=self.bounds, data=body, headers=headers
            )
        except requests.RequestException as exc:
            metrics.CALLBACKS.labels("error").inc()
            # SPEC 4: retried with backoff until acknowledged, however long the scanner is down.
            raise RetryLater(
                f"callback to scanner failed: {_describe(exc)}", bounded=False
            ) from None
        finally:
            release()
        if not 200 <= resp.status_code < 300:
            metrics.CALLBACKS.labels(str(resp.status_code)).inc()
            raise RetryLater(f"callback answered HTTP {resp.status_code}", bounded=False)
        metrics.CALLBACKS.labels("ok").inc()


def _describe(exc: requests.RequestException) -> str:
    if isinstance(exc, outbound.DeadlineExceeded | outbound.ResponseTooLarge):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__
