"""Turn Azure DevOps client errors met during an admin request into API errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from webhook.ado import AdoAuthError, AdoError, AdoNotFound, AdoRateLimited, AdoRuleError
from webhook.errors import ApiError, BadGateway, NotFound, Unavailable, ValidationFailed
from webhook.gateway import OrganizationNotAllowed, OrganizationPaused, whole_seconds

# Retry-After for a 429 that did not say how long to wait (the worker waits as long).
DEFAULT_RATE_LIMIT_SECONDS = 30


def paused_error(exc: OrganizationPaused | AdoRateLimited) -> ApiError:
    """503 ``ado_paused`` with ``Retry-After`` in whole seconds (rounded up): for a paused
    organization, until its pause ends, naming it; for a 429 just met, its Retry-After (the
    client has paused the organization on it already). SPEC 4 "Pacing"."""
    if isinstance(exc, OrganizationPaused):
        left = exc.seconds_left()
        return Unavailable(
            f"{exc}; try again later",
            code="ado_paused",
            details={"organization": exc.organization, "retry_after_seconds": left},
            headers={"Retry-After": str(left)},
        )
    wait = exc.retry_after if exc.retry_after is not None else DEFAULT_RATE_LIMIT_SECONDS
    seconds = whole_seconds(wait)
    return Unavailable(
        f"Azure DevOps asked to wait (rate limited): {exc.message}; try again later",
        code="ado_paused",
        details={"retry_after_seconds": seconds},
        headers={"Retry-After": str(seconds)},
    )


@contextmanager
def ado_errors(not_found: str | None = None) -> Iterator[None]:
    """Map AdoAuthError → 400 ado_auth_failed, a pause or 429 → 503 ado_paused with
    Retry-After, unreachable/5xx → 502 ado_unreachable."""
    try:
        yield
    except AdoAuthError as exc:
        raise ApiError(
            f"Azure DevOps rejected the credentials: {exc.message}",
            code="ado_auth_failed",
            status=400,
        ) from None
    except AdoNotFound as exc:
        if not_found is not None:
            raise NotFound(f"{not_found}: {exc.message}", code="ado_not_found") from None
        raise BadGateway(f"Azure DevOps: {exc.message}") from None
    except AdoRuleError as exc:
        raise ValidationFailed(
            f"Azure DevOps refused it: {exc.message}", details={"azure_devops": [exc.message]}
        ) from None
    except (OrganizationPaused, AdoRateLimited) as exc:
        raise paused_error(exc) from None
    except OrganizationNotAllowed as exc:
        raise ApiError(exc.message, code="organization_not_allowed", status=409) from None
    except AdoError as exc:
        raise BadGateway(f"Azure DevOps is unreachable or failing: {exc.message}") from None
