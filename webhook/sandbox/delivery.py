"""Service hook delivery: one FIFO queue, one background sender, ADO's reply handling.

Reply handling follows AZURE_DEVOPS.md §2.3, time-scaled: 2xx is success; 408/502/503/504 (and
connection errors or timeouts) re-send the same notification after each of `retry_delays`;
any other status, or exhausted retries, puts the subscription `onProbation`; 410 makes it
`disabledBySystem` at once. Events raised while a subscription is not `enabled` are recorded
as dropped and never sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import requests

from .events import build_payload, matches, new_event_identity
from .state import Event, SandboxState, Subscription
from .wire import fmt_date, utcnow

TRANSIENT = frozenset({408, 502, 503, 504})
USER_AGENT = "VSServices/16.255.35513.1 (ado-webhook sandbox)"


@dataclass
class Delivery:
    """One notification: a payload for one subscription."""

    notification_id: int
    subscription_id: str
    event_type: str
    event_id: str
    work_item_id: int
    rev: int
    body: bytes
    generation: int


class DeliveryEngine:
    """Queue and send hook notifications from one background thread."""

    def __init__(
        self, state: SandboxState, retry_delays: Sequence[float], *, timeout: float = 10.0
    ) -> None:
        self.state = state
        self.cond = threading.Condition(state.lock)
        self.queue: deque[Delivery] = deque()
        self.retry_delays = tuple(retry_delays)
        self.timeout = timeout
        self.held = False
        self.busy = False
        self.duplicate_next = False
        self.generation = 0  # bumped by clear(): results of older deliveries are discarded
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the sender thread."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="sandbox-hooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the sender thread (queued notifications are abandoned)."""
        self._stopping.set()
        with self.cond:
            self.cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def publish(self, events: list[Event]) -> None:
        """Queue one notification per matching subscription; called with the state lock held."""
        state = self.state
        with self.cond:
            for event in events:
                event_id, created = new_event_identity()
                for sub in list(state.subscriptions.values()):
                    if not matches(sub, event):
                        continue
                    rev = event.update.rev if event.update else event.item.rev
                    if sub.status != "enabled":
                        self._record(
                            sub.id,
                            event.event_type,
                            event_id,
                            event.item.id,
                            rev,
                            "dropped",
                            reason=sub.status,
                        )
                        continue
                    notification_id = state.counters.take("notification")
                    payload = build_payload(state, sub, event, event_id, created, notification_id)
                    self.queue.append(
                        Delivery(
                            notification_id,
                            sub.id,
                            event.event_type,
                            event_id,
                            event.item.id,
                            rev,
                            json.dumps(payload, ensure_ascii=False).encode(),
                            self.generation,
                        )
                    )
            self.cond.notify_all()

    def hold(self) -> None:
        """Keep queued notifications until `release`."""
        with self.cond:
            self.held = True

    def release(self, order: str = "fifo") -> int:
        """Send held notifications, oldest first (`fifo`) or newest first (`reverse`)."""
        with self.cond:
            if order == "reverse":
                self.queue.reverse()
            self.held = False
            self.cond.notify_all()
            return len(self.queue)

    def duplicate(self) -> None:
        """Send the next notification twice (same event id)."""
        with self.cond:
            self.duplicate_next = True

    def clear(self) -> None:
        """Forget queued notifications and hold/duplicate modes."""
        with self.cond:
            self.generation += 1
            self.queue.clear()
            self.held = False
            self.duplicate_next = False
            self.cond.notify_all()

    def pending(self) -> int:
        """Return the number of queued notifications."""
        with self.cond:
            return len(self.queue)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or being sent; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.queue or self.busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(min(remaining, 0.5))
            return True

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self.cond:
                while not self._stopping.is_set() and (self.held or not self.queue):
                    self.cond.wait(0.5)
                if self._stopping.is_set():
                    return
                delivery = self.queue.popleft()
                duplicate, self.duplicate_next = self.duplicate_next, False
                sub = self.state.subscriptions.get(delivery.subscription_id)
                if sub is None or sub.status != "enabled":
                    reason = "deleted" if sub is None else sub.status
                    self._record_delivery(delivery, "dropped", reason=reason)
                    self.cond.notify_all()
                    continue
                target = dict(sub.consumer_inputs)
                self.busy = True
            try:
                self._deliver(delivery, target)
                if duplicate:
                    self._deliver(delivery, target, duplicate=True)
            finally:
                with self.cond:
                    self.busy = False
                    self.cond.notify_all()

    def _deliver(
        self, delivery: Delivery, target: dict[str, str], *, duplicate: bool = False
    ) -> None:
        delays = list(self.retry_delays)
        attempt = 0
        while True:
            attempt += 1
            status, error = self._post(delivery, target)
            with self.cond:
                self._record_delivery(
                    delivery,
                    status if status is not None else "error",
                    attempt=attempt,
                    error=error,
                    duplicate=duplicate or None,
                )
            if status is not None and 200 <= status < 300:
                return
            if status == 410:
                self._set_status(delivery, "disabledBySystem")
                return
            if (status is None or status in TRANSIENT) and delays:
                if self._stopping.wait(delays.pop(0)) or delivery.generation != self.generation:
                    return
                continue
            self._set_status(delivery, "onProbation")
            return

    def _post(self, delivery: Delivery, target: dict[str, str]) -> tuple[int | None, str | None]:
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
        for line in (target.get("httpHeaders") or "").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip():
                headers[key.strip()] = value.strip()
        user = target.get("basicAuthUsername") or ""
        password = target.get("basicAuthPassword") or ""
        auth = (user, password) if user or password else None
        try:
            with requests.post(
                target.get("url", ""),
                data=delivery.body,
                headers=headers,
                auth=auth,
                timeout=self.timeout,
                allow_redirects=False,
            ) as resp:
                return resp.status_code, None
        except requests.RequestException as exc:
            return None, f"{type(exc).__name__}: {exc}"

    def _set_status(self, delivery: Delivery, status: str) -> None:
        with self.cond:
            sub: Subscription | None = self.state.subscriptions.get(delivery.subscription_id)
            if sub is None or delivery.generation != self.generation:
                return
            if status == "onProbation" and sub.status != "enabled":
                return
            sub.status = status
            sub.modified_date = fmt_date(utcnow())
            if status == "onProbation":
                sub.last_probation_retry_date = sub.modified_date

    def _record_delivery(self, delivery: Delivery, status: int | str, **extra: Any) -> None:
        if delivery.generation != self.generation:
            return  # the sandbox was reset since this notification was queued
        self._record(
            delivery.subscription_id,
            delivery.event_type,
            delivery.event_id,
            delivery.work_item_id,
            delivery.rev,
            status,
            notification_id=delivery.notification_id,
            **extra,
        )

    def _record(
        self,
        sub_id: str,
        event_type: str,
        event_id: str,
        work_item_id: int,
        rev: int,
        status: int | str,
        **extra: Any,
    ) -> None:
        entry: dict[str, Any] = {
            "subscription_id": sub_id,
            "event_type": event_type,
            "event_id": event_id,
            "work_item_id": work_item_id,
            "rev": rev,
            "status": status,
            "at": fmt_date(utcnow()),
        }
        entry.update({k: v for k, v in extra.items() if v is not None})
        self.state.deliveries.append(entry)
