"""What the worker and the job handlers share: kinds, lanes, outcomes, handler shapes.

Dependencies point one way: :mod:`webhook.worker` (which performs jobs) and the handlers
(:mod:`webhook.sync`, :mod:`webhook.callbacks`, and :mod:`webhook.gateway`, which may ask for a
retry) import this module; neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.domain.jobs import JobKind, Lane
from webhook.storage.types import Job

__all__ = [
    "BatchHandler",
    "Handler",
    "Job",
    "JobKind",
    "Lane",
    "PeriodicTask",
    "PermanentFailure",
    "RetryLater",
]


class RetryLater(Exception):
    """The job cannot finish now; try again later (counts as an attempt unless told otherwise).

    ``delay``: seconds to wait (None: the worker's backoff); ``count_attempt=False`` makes it a
    pause that never uses up the job's attempts (webhook.worker, "Bounded retries");
    ``bounded=False`` keeps retrying with the capped backoff past the attempt limit: for an
    outside party being down (a scanner's callback endpoint), whose work SPEC 4 says is retried
    until acknowledged, unlike a fault of the job itself.
    """

    def __init__(
        self,
        message: str,
        *,
        delay: float | None = None,
        count_attempt: bool = True,
        bounded: bool = True,
    ):
        super().__init__(message)
        self.delay = delay
        self.count_attempt = count_attempt
        self.bounded = bounded


class PermanentFailure(Exception):
    """The job cannot succeed without a person changing something (it becomes `failed`)."""


# Performs one claimed job; returns normally when done, raises to retry or fail it.
Handler = Callable[[Job], None]
# Performs several claimed jobs of one kind at once; returns the exceptions of those that did
# not finish, by job id (the others are done).
BatchHandler = Callable[[list[Job]], Mapping[int, Exception]]


@dataclass
class PeriodicTask:
    """Housekeeping run every `interval` seconds by one worker at a time (leased for `lease`
    seconds); `run` returns the result stored in periodic_status."""

    name: str
    interval: float
    run: Callable[[], dict[str, Any]]
    lease: float = 600.0
