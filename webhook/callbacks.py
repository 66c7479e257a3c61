"""Outbound `risk.resolution_changed` callbacks to scanners, Standard-Webhooks signed."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import requests

from webhook import __version__, metrics
from webhook.domain.signatures import sign
from webhook.store import Job, Store
from webhook.worker import RetryLater

log = logging.getLogger(__name__)
TIMEOUT = (5.0, 15.0)
USER_AGENT = f"ado-webhook/{__version__} (callback)"


class CallbackSender:
    """POSTs a risk's new status to its source's callback URL until a 2xx acknowledges it."""

    def __init__(self, store: Store, session: requests.Session | None = None) -> None:
        self.store = store
        self.session = session or requests.Session()

    def payload(self, job: Job) -> tuple[dict[str, Any], str, str] | None:
        """(event, callback URL, current secret), or None when there is nowhere to send it."""
        assert job.risk_id is not None
        risk = self.store.get_risk_summary(job.risk_id)
        if risk is None:
            return None
        source = self.store.find_source(risk["source"], fresh=True)  # sign with the newest
        if source is None or not source.callback_url:
            return None
        event = {
            "type": "risk.resolution_changed",
            "risk": {
                "id": risk["id"],
                "source": risk["source"],
                "key": risk["key"],
                "status": job.payload["status"],
                "resolution": risk["resolution"],
                "work_item": risk["work_item"],
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
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, webhook_id, timestamp, body),
        }
        try:
            resp = self.session.post(
                url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False
            )
        except requests.RequestException as exc:
            metrics.CALLBACKS.labels("error").inc()
            raise RetryLater(f"callback to scanner failed: {type(exc).__name__}") from None
        if not 200 <= resp.status_code < 300:
            metrics.CALLBACKS.labels(str(resp.status_code)).inc()
            raise RetryLater(f"callback answered HTTP {resp.status_code}")
        metrics.CALLBACKS.labels("ok").inc()
