"""Turn Azure DevOps client errors met during an admin request into API errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from webhook.ado import AdoAuthError, AdoError, AdoNotFound, AdoRuleError
from webhook.errors import ApiError, BadGateway, NotFound, ValidationFailed
from webhook.gateway import OrganizationPaused


@contextmanager
def ado_errors(not_found: str | None = None) -> Iterator[None]:
    """Map AdoAuthError → 400 ado_auth_failed, unreachable/5xx/429 → 502 ado_unreachable."""
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
    except OrganizationPaused as exc:
        raise BadGateway(str(exc), headers={"Retry-After": "30"}) from None
    except AdoError as exc:
        raise BadGateway(f"Azure DevOps is unreachable or failing: {exc.message}") from None
