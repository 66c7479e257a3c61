"""Credentials: PAT (HTTP Basic), Entra ID client-credentials tokens, api-version checks.

Bad or missing credentials reproduce the documented trap (AZURE_DEVOPS.md §3.4): GET/POST get
HTTP 203 with an HTML sign-in page; PATCH (and PUT/DELETE) get 401 TF400813 JSON.
"""

from __future__ import annotations

import base64
import functools
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, g, request

from .state import SECBOT, SandboxState
from .wire import Identity, SandboxError, json_response

ADO_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"
ENTRA_SCOPE = f"{ADO_RESOURCE}/.default"

bp = Blueprint("entra", __name__)

SIGN_IN_PAGE = """<!DOCTYPE html>
<html><head><title>Azure DevOps Services | Sign In</title>
<meta http-equiv="X-UA-Compatible" content="IE=11;&#32;IE=10;&#32;IE=9;&#32;IE=8" />
</head><body><div class="header">Sign in to Azure DevOps</div>
<form method="post" action="https://login.microsoftonline.com/common/oauth2/authorize">
<p>Continue to sign in with your work or school account.</p></form></body></html>
"""


def get_state() -> SandboxState:
    """Return the state of the sandbox serving this request."""
    state: SandboxState = current_app.extensions["sandbox_state"]
    return state


def authenticate(state: SandboxState, header: str | None) -> Identity | None:
    """Return the caller's identity for an Authorization header, or None."""
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        _, _, password = decoded.partition(":")
        if hmac.compare_digest(password.encode(), state.pat.encode()):
            return SECBOT
        return None
    if scheme.lower() == "bearer":
        with state.lock:
            found = state.tokens.get(credentials.strip())
        if found and found[0] > time.time():
            return found[1]
    return None


def unauthorized(method: str, state: SandboxState) -> Response:
    """Answer a request without valid credentials the way Azure DevOps does."""
    if method.upper() in ("GET", "POST", "HEAD"):
        return Response(SIGN_IN_PAGE, status=203, content_type="text/html; charset=utf-8")
    err = SandboxError(
        401,
        "TF400813: The user '' is not authorized to access this resource.",
        "UnauthorizedRequestException",
        type_name="Microsoft.TeamFoundation.Framework.Server.UnauthorizedRequestException, "
        "Microsoft.TeamFoundation.Framework.Server",
        error_code=0,
        event_id=3000,
        headers={
            "WWW-Authenticate": (
                f"Bearer authorization_uri={state.base_url}/{state.tenant_id}/oauth2/authorize, "
                f'Basic realm="{state.org_url}/", TFS-Federated'
            ),
            "X-TFS-FedAuthRealm": f"{state.org_url}/",
        },
    )
    return err.response()


def require_auth() -> Response | None:
    """`before_request` hook of every REST blueprint: authenticate or refuse."""
    state = get_state()
    identity = authenticate(state, request.headers.get("Authorization"))
    if identity is None:
        return unauthorized(request.method, state)
    g.identity = identity
    return None


def caller() -> Identity:
    """Return the authenticated caller of this request."""
    identity: Identity = g.identity
    return identity


_VERSION_RE = re.compile(r"^(\d+)\.(\d+)(-preview(?:\.(\d+))?)?$", re.IGNORECASE)


def _requested_version() -> str | None:
    version = request.args.get("api-version")
    if version:
        return version.strip()
    match = re.search(r"api-version=([\w.\-]+)", request.headers.get("Accept", ""))
    return match.group(1) if match else None


def check_api_version(*, preview: int | None = None) -> None:
    """Enforce api-version 7.1 (`7.1-preview.N` with N <= `preview` for preview resources)."""
    version = _requested_version()
    if not version:
        raise SandboxError(
            400,
            f'No api-version was supplied for the "{request.method}" request. The version must '
            'be supplied either as part of the Accept header (e.g. "application/json; '
            'api-version=1.0") or as a query parameter (e.g. "?api-version=1.0").',
            "VssVersionNotSpecifiedException",
        )
    match = _VERSION_RE.match(version)
    if not match:
        raise SandboxError(
            400, f"The api-version '{version}' is not valid.", "VssInvalidApiVersionException"
        )
    number = (int(match.group(1)), int(match.group(2)))
    if number > (7, 1):
        raise SandboxError(
            400,
            f"The requested REST API version of {version} is out of range for this server. "
            "The latest REST API version this server supports is 7.1.",
            "VssVersionOutOfRangeException",
        )
    if number != (7, 1):
        # Real Azure DevOps also serves older versions; the sandbox holds clients to 7.1.
        raise SandboxError(
            400,
            f"The sandbox serves api-version 7.1 only; '{version}' was requested.",
            "VssVersionOutOfRangeException",
        )
    if preview is not None:
        if not match.group(3):
            raise SandboxError(
                400,
                f'The requested version "{version}" of the resource is under preview. The '
                "-preview flag must be supplied in the api-version for such requests. For "
                f'example: "{version}-preview"',
                "VssInvalidPreviewVersionException",
            )
        resource_version = int(match.group(4) or preview)
        if resource_version > preview:
            raise SandboxError(
                400,
                f"The requested resource version {resource_version} is out of range for this "
                f"resource; the latest resource version is {preview}.",
                "VssVersionOutOfRangeException",
            )


def api_version(*, preview: int | None = None) -> Callable[[Callable[..., Any]], Any]:
    """Decorate a view so it checks the api-version first."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            check_api_version(preview=preview)
            return view(*args, **kwargs)

        return wrapper

    return decorate


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def issue_token(state: SandboxState) -> tuple[str, int]:
    """Issue a JWT-shaped bearer token for the service principal; return it and its lifetime."""
    lifetime = int(state.token_lifetime)
    now = int(time.time())
    claims = {
        "aud": ADO_RESOURCE,
        "iss": f"https://sts.windows.net/{state.tenant_id}/",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "appid": state.client_id,
        "oid": state.sp_identity.id,
        "sub": state.sp_identity.id,
        "tid": state.tenant_id,
        "jti": secrets.token_hex(8),
    }
    header = {"typ": "JWT", "alg": "RS256", "kid": "sandbox"}
    token = ".".join(
        [
            _b64url(json.dumps(header).encode()),
            _b64url(json.dumps(claims).encode()),
            _b64url(secrets.token_bytes(64)),
        ]
    )
    with state.lock:
        state.tokens[token] = (time.time() + lifetime, state.sp_identity)
    return token, lifetime


def _entra_error(status: int, error: str, code: str, description: str) -> Response:
    body = {
        "error": error,
        "error_description": f"{code}: {description}\r\nTrace ID: {secrets.token_hex(16)}",
        "error_codes": [int(code[6:])],
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "trace_id": secrets.token_hex(16),
        "correlation_id": secrets.token_hex(16),
    }
    return json_response(body, status)


@bp.post("/<tenant>/oauth2/v2.0/token")
def token(tenant: str) -> Response:
    """Entra ID v2.0 token endpoint, client-credentials grant only."""
    state = get_state()
    form = request.form
    if form.get("grant_type") != "client_credentials":
        return _entra_error(
            400,
            "unsupported_grant_type",
            "AADSTS70003",
            "The app requested an unsupported grant type.",
        )
    if tenant.lower() != state.tenant_id:
        return _entra_error(400, "invalid_request", "AADSTS90002", f"Tenant '{tenant}' not found.")
    if form.get("client_id", "").lower() != state.client_id:
        return _entra_error(
            400,
            "unauthorized_client",
            "AADSTS700016",
            f"Application with identifier '{form.get('client_id', '')}' was not found in the "
            f"directory '{tenant}'.",
        )
    secret = form.get("client_secret", "")
    if not hmac.compare_digest(secret.encode(), state.client_secret.encode()):
        return _entra_error(
            401, "invalid_client", "AADSTS7000215", "Invalid client secret provided."
        )
    if form.get("scope", "") != ENTRA_SCOPE:
        return _entra_error(
            400,
            "invalid_scope",
            "AADSTS1002012",
            f"The provided value for scope {form.get('scope', '')} is not valid. Client "
            "credential flows must have a scope value with /.default suffixed to the resource "
            "identifier (application ID URI).",
        )
    access_token, lifetime = issue_token(state)
    return json_response(
        {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }
    )
