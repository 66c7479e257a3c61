"""Azure DevOps REST client: authentication, one response classifier, typed errors.

The core is sans-I/O: :func:`classify_response` turns any response into data or a typed
:class:`AdoError`, and :func:`parse_retry_after` reads ``Retry-After``. :class:`AdoClient` is a
thin adapter over a ``requests.Session``. Retries do not live here (the worker owns them); the
client only reports what happened precisely enough to decide.

Facts referenced as "facts §n" are in AZURE_DEVOPS.md (the project's Azure DevOps facts sheet).
Secrets (PAT, client secret, access token, Authorization header) never reach an exception
message, a repr or a log line.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

import requests
import urllib3.exceptions
from requests.auth import AuthBase

from webhook import outbound
from webhook.domain.orgurl import OrgUrl

__all__ = [
    "API_VERSION",
    "COMMENTS_API_VERSION",
    "ENTRA_SCOPE",
    "USER_AGENT",
    "AdoAuthError",
    "AdoClient",
    "AdoConflict",
    "AdoError",
    "AdoNotFound",
    "AdoPermissionError",
    "AdoRateLimited",
    "AdoRuleError",
    "AdoTransient",
    "EntraTokenProvider",
    "PatAuth",
    "RequestGuard",
    "ServicePrincipalAuth",
    "classify_response",
    "clear_token_cache",
    "parse_retry_after",
    "shared_token_provider",
    "validate_authority",
]

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        return metadata.version("ado-webhook")
    except metadata.PackageNotFoundError:
        # Running from a source checkout: fall back to the package's own version string.
        return str(getattr(sys.modules.get("webhook"), "__version__", "0+unknown"))


USER_AGENT = f"ado-webhook/{_version()} (+https://github.com/ado-webhook)"
API_VERSION = "7.1"
COMMENTS_API_VERSION = "7.1-preview.4"  # facts §4: comments are still preview in 7.1
ENTRA_SCOPE = "499b84ac-1321-427f-aa17-267ca6975798/.default"  # facts §8.2
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)
# The most one call may take in all (connect, send, headers, body), whatever each read takes.
DEFAULT_DEADLINE = 60.0
# The largest JSON answer read from Azure DevOps. Long-text fields hold up to 1M characters
# (facts [LIMITS]), so one work item with a few of them is a few MB once JSON-escaped; 32 MiB
# leaves room for that and for 200-item batches, comment pages and 20,000-id WIQL answers.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
# Entra ID token answers are a JSON object with one JWT (a few KB).
TOKEN_DEADLINE = 30.0
MAX_TOKEN_RESPONSE_BYTES = 64 * 1024
MAX_PAGES = 100
BATCH_SIZE = 200  # facts §5.2: workitemsbatch takes at most 200 ids
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CODE_RE = re.compile(r"^((?:TF|VS)\d+)\b")
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")
_TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}")
_GUIDISH_RE = re.compile(r"[A-Za-z0-9-]{1,64}")
# facts §3.3: updates are refused past 10,000 revisions with a 500 that retrying cannot fix.
_REVISION_LIMIT_RE = re.compile(r"only work items with up to [\d,.]+ revisions", re.I)


# --------------------------------------------------------------------------- errors


class AdoError(Exception):
    """Azure DevOps did not do what was asked."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type_key: str | None = None,
        retry_after: float | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type_key = type_key
        self.retry_after = retry_after
        self.method = method
        self.url = url
        match = _CODE_RE.match(message)
        self.code: str | None = match.group(1) if match else None

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, type_key={self.type_key!r}, "
            f"message={self.message!r})"
        )


class AdoAuthError(AdoError):
    """The credential was rejected (401, 203 sign-in page, redirect, non-JSON answer)."""


class AdoPermissionError(AdoAuthError):
    """The credential is valid but lacks a permission (HTTP 403)."""

    def __str__(self) -> str:
        return f"Permission denied (HTTP 403): {self.message}"


class AdoNotFound(AdoError):
    """The project, work item, type or subscription does not exist (or is not visible)."""


class AdoRuleError(AdoError):
    """Azure DevOps refused the content (rule error, invalid value, unknown field)."""


class AdoConflict(AdoError):
    """The work item changed underneath us (failed ``test`` on ``/rev``)."""


class AdoRateLimited(AdoError):
    """Azure DevOps blocked the request for exceeding its rate limit (HTTP 429)."""


class AdoTransient(AdoError):
    """A server error, timeout or network failure; worth retrying later."""

    def __init__(self, message: str, *, outcome_unknown: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.outcome_unknown = outcome_unknown

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, outcome_unknown="
            f"{self.outcome_unknown!r}, message={self.message!r})"
        )


# --------------------------------------------------------------------------- sans-I/O core


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Return the seconds to wait from a Retry-After value (delta-seconds or HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def classify_response(
    resp: requests.Response, *, read_only: bool | None = None, now: float | None = None
) -> Any:
    """Return the JSON of a successful response (None when empty) or raise a typed AdoError.

    ``read_only`` says whether the request could not have changed anything (default: true for
    GET/HEAD/OPTIONS); it decides ``AdoTransient.outcome_unknown`` on 5xx.
    """
    status = resp.status_code
    request = getattr(resp, "request", None)
    method = (getattr(request, "method", None) or "GET").upper()
    url = getattr(request, "url", None) or getattr(resp, "url", None)
    if read_only is None:
        read_only = method in _SAFE_METHODS
    now = time.time() if now is None else now
    retry_after = parse_retry_after(resp.headers.get("Retry-After"), now=now)
    ctx: dict[str, Any] = {
        "status": status,
        "retry_after": retry_after,
        "method": method,
        "url": url,
    }

    # facts §3.4 (203 trap, ISS97/ISS52): bad credentials can answer 203 + an HTML sign-in page.
    if status == 203:
        raise AdoAuthError(
            "Azure DevOps answered HTTP 203 with a sign-in page: the credential is invalid or "
            "expired",
            **ctx,
        )
    if 300 <= status < 400:
        target = urlsplit(resp.headers.get("Location", "")).netloc or "elsewhere"
        raise AdoAuthError(
            f"Azure DevOps redirected the request (HTTP {status}) to {target} instead of "
            "answering: the credential was rejected or the organization URL is wrong",
            **ctx,
        )
    if 200 <= status < 300:
        if status == 204 or not resp.content:
            return None
        if not _is_json(resp.headers.get("Content-Type")):
            ctype = resp.headers.get("Content-Type") or "no content type"
            raise AdoAuthError(
                f"Azure DevOps answered HTTP {status} with {ctype.split(';')[0]} instead of "
                "JSON (usually a sign-in page): the credential is invalid or expired, or the "
                "organization URL is wrong",
                **ctx,
            )
        try:
            return resp.json()
        except ValueError:
            raise AdoTransient(
                f"Azure DevOps answered HTTP {status} with malformed JSON",
                outcome_unknown=not read_only,
                **ctx,
            ) from None

    message, type_key = _error_details(resp)
    ctx["type_key"] = type_key
    code = _CODE_RE.match(message)
    code_text = code.group(1) if code else None
    if status == 401:
        raise AdoAuthError(message, **ctx)
    if status == 403:
        raise AdoPermissionError(message, **ctx)
    if status in (404, 410):
        raise AdoNotFound(message, **ctx)
    # facts §3.3: a failed `test` op is 412 live, but 400 VS402625 in other reports.
    if status in (409, 412) or (status == 400 and code_text == "VS402625"):
        raise AdoConflict(message, **ctx)
    if status == 429:
        raise AdoRateLimited(message, **ctx)
    if status == 408:
        raise AdoTransient(message, outcome_unknown=not read_only, **ctx)
    if status >= 500:
        if _REVISION_LIMIT_RE.search(message):
            raise AdoRuleError(message, **ctx)
        raise AdoTransient(message, outcome_unknown=not read_only, **ctx)
    if status == 400:
        raise AdoRuleError(message, **ctx)
    raise AdoError(message, **ctx)


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _error_details(resp: requests.Response) -> tuple[str, str | None]:
    """Return Azure DevOps' own error message (verbatim) and typeKey, or a plain fallback."""
    fallback = f"HTTP {resp.status_code} {resp.reason or ''}".strip()
    body: Any = None
    if _is_json(resp.headers.get("Content-Type")):
        try:
            body = resp.json()
        except ValueError:
            body = None
    if isinstance(body, Mapping):
        message = body.get("message")
        type_key = body.get("typeKey")
        type_key = type_key if isinstance(type_key, str) and type_key else None
        if isinstance(message, str) and message.strip():
            return message, type_key
        return fallback, type_key
    media = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if media == "text/plain" and resp.text.strip():
        return f"{fallback}: {resp.text.strip()[:300]}", None
    return fallback, None


# --------------------------------------------------------------------------- authentication


@dataclass(frozen=True)
class PatAuth:
    token: str = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.token, str) or not _TOKEN_RE.fullmatch(self.token):
            raise ValueError("the personal access token is empty or contains invalid characters")

    def header(self) -> str:
        """Return the Authorization header value: Basic with an empty user name (facts §8.1)."""
        return "Basic " + base64.b64encode(f":{self.token}".encode()).decode("ascii")


@dataclass(frozen=True)
class ServicePrincipalAuth:
    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.tenant_id, str) or not _TENANT_RE.fullmatch(self.tenant_id):
            raise ValueError("the tenant id must be a GUID or a domain name")
        if not isinstance(self.client_id, str) or not _GUIDISH_RE.fullmatch(self.client_id):
            raise ValueError("the client id must be the application (client) id GUID")
        if not isinstance(self.client_secret, str) or not self.client_secret:
            raise ValueError("the client secret is empty")


def validate_authority(url: str) -> str:
    """Check an Entra ID authority URL (https, or http on loopback); return it normalized."""
    if not isinstance(url, str) or not url or not url.isascii():
        raise ValueError("the Entra authority must be an ASCII URL")
    if any(c.isspace() or c == "\\" for c in url):
        raise ValueError("the Entra authority must not contain spaces or backslashes")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        host = (parts.hostname or "").lower()
        _ = parts.port  # raises ValueError on an invalid port
    except ValueError:
        raise ValueError("the Entra authority has an invalid port") from None
    if scheme not in ("https", "http") or not host:
        raise ValueError("the Entra authority must be an https:// URL")
    if scheme == "http" and host not in LOOPBACK_HOSTS:
        raise ValueError("the Entra authority must use https (http is allowed only for loopback)")
    if "@" in parts.netloc:
        raise ValueError("the Entra authority must not contain a user name or password")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError("the Entra authority must not have a query or fragment")
    return url.rstrip("/")


class EntraTokenProvider:
    """Client-credentials access tokens for Azure DevOps, cached and renewed before expiry.

    Each token request is bounded (:mod:`webhook.outbound`): ``timeout`` (connect, read)
    seconds, at most ``deadline`` seconds in all (default :data:`TOKEN_DEADLINE`) and
    ``max_bytes`` of answer (default :data:`MAX_TOKEN_RESPONSE_BYTES`); beyond them it fails as
    :class:`AdoTransient`.
    """

    # facts §8.2: tokens last about an hour and there is no refresh token; renew early.
    RENEW_BEFORE = 300.0
    DEFAULT_LIFETIME = 600.0

    def __init__(
        self,
        authority: str,
        auth: ServicePrincipalAuth,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        deadline: float | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.authority = validate_authority(authority)
        self.auth = auth
        self._session = session or outbound.new_session()
        self._clock = clock
        self._bounds = outbound.Bounds(
            timeout[0],
            timeout[1],
            TOKEN_DEADLINE if deadline is None else deadline,
            MAX_TOKEN_RESPONSE_BYTES if max_bytes is None else max_bytes,
        )
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    @property
    def token_url(self) -> str:
        """Return the v2.0 token endpoint for the tenant."""
        return f"{self.authority}/{quote(self.auth.tenant_id, safe='')}/oauth2/v2.0/token"

    def token(self) -> str:
        """Return a valid access token, fetching a new one when the cached one is near expiry."""
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self, token: str | None = None) -> None:
        """Forget the cached token (only if it equals ``token``, when given)."""
        with self._lock:
            if token is None or token == self._token:
                self._token = None

    def _fetch(self) -> None:
        started = self._clock()
        secrets = (self.auth.client_secret,)
        error: AdoError | None = None
        try:
            resp = outbound.send(
                self._session,
                "POST",
                self.token_url,
                bounds=self._bounds,
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.auth.client_id,
                    "client_secret": self.auth.client_secret,
                    "scope": ENTRA_SCOPE,
                },
                headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            )
        except requests.RequestException as exc:
            # Raised outside the except block so the original (unscrubbed) text is not chained.
            error = AdoTransient(
                f"Entra ID token request failed: {_scrub(_describe(exc), secrets)}",
                outcome_unknown=False,
                method="POST",
                url=self.token_url,
            )
        if error is not None:
            raise error
        token, lifetime = _parse_token_response(resp, secrets, self.token_url, started)
        self._token = token
        self._renew_at = started + lifetime - min(self.RENEW_BEFORE, 0.2 * lifetime)


def _parse_token_response(
    resp: requests.Response, secrets: Sequence[str], url: str, now: float
) -> tuple[str, float]:
    status = resp.status_code
    retry_after = parse_retry_after(resp.headers.get("Retry-After"), now=now)
    ctx: dict[str, Any] = {
        "status": status,
        "method": "POST",
        "url": url,
        "retry_after": retry_after,
    }
    body: Any = None
    if _is_json(resp.headers.get("Content-Type")):
        try:
            body = resp.json()
        except ValueError:
            body = None
    if status == 200 and isinstance(body, Mapping):
        token = body.get("access_token")
        if isinstance(token, str) and token:
            try:
                lifetime = float(body.get("expires_in", EntraTokenProvider.DEFAULT_LIFETIME))
            except (TypeError, ValueError):
                lifetime = EntraTokenProvider.DEFAULT_LIFETIME
            if not math.isfinite(lifetime) or lifetime <= 0:
                lifetime = EntraTokenProvider.DEFAULT_LIFETIME
            return token, lifetime
    if isinstance(body, Mapping) and isinstance(body.get("error"), str):
        error_key = body["error"]
        description = body.get("error_description")
        text = description if isinstance(description, str) and description else error_key
        message = _scrub(f"Entra ID refused the token request ({error_key}): {text}", secrets)
        ctx["type_key"] = error_key
    else:
        message = f"Entra ID token request failed (HTTP {status})"
    if status == 429 or status >= 500 or status == 408:
        raise AdoTransient(message, outcome_unknown=False, **ctx)
    if status == 200:
        raise AdoTransient("Entra ID answered without an access token (unexpected response)", **ctx)
    raise AdoAuthError(message, **ctx)


_provider_cache: dict[tuple[str, str, str], EntraTokenProvider] = {}
_provider_lock = threading.Lock()


def shared_token_provider(authority: str, auth: ServicePrincipalAuth) -> EntraTokenProvider:
    """Return the process-wide token provider for (authority, tenant, client id)."""
    authority = validate_authority(authority)
    key = (authority, auth.tenant_id.lower(), auth.client_id.lower())
    with _provider_lock:
        provider = _provider_cache.get(key)
        # A rotated secret replaces the provider (and its cached token).
        if provider is None or provider.auth != auth:
            provider = EntraTokenProvider(authority, auth)
            _provider_cache[key] = provider
        return provider


def clear_token_cache() -> None:
    """Drop every shared token provider (tests, secret rotation)."""
    with _provider_lock:
        _provider_cache.clear()


def _reset_cache_after_fork() -> None:
    # A lock held by another thread at fork time would stay locked forever in the child.
    global _provider_lock
    _provider_lock = threading.Lock()
    _provider_cache.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_cache_after_fork)


class _HeaderAuth(AuthBase):
    """Sets the Authorization header; passing it as ``auth`` also stops requests using .netrc."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = self._value
        return r

    def __repr__(self) -> str:
        return "<Authorization hidden>"


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _never_sent(exc: requests.RequestException) -> bool:
    """Tell whether a requests failure happened before any byte of the request left."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError):
        return True
    if isinstance(exc, requests.exceptions.ProxyError):
        return True
    reason: Any = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


# --------------------------------------------------------------------------- client


def _segment(value: str, what: str) -> str:
    """One URL path segment: fully percent-encoded; never a dot segment (`.`, `..`, `%2e%2e`).

    HTTP clients (urllib3) and servers resolve dot segments, so `{org}/../_apis` would leave
    the organization. webhook.schemas refuses such names first (422); this is the last guard.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string")
    if value.strip() in (".", "..") or unquote(unquote(value)).strip() in (".", ".."):
        raise ValueError(f"{what} must not be a dot segment")
    return quote(value, safe="")


def _work_item_id(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError("work item ids are positive integers")
    return value


def _wiql_string(value: str) -> str:
    """Quote a WIQL string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


# Wraps every request of a client, called with (method, path): entered before anything is sent
# (not even a token is fetched), left once the answer is read. Raising on entry stops the call,
# e.g. while the organization is paused (SPEC 4 "Pacing").
RequestGuard = Callable[[str, str], AbstractContextManager[object]]


class AdoClient:
    """Talks to one Azure DevOps organization with one credential.

    Every call is bounded (:mod:`webhook.outbound`): ``timeout`` (connect, read) seconds, at
    most ``deadline`` seconds in all (default :data:`DEFAULT_DEADLINE`) and ``max_bytes`` of
    answer (default :data:`MAX_RESPONSE_BYTES`), redirects never followed; beyond them it fails
    as :class:`AdoTransient`. ``guard`` wraps each request (see
    :data:`RequestGuard`); ``on_retry_after(seconds)`` hears every ``Retry-After``.
    """

    def __init__(
        self,
        org: OrgUrl,
        auth: PatAuth | ServicePrincipalAuth,
        *,
        entra_authority: str = DEFAULT_AUTHORITY,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        deadline: float | None = None,
        max_bytes: int | None = None,
        guard: RequestGuard | None = None,
        on_retry_after: Callable[[float], None] | None = None,
        on_response: Callable[[str, int | str], None] | None = None,
        token_provider: EntraTokenProvider | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.org = org
        self._auth = auth
        self._own_session = session is None
        self._session = session or outbound.new_session()
        self._bounds = outbound.Bounds(
            timeout[0],
            timeout[1],
            DEFAULT_DEADLINE if deadline is None else deadline,
            MAX_RESPONSE_BYTES if max_bytes is None else max_bytes,
        )
        self._guard = guard
        self._on_retry_after = on_retry_after
        self._on_response = on_response
        self._clock = clock
        self._provider: EntraTokenProvider | None = None
        if isinstance(auth, ServicePrincipalAuth):
            self._provider = token_provider or shared_token_provider(entra_authority, auth)
        elif not isinstance(auth, PatAuth):
            raise TypeError("auth must be PatAuth or ServicePrincipalAuth")

    def __repr__(self) -> str:
        return f"<AdoClient {self.org.canonical} auth={type(self._auth).__name__}>"

    def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._own_session:
            self._session.close()

    # ------------------------------------------------------------------ transport

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str | int]] = (),
        body: Any = None,
        content_type: str = "application/json",
        api_version: str = API_VERSION,
        read_only: bool | None = None,
    ) -> tuple[Any, Mapping[str, str]]:
        """Send one request and return (classified JSON, response headers)."""
        with self._guard(method, path) if self._guard else nullcontext():
            return self._send(
                method,
                path,
                params=params,
                body=body,
                content_type=content_type,
                api_version=api_version,
                read_only=read_only,
            )

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str | int]],
        body: Any,
        content_type: str,
        api_version: str,
        read_only: bool | None,
    ) -> tuple[Any, Mapping[str, str]]:
        query = urlencode([*params, ("api-version", api_version)], quote_via=quote, safe="$,")
        url = f"{self.org.api_base}{path}?{query}"
        headers = {
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            # facts §3.4: ask for 401 instead of a redirect to the sign-in page.
            "X-TFS-FedAuthRedirect": "Suppress",
            "X-VSS-ForceMsaPassThrough": "true",
        }
        data: bytes | None = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode("utf-8")
        token: str | None = None
        if isinstance(self._auth, PatAuth):
            auth_value = self._auth.header()
            secrets: tuple[str, ...] = (self._auth.token, auth_value.split(" ", 1)[1])
        else:
            assert self._provider is not None
            token = self._provider.token()
            auth_value = f"Bearer {token}"
            secrets = (token, self._auth.client_secret)
        if read_only is None:
            read_only = method in _SAFE_METHODS

        error: AdoError | None = None
        try:
            resp = outbound.send(
                self._session,
                method,
                url,
                bounds=self._bounds,
                data=data,
                headers=headers,
                auth=_HeaderAuth(auth_value),
            )
        except requests.RequestException as exc:
            never_sent = _never_sent(exc)
            kind = "timed out" if isinstance(exc, requests.Timeout) else "failed"
            error = AdoTransient(
                f"{method} {self.org.host} {kind}: {_scrub(_describe(exc), secrets)}",
                outcome_unknown=not (read_only or never_sent),
                method=method,
                url=url,
            )
        if error is not None:
            # Raised here, not inside `except`, so the unscrubbed original is not chained.
            log.info("ado %s %s -> error (%s)", method, url, type(error).__name__)
            if self._on_response:
                self._on_response(method, "error")
            raise error

        log.debug("ado %s %s -> %s", method, url, resp.status_code)
        if self._on_response:
            self._on_response(method, resp.status_code)
        now = self._clock()
        # facts §7: Retry-After may arrive on any status, even 200; the caller pauses the org.
        delay = parse_retry_after(resp.headers.get("Retry-After"), now=now)
        if delay is not None and self._on_retry_after:
            self._on_retry_after(delay)
        if resp.status_code == 401 and self._provider is not None and token is not None:
            self._provider.invalidate(token)
        return classify_response(resp, read_only=read_only, now=now), resp.headers

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs)[0]

    def _object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        data = self._call(method, path, **kwargs)
        if not isinstance(data, dict):
            raise AdoError("Azure DevOps answered without the expected JSON object")
        return data

    @staticmethod
    def _values(data: Any) -> list[dict[str, Any]]:
        if not isinstance(data, Mapping) or not isinstance(data.get("value"), list):
            raise AdoError("Azure DevOps answered without the expected 'value' list")
        return list(data["value"])

    # ------------------------------------------------------------------ projects and types

    def list_projects(self) -> list[dict[str, Any]]:
        """Return every project of the organization, following continuation tokens."""
        projects: list[dict[str, Any]] = []
        params: list[tuple[str, str | int]] = []
        for _ in range(MAX_PAGES):
            data, headers = self._request("GET", "/_apis/projects", params=params)
            projects.extend(self._values(data))
            # facts §6.1: the next page token comes in a header, not in the body.
            token = headers.get("x-ms-continuationtoken")
            if not token:
                return projects
            params = [("continuationToken", token)]
        raise AdoError(f"listing projects did not finish within {MAX_PAGES} pages")

    def get_project(self, name_or_id: str) -> dict[str, Any]:
        """Return one project by name or id."""
        return self._object("GET", f"/_apis/projects/{_segment(name_or_id, 'project')}")

    def list_work_item_types(self, project: str) -> list[dict[str, Any]]:
        """Return the work item types of a project."""
        path = f"/{_segment(project, 'project')}/_apis/wit/workitemtypes"
        return self._values(self._call("GET", path))

    def get_work_item_type_states(self, project: str, type_name: str) -> list[dict[str, Any]]:
        """Return the states of a work item type: ``{name, category, color}`` (facts §6.3)."""
        path = (
            f"/{_segment(project, 'project')}/_apis/wit/workitemtypes/"
            f"{_segment(type_name, 'work item type')}/states"
        )
        return self._values(self._call("GET", path))

    def get_work_item_type_fields(self, project: str, type_name: str) -> list[dict[str, Any]]:
        """Return the fields of a work item type with their allowed values."""
        path = (
            f"/{_segment(project, 'project')}/_apis/wit/workitemtypes/"
            f"{_segment(type_name, 'work item type')}/fields"
        )
        return self._values(self._call("GET", path, params=[("$expand", "allowedValues")]))

    # ------------------------------------------------------------------ work items

    def create_work_item(
        self,
        project: str,
        type_name: str,
        patch: list[dict[str, Any]],
        *,
        validate_only: bool = False,
        suppress_notifications: bool = False,
    ) -> dict[str, Any]:
        """Create a work item from JSON Patch operations and return it."""
        # facts §3.1: the `$` before the type name is literal; the name itself is encoded.
        path = (
            f"/{_segment(project, 'project')}/_apis/wit/workitems/"
            f"${_segment(type_name, 'work item type')}"
        )
        params: list[tuple[str, str | int]] = []
        if validate_only:
            params.append(("validateOnly", "true"))
        if suppress_notifications:
            params.append(("suppressNotifications", "true"))
        return self._object(
            "POST",
            path,
            params=params,
            body=patch,
            content_type="application/json-patch+json",
            read_only=validate_only,
        )

    def update_work_item(
        self,
        project: str,
        work_item_id: int,
        patch: list[dict[str, Any]],
        *,
        suppress_notifications: bool = False,
    ) -> dict[str, Any]:
        """Apply JSON Patch operations to a work item and return the new revision."""
        path = f"/{_segment(project, 'project')}/_apis/wit/workitems/{_work_item_id(work_item_id)}"
        params: list[tuple[str, str | int]] = []
        if suppress_notifications:
            params.append(("suppressNotifications", "true"))
        return self._object(
            "PATCH", path, params=params, body=patch, content_type="application/json-patch+json"
        )

    def get_work_item(
        self, project: str, work_item_id: int, *, expand: str | None = "relations"
    ) -> dict[str, Any]:
        """Return one work item."""
        path = f"/{_segment(project, 'project')}/_apis/wit/workitems/{_work_item_id(work_item_id)}"
        params: list[tuple[str, str | int]] = [("$expand", expand)] if expand else []
        return self._object("GET", path, params=params)

    def get_deleted_work_item(self, project: str, work_item_id: int) -> dict[str, Any]:
        """Return a work item from the recycle bin (AzDO "Recycle Bin - Get Deleted Work Item").

        Shape (WorkItemDelete): ``{id, code, deletedBy, deletedDate, name, project, type, url,
        resource: {id, rev, fields, ...}}``; `deletedBy` names who deleted it (the deleted
        event's fields only name the last editor, AZURE_DEVOPS.md 1.4). AdoNotFound when the
        item is not in the recycle bin (restored, or destroyed).
        """
        path = f"/{_segment(project, 'project')}/_apis/wit/recyclebin/{_work_item_id(work_item_id)}"
        return self._object("GET", path)

    def list_deleted_work_item_ids(self, project: str) -> list[int]:
        """Return the ids of the project's work items in the recycle bin.

        AzDO "Recycle Bin - Get Deleted Work Item Shallow References": ``{count, value: [{id,
        url}]}``; deleted items are not returned by WIQL or the batch read (AZURE_DEVOPS.md 1.4).
        """
        path = f"/{_segment(project, 'project')}/_apis/wit/recyclebin"
        return [
            int(ref["id"])
            for ref in self._values(self._call("GET", path))
            if isinstance(ref, Mapping) and isinstance(ref.get("id"), int)
        ]

    def get_work_items_batch(
        self, project: str, ids: Iterable[int], *, fields: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Return the readable work items among ``ids`` (missing ones are left out)."""
        unique = list(dict.fromkeys(_work_item_id(i) for i in ids))
        path = f"/{_segment(project, 'project')}/_apis/wit/workitemsbatch"
        items: list[dict[str, Any]] = []
        for start in range(0, len(unique), BATCH_SIZE):
            chunk = unique[start : start + BATCH_SIZE]
            body: dict[str, Any] = {"ids": chunk, "errorPolicy": "omit"}
            if fields:
                body["fields"] = list(fields)
            data = self._call("POST", path, body=body, read_only=True)
            # errorPolicy=omit puts null where an id is missing or unreadable (facts §5.2).
            items.extend(item for item in self._values(data) if item is not None)
        return items

    # ------------------------------------------------------------------ comments

    def add_comment(self, project: str, work_item_id: int, text: str) -> dict[str, Any]:
        """Add an (HTML) comment to a work item."""
        path = (
            f"/{_segment(project, 'project')}/_apis/wit/workItems/"
            f"{_work_item_id(work_item_id)}/comments"
        )
        return self._object("POST", path, body={"text": text}, api_version=COMMENTS_API_VERSION)

    def list_comments(
        self, project: str, work_item_id: int, *, top: int = 200
    ) -> list[dict[str, Any]]:
        """Return up to ``top`` comments of a work item, following continuation tokens."""
        if top <= 0:
            return []
        path = (
            f"/{_segment(project, 'project')}/_apis/wit/workItems/"
            f"{_work_item_id(work_item_id)}/comments"
        )
        comments: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(MAX_PAGES):
            params: list[tuple[str, str | int]] = [("$top", min(top - len(comments), 200))]
            if token:
                params.append(("continuationToken", token))
            data = self._call("GET", path, params=params, api_version=COMMENTS_API_VERSION)
            page = data.get("comments") if isinstance(data, Mapping) else None
            if not isinstance(page, list):
                raise AdoError("Azure DevOps answered without the expected 'comments' list")
            comments.extend(page)
            token = data.get("continuationToken")
            if not token or not page or len(comments) >= top:
                return comments[:top]
        return comments[:top]

    # ------------------------------------------------------------------ WIQL

    def query_wiql(self, project: str, query: str, *, top: int | None = None) -> list[int]:
        """Run a WIQL query and return the matching work item ids (facts §6.4)."""
        path = f"/{_segment(project, 'project')}/_apis/wit/wiql"
        # timePrecision lets date comparisons use the time of day, not just the date.
        params: list[tuple[str, str | int]] = [("timePrecision", "true")]
        if top is not None:
            params.append(("$top", int(top)))
        data = self._call("POST", path, params=params, body={"query": query}, read_only=True)
        if not isinstance(data, Mapping):
            raise AdoError("Azure DevOps answered the WIQL query without a result")
        ids: list[int] = []
        for item in data.get("workItems") or []:
            if isinstance(item, Mapping) and isinstance(item.get("id"), int):
                ids.append(item["id"])
        for link in data.get("workItemRelations") or []:
            target = link.get("target") if isinstance(link, Mapping) else None
            if isinstance(target, Mapping) and isinstance(target.get("id"), int):
                ids.append(target["id"])
        return list(dict.fromkeys(ids))

    def find_by_tag(self, project: str, tag: str) -> list[int]:
        """Return the ids of work items in ``project`` that carry ``tag``."""
        query = (
            "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project "
            f"AND [System.Tags] CONTAINS {_wiql_string(_check_tag(tag))}"
        )
        return self.query_wiql(project, query)

    def changed_since(
        self,
        project: str,
        since: str | datetime,
        *,
        tag: str | None = None,
        top: int | None = None,
    ) -> list[int]:
        """Return ids of work items in ``project`` changed at or after ``since``."""
        when = datetime.fromisoformat(since) if isinstance(since, str) else since
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        query = (
            "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project "
            f"AND [System.ChangedDate] >= '{stamp}'"
        )
        if tag is not None:
            query += f" AND [System.Tags] CONTAINS {_wiql_string(_check_tag(tag))}"
        query += " ORDER BY [System.ChangedDate] ASC"
        return self.query_wiql(project, query, top=top)

    # ------------------------------------------------------------------ service hooks

    def create_subscription(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a service hook subscription (organization level, facts §2)."""
        return self._object("POST", "/_apis/hooks/subscriptions", body=dict(body))

    def get_subscription(self, subscription_id: str) -> dict[str, Any]:
        """Return one subscription; AdoNotFound when it is gone."""
        return self._object(
            "GET", f"/_apis/hooks/subscriptions/{_subscription_id(subscription_id)}"
        )

    def list_subscriptions(
        self,
        *,
        publisher_id: str | None = None,
        event_type: str | None = None,
        consumer_id: str | None = None,
        consumer_action_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Return the organization's subscriptions matching the given filters."""
        filters = {
            "publisherId": publisher_id,
            "eventType": event_type,
            "consumerId": consumer_id,
            "consumerActionId": consumer_action_id,
        }
        params = [(key, value) for key, value in filters.items() if value]
        return self._values(self._call("GET", "/_apis/hooks/subscriptions", params=params))

    def replace_subscription(self, subscription_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Replace a subscription with a full new body."""
        path = f"/_apis/hooks/subscriptions/{_subscription_id(subscription_id)}"
        return self._object("PUT", path, body=dict(body))

    def delete_subscription(self, subscription_id: str) -> None:
        """Delete a subscription; one that is already gone is fine."""
        path = f"/_apis/hooks/subscriptions/{_subscription_id(subscription_id)}"
        try:
            self._call("DELETE", path)
        except AdoNotFound:
            return


def _subscription_id(value: str) -> str:
    if not isinstance(value, str) or not _GUIDISH_RE.fullmatch(value):
        raise ValueError("subscription ids are GUIDs")
    return value


def _check_tag(tag: str) -> str:
    # Tags are stored `;`-separated (facts §3.2), so a tag can never contain one.
    if not isinstance(tag, str) or not tag.strip() or ";" in tag or any(c in tag for c in "\r\n"):
        raise ValueError("a tag must be non-empty text without ';' or line breaks")
    return tag.strip()
