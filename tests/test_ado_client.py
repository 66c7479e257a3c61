"""Tests for the Azure DevOps client (webhook.ado) against recorded-shape responses."""

from __future__ import annotations

import ast
import base64
import email.utils
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from responses import matchers

from webhook import ado
from webhook.ado import (
    AdoAuthError,
    AdoClient,
    AdoConflict,
    AdoError,
    AdoNotFound,
    AdoPermissionError,
    AdoRateLimited,
    AdoRuleError,
    AdoTransient,
    EntraTokenProvider,
    PatAuth,
    ServicePrincipalAuth,
    classify_response,
    parse_retry_after,
    validate_authority,
)
from webhook.domain.orgurl import parse_organization_url

BASE = "https://dev.azure.com/contoso"
ORG = parse_organization_url(BASE)
PAT = "pat-4f9c1e7d2b8a6c3e5f0a9b7d1c2e8f4a6b3d5c7e9f1a2b4c6d8e0f"
PAT_B64 = base64.b64encode(f":{PAT}".encode()).decode()
SECRET = "client~secret~Zq8Q~9f3kdl2VmX0pR7sT1uW4yA6bC8eG"
ACCESS_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.access-token-one"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
TOKEN_URL = f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
NOW = 1_750_000_000.0
JSON_CT = "application/json; charset=utf-8; api-version=7.1"

# Verbatim copy of azure-devops-samples/error-rule-validation.json (WrappedException, facts §3.4).
RULE_ERROR = {
    "$id": "1",
    "innerException": None,
    "message": "TF401320: Rule Error for field Title. Error code: Required, InvalidEmpty.",
    "typeName": "Microsoft.TeamFoundation.WorkItemTracking.Server.RuleValidationException, "
    "Microsoft.TeamFoundation.WorkItemTracking.Server",
    "typeKey": "RuleValidationException",
    "errorCode": 600171,
    "eventId": 3200,
}
UNAUTHORIZED = {
    "$id": "1",
    "innerException": None,
    "message": "TF400813: The user '' is not authorized to access this resource.",
    "typeName": "Microsoft.TeamFoundation.Framework.Server.UnauthorizedRequestException, "
    "Microsoft.TeamFoundation.Framework.Server",
    "typeKey": "UnauthorizedRequestException",
    "errorCode": 0,
    "eventId": 3000,
}
TYPE_NOT_FOUND = {
    "$id": "1",
    "innerException": None,
    "message": "VS402323: Work item type Bug does not exist in project "
    "3f0c6a4e-5b1d-4c2e-9a77-0d2b8e41c9a1 or you do not have permission to access it.",
    "typeName": "Microsoft.TeamFoundation.WorkItemTracking.Server.Metadata."
    "WorkItemTypeNotFoundException, Microsoft.TeamFoundation.WorkItemTracking.Server",
    "typeKey": "WorkItemTypeNotFoundException",
    "errorCode": 0,
    "eventId": 3200,
}
CREATED = {
    "id": 4711,
    "rev": 1,
    "fields": {"System.Title": "XSS in search page", "System.State": "New"},
    "url": f"{BASE}/3f0c6a4e-5b1d-4c2e-9a77-0d2b8e41c9a1/_apis/wit/workItems/4711",
}
SIGN_IN_PAGE = "<html><head><title>Sign In</title></head><body>Azure DevOps</body></html>"
PATCH = [{"op": "add", "path": "/fields/System.Title", "value": "XSS in search page"}]


class Recorder:
    """Collects callback invocations."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> None:
        self.calls.append(args)


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> Iterator[None]:
    ado.clear_token_cache()
    yield
    ado.clear_token_cache()


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def retry_after() -> Recorder:
    return Recorder()


@pytest.fixture
def seen() -> Recorder:
    return Recorder()


@pytest.fixture
def client(retry_after: Recorder, seen: Recorder) -> AdoClient:
    return AdoClient(
        ORG, PatAuth(PAT), on_retry_after=retry_after, on_response=seen, clock=lambda: NOW
    )


def query(call: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def assert_no_secrets(text: str) -> None:
    for secret in (PAT, PAT_B64, SECRET, ACCESS_TOKEN):
        assert secret not in text


# --------------------------------------------------------------------------- headers


def test_pat_is_basic_auth_with_empty_user_name(
    rsps: responses.RequestsMock, client: AdoClient
) -> None:
    rsps.get(f"{BASE}/_apis/projects", json={"count": 0, "value": []})
    client.list_projects()
    header = rsps.calls[0].request.headers["Authorization"]
    scheme, value = header.split(" ", 1)
    assert scheme == "Basic"
    assert base64.b64decode(value).decode() == f":{PAT}"


def test_every_request_sends_fixed_headers(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.get(f"{BASE}/_apis/projects/AppSec", json={"id": "p1", "name": "AppSec"})
    client.get_project("AppSec")
    headers = rsps.calls[0].request.headers
    assert headers["X-TFS-FedAuthRedirect"] == "Suppress"
    assert headers["X-VSS-ForceMsaPassThrough"] == "true"
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"] == ado.USER_AGENT
    assert ado.USER_AGENT.startswith("ado-webhook/")


def test_session_is_called_streaming_with_timeout_and_no_redirects() -> None:
    captured: dict[str, Any] = {}

    class FakeSession(requests.Session):
        def request(self, method: str | bytes, url: str | bytes, **kwargs: Any) -> Any:  # type: ignore[override]
            captured.update(kwargs)
            resp = requests.Response()
            resp.status_code = 200
            resp.headers["Content-Type"] = "application/json"
            resp._content = b'{"id": "p1"}'
            resp._content_consumed = True
            return resp

    client = AdoClient(ORG, PatAuth(PAT), session=FakeSession(), timeout=(1.5, 9.0))
    assert client.get_project("p1") == {"id": "p1"}
    assert captured["timeout"] == (1.5, 9.0)
    assert captured["allow_redirects"] is False
    assert captured["stream"] is True  # the body is read in bounded chunks


API_CALLS: list[tuple[str, str, str, Callable[[AdoClient], Any], Any]] = [
    ("GET", "/_apis/projects", "7.1", lambda c: c.list_projects(), {"value": []}),
    ("GET", "/_apis/projects/AppSec", "7.1", lambda c: c.get_project("AppSec"), {"id": "x"}),
    (
        "GET",
        "/AppSec/_apis/wit/workitemtypes",
        "7.1",
        lambda c: c.list_work_item_types("AppSec"),
        {"value": []},
    ),
    (
        "GET",
        "/AppSec/_apis/wit/workitemtypes/Bug/states",
        "7.1",
        lambda c: c.get_work_item_type_states("AppSec", "Bug"),
        {"value": []},
    ),
    (
        "GET",
        "/AppSec/_apis/wit/workitemtypes/Bug/fields",
        "7.1",
        lambda c: c.get_work_item_type_fields("AppSec", "Bug"),
        {"value": []},
    ),
    (
        "POST",
        "/AppSec/_apis/wit/workitems/$Bug",
        "7.1",
        lambda c: c.create_work_item("AppSec", "Bug", PATCH),
        CREATED,
    ),
    (
        "PATCH",
        "/AppSec/_apis/wit/workitems/4711",
        "7.1",
        lambda c: c.update_work_item("AppSec", 4711, PATCH),
        CREATED,
    ),
    (
        "GET",
        "/AppSec/_apis/wit/workitems/4711",
        "7.1",
        lambda c: c.get_work_item("AppSec", 4711),
        CREATED,
    ),
    (
        "POST",
        "/AppSec/_apis/wit/workitemsbatch",
        "7.1",
        lambda c: c.get_work_items_batch("AppSec", [1]),
        {"value": []},
    ),
    (
        "POST",
        "/AppSec/_apis/wit/workItems/4711/comments",
        "7.1-preview.4",
        lambda c: c.add_comment("AppSec", 4711, "<p>hi</p>"),
        {"id": 1},
    ),
    (
        "GET",
        "/AppSec/_apis/wit/workItems/4711/comments",
        "7.1-preview.4",
        lambda c: c.list_comments("AppSec", 4711),
        {"comments": []},
    ),
    (
        "POST",
        "/AppSec/_apis/wit/wiql",
        "7.1",
        lambda c: c.query_wiql("AppSec", "SELECT [System.Id] FROM WorkItems"),
        {"workItems": []},
    ),
    (
        "POST",
        "/_apis/hooks/subscriptions",
        "7.1",
        lambda c: c.create_subscription({"eventType": "workitem.updated"}),
        {"id": "s1"},
    ),
    (
        "GET",
        "/_apis/hooks/subscriptions/s1",
        "7.1",
        lambda c: c.get_subscription("s1"),
        {"id": "s1"},
    ),
    ("GET", "/_apis/hooks/subscriptions", "7.1", lambda c: c.list_subscriptions(), {"value": []}),
    (
        "PUT",
        "/_apis/hooks/subscriptions/s1",
        "7.1",
        lambda c: c.replace_subscription("s1", {"id": "s1"}),
        {"id": "s1"},
    ),
    ("DELETE", "/_apis/hooks/subscriptions/s1", "7.1", lambda c: c.delete_subscription("s1"), None),
]


@pytest.mark.parametrize(
    ("method", "path", "version", "call", "body"),
    API_CALLS,
    ids=[f"{c[0]} {c[1]}" for c in API_CALLS],
)
def test_api_version_and_path_on_every_call(
    rsps: responses.RequestsMock,
    client: AdoClient,
    method: str,
    path: str,
    version: str,
    call: Callable[[AdoClient], Any],
    body: Any,
) -> None:
    if body is None:
        rsps.add(method, f"{BASE}{path}", status=204)
    else:
        rsps.add(method, f"{BASE}{path}", json=body)
    call(client)
    request = rsps.calls[0].request
    assert request.method == method
    assert urlsplit(request.url).path == urlsplit(f"{BASE}{path}").path
    assert query(rsps.calls[0])["api-version"] == [version]
    assert request.headers["X-TFS-FedAuthRedirect"] == "Suppress"


# --------------------------------------------------------------------------- URL building


def test_type_path_keeps_literal_dollar_and_encodes_spaces(
    rsps: responses.RequestsMock, client: AdoClient
) -> None:
    rsps.post(f"{BASE}/Sec%20Ops/_apis/wit/workitems/$User%20Story", json=CREATED)
    result = client.create_work_item(
        "Sec Ops", "User Story", PATCH, validate_only=True, suppress_notifications=True
    )
    assert result == CREATED
    request = rsps.calls[0].request
    assert request.url.startswith(f"{BASE}/Sec%20Ops/_apis/wit/workitems/$User%20Story?")
    assert request.headers["Content-Type"] == "application/json-patch+json"
    assert json.loads(request.body) == PATCH
    params = query(rsps.calls[0])
    assert params["validateOnly"] == ["true"]
    assert params["suppressNotifications"] == ["true"]


def test_hostile_names_are_percent_encoded(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.get(
        f"{BASE}/a%2F..%2Fb%3Fx%23/_apis/wit/workitemtypes/T%2F..%3F/states", json={"value": []}
    )
    client.get_work_item_type_states("a/../b?x#", "T/..?")
    assert "/a%2F..%2Fb%3Fx%23/_apis/" in rsps.calls[0].request.url


def test_invalid_arguments_are_rejected_before_any_request(client: AdoClient) -> None:
    with pytest.raises(ValueError):
        client.get_work_item("AppSec", 0)
    with pytest.raises(ValueError):
        client.get_work_item("AppSec", True)
    with pytest.raises(ValueError):
        client.get_work_item("", 1)
    with pytest.raises(ValueError):
        client.get_subscription("../projects")
    with pytest.raises(ValueError):
        client.find_by_tag("AppSec", "a;b")


def test_get_work_item_expand(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.get(f"{BASE}/AppSec/_apis/wit/workitems/7", json=CREATED)
    rsps.get(f"{BASE}/AppSec/_apis/wit/workitems/7", json=CREATED)
    client.get_work_item("AppSec", 7)
    client.get_work_item("AppSec", 7, expand=None)
    assert query(rsps.calls[0])["$expand"] == ["relations"]
    assert "$expand=relations" in rsps.calls[0].request.url
    assert "$expand" not in query(rsps.calls[1])


def test_type_fields_expand_allowed_values(rsps: responses.RequestsMock, client: AdoClient) -> None:
    fields = [{"referenceName": "System.Title", "alwaysRequired": True, "allowedValues": []}]
    rsps.get(f"{BASE}/AppSec/_apis/wit/workitemtypes/Bug/fields", json={"value": fields})
    assert client.get_work_item_type_fields("AppSec", "Bug") == fields
    assert query(rsps.calls[0])["$expand"] == ["allowedValues"]


# --------------------------------------------------------------------------- auth failures


def test_203_sign_in_page_is_auth_error(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.get(f"{BASE}/_apis/projects", status=203, body=SIGN_IN_PAGE, content_type="text/html")
    with pytest.raises(AdoAuthError) as info:
        client.list_projects()
    assert info.value.status == 203


def test_203_even_with_json_is_auth_error(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.get(f"{BASE}/_apis/projects", status=203, json={"value": []})
    with pytest.raises(AdoAuthError):
        client.list_projects()


def test_200_html_is_auth_error(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.post(
        f"{BASE}/AppSec/_apis/wit/workitems/$Bug",
        status=200,
        body=SIGN_IN_PAGE,
        content_type="text/html; charset=utf-8",
    )
    with pytest.raises(AdoAuthError, match="text/html"):
        client.create_work_item("AppSec", "Bug", PATCH)


def test_redirect_is_auth_error_and_not_followed(
    rsps: responses.RequestsMock, client: AdoClient
) -> None:
    rsps.get(
        f"{BASE}/_apis/projects",
        status=302,
        headers={"Location": "https://login.microsoftonline.com/common/oauth2/authorize?x=1"},
    )
    with pytest.raises(AdoAuthError, match="HTTP 302") as info:
        client.list_projects()
    assert len(rsps.calls) == 1
    assert info.value.status == 302
    assert "login.microsoftonline.com" in str(info.value)


def test_401_is_auth_error_with_ado_message(
    rsps: responses.RequestsMock, client: AdoClient
) -> None:
    rsps.patch(
        f"{BASE}/AppSec/_apis/wit/workitems/4711",
        status=401,
        json=UNAUTHORIZED,
        headers={"WWW-Authenticate": 'Basic realm="https://dev.azure.com/contoso/"'},
    )
    with pytest.raises(AdoAuthError) as info:
        client.update_work_item("AppSec", 4711, PATCH)
    err = info.value
    assert not isinstance(err, AdoPermissionError)
    assert err.status == 401
    assert err.message == UNAUTHORIZED["message"]
    assert err.code == "TF400813"
    assert err.type_key == "UnauthorizedRequestException"


def test_403_is_permission_error(rsps: responses.RequestsMock, client: AdoClient) -> None:
    body = {
        "message": "Access Denied: secbot needs Edit subscriptions",
        "typeKey": "AccessCheckException",
    }
    rsps.post(f"{BASE}/_apis/hooks/subscriptions", status=403, json=body)
    with pytest.raises(AdoAuthError) as info:
        client.create_subscription({"eventType": "workitem.updated"})
    err = info.value
    assert isinstance(err, AdoPermissionError)
    assert err.message == body["message"]
    assert "Permission denied" in str(err)
    assert body["message"] in str(err)


# --------------------------------------------------------------------------- content errors


def test_400_rule_error_keeps_message_verbatim(
    rsps: responses.RequestsMock, client: AdoClient
) -> None:
    rsps.post(f"{BASE}/AppSec/_apis/wit/workitems/$Bug", status=400, json=RULE_ERROR)
    with pytest.raises(AdoRuleError) as info:
        client.create_work_item("AppSec", "Bug", PATCH)
    err = info.value
    assert str(err) == RULE_ERROR["message"]
    assert err.message == RULE_ERROR["message"]
    assert err.status == 400
    assert err.type_key == "RuleValidationException"
    assert err.code == "TF401320"


def test_400_without_json_body(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.post(f"{BASE}/AppSec/_apis/wit/workitems/$Bug", status=400, body="")
    with pytest.raises(AdoRuleError, match="HTTP 400"):
        client.create_work_item("AppSec", "Bug", PATCH)


def test_404_unknown_type_is_not_found(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.post(f"{BASE}/AppSec/_apis/wit/workitems/$Bug", status=404, json=TYPE_NOT_FOUND)
    with pytest.raises(AdoNotFound) as info:
        client.create_work_item("AppSec", "Bug", PATCH)
    assert info.value.code == "VS402323"
    assert str(info.value) == TYPE_NOT_FOUND["message"]


def test_412_failed_rev_test_is_conflict(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.patch(
        f"{BASE}/AppSec/_apis/wit/workitems/4711",
        status=412,
        json={"message": "The 'test' operation failed.", "typeKey": "TestOperationFailed"},
    )
    with pytest.raises(AdoConflict):
        client.update_work_item("AppSec", 4711, [{"op": "test", "path": "/rev", "value": 3}])


def test_400_vs402625_is_conflict(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.patch(
        f"{BASE}/AppSec/_apis/wit/workitems/4711",
        status=400,
        json={"message": "VS402625: The 'test' operation failed."},
    )
    with pytest.raises(AdoConflict):
        client.update_work_item("AppSec", 4711, PATCH)


def test_revision_limit_500_is_not_transient(
    rsps: responses.RequestsMock, client: AdoClient
) -> None:
    message = (
        "Work item 4711 has 10001 revisions, but currently, when updating via the API, "
        "only work items with up to 10,000 revisions are supported."
    )
    rsps.patch(f"{BASE}/AppSec/_apis/wit/workitems/4711", status=500, json={"message": message})
    with pytest.raises(AdoRuleError, match="10,000 revisions"):
        client.update_work_item("AppSec", 4711, PATCH)


# --------------------------------------------------------------------------- rate limiting


def test_429_with_retry_after_seconds(
    rsps: responses.RequestsMock, client: AdoClient, retry_after: Recorder
) -> None:
    rsps.get(
        f"{BASE}/_apis/projects",
        status=429,
        json={"message": "TF400733: The request has been canceled: Request was blocked"},
        headers={"Retry-After": "30"},
    )
    with pytest.raises(AdoRateLimited) as info:
        client.list_projects()
    assert info.value.retry_after == 30.0
    assert info.value.code == "TF400733"
    assert retry_after.calls == [(30.0,)]


def test_429_with_retry_after_http_date(
    rsps: responses.RequestsMock, client: AdoClient, retry_after: Recorder
) -> None:
    when = email.utils.formatdate(NOW + 120, usegmt=True)
    rsps.get(f"{BASE}/_apis/projects", status=429, body="", headers={"Retry-After": when})
    with pytest.raises(AdoRateLimited) as info:
        client.list_projects()
    assert info.value.retry_after == pytest.approx(120.0, abs=1.0)
    assert len(retry_after.calls) == 1
    assert retry_after.calls[0][0] == pytest.approx(120.0, abs=1.0)


def test_429_without_retry_after(
    rsps: responses.RequestsMock, client: AdoClient, retry_after: Recorder
) -> None:
    rsps.get(f"{BASE}/_apis/projects", status=429, body="")
    with pytest.raises(AdoRateLimited) as info:
        client.list_projects()
    assert info.value.retry_after is None
    assert retry_after.calls == []


def test_retry_after_on_200_returns_data_and_reports_pause(
    rsps: responses.RequestsMock, client: AdoClient, retry_after: Recorder
) -> None:
    rsps.get(
        f"{BASE}/_apis/projects/AppSec",
        json={"id": "p1"},
        headers={"Retry-After": "7", "X-RateLimit-Remaining": "0"},
    )
    assert client.get_project("AppSec") == {"id": "p1"}
    assert retry_after.calls == [(7.0,)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("0", 0.0),
        ("15", 15.0),
        (" 2.5 ", 2.5),
        ("-4", 0.0),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        (email.utils.formatdate(NOW + 60, usegmt=True), 60.0),
        (email.utils.formatdate(NOW - 60, usegmt=True), 0.0),
        ("Wed, 21 Oct 2015 07:28:00", max(0.0, 1445412480.0 - NOW)),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    result = parse_retry_after(value, now=NOW)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected, abs=1.0)


# --------------------------------------------------------------------------- transient


def test_503_on_post_outcome_unknown(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.post(f"{BASE}/AppSec/_apis/wit/workitems/$Bug", status=503, body="")
    with pytest.raises(AdoTransient) as info:
        client.create_work_item("AppSec", "Bug", PATCH)
    assert info.value.outcome_unknown is True
    assert info.value.status == 503


def test_503_on_get_outcome_known(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.get(f"{BASE}/_apis/projects", status=503, body="", headers={"Retry-After": "5"})
    with pytest.raises(AdoTransient) as info:
        client.list_projects()
    assert info.value.outcome_unknown is False
    assert info.value.retry_after == 5.0


def test_503_on_read_only_post_outcome_known(
    rsps: responses.RequestsMock, client: AdoClient
) -> None:
    rsps.post(f"{BASE}/AppSec/_apis/wit/wiql", status=502, body="")
    rsps.post(f"{BASE}/AppSec/_apis/wit/workitemsbatch", status=504, body="")
    with pytest.raises(AdoTransient) as wiql:
        client.find_by_tag("AppSec", "finding:1")
    with pytest.raises(AdoTransient) as batch:
        client.get_work_items_batch("AppSec", [1])
    assert wiql.value.outcome_unknown is False
    assert batch.value.outcome_unknown is False


def test_validate_only_create_is_read_only(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.post(f"{BASE}/AppSec/_apis/wit/workitems/$Bug", status=500, body="")
    with pytest.raises(AdoTransient) as info:
        client.create_work_item("AppSec", "Bug", PATCH, validate_only=True)
    assert info.value.outcome_unknown is False


@pytest.mark.parametrize(
    ("exc", "method", "unknown"),
    [
        (requests.ConnectionError("Connection reset by peer"), "POST", True),
        (requests.ConnectionError("Connection reset by peer"), "GET", False),
        (requests.ReadTimeout("read timed out"), "POST", True),
        (requests.ReadTimeout("read timed out"), "GET", False),
        (requests.ConnectTimeout("connect timed out"), "POST", False),
        (requests.exceptions.SSLError("certificate verify failed"), "POST", False),
        (requests.exceptions.ChunkedEncodingError("broken"), "PATCH", True),
    ],
)
def test_network_failures_are_transient(
    rsps: responses.RequestsMock,
    client: AdoClient,
    seen: Recorder,
    exc: Exception,
    method: str,
    unknown: bool,
) -> None:
    if method == "GET":
        rsps.get(f"{BASE}/_apis/projects/AppSec", body=exc)
        call: Callable[[], Any] = lambda: client.get_project("AppSec")  # noqa: E731
    elif method == "POST":
        rsps.post(f"{BASE}/AppSec/_apis/wit/workitems/$Bug", body=exc)
        call = lambda: client.create_work_item("AppSec", "Bug", PATCH)  # noqa: E731
    else:
        rsps.patch(f"{BASE}/AppSec/_apis/wit/workitems/1", body=exc)
        call = lambda: client.update_work_item("AppSec", 1, PATCH)  # noqa: E731
    with pytest.raises(AdoTransient) as info:
        call()
    assert info.value.outcome_unknown is unknown
    assert info.value.status is None
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert seen.calls == [(method, "error")]


def test_real_connection_refused_is_transient_and_never_sent() -> None:
    with socket.socket() as probe:  # a port that was just free is almost surely closed now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    host = f"127.0.0.1:{port}"
    org = parse_organization_url(f"http://{host}/org", extra_hosts=frozenset({host}))
    client = AdoClient(org, PatAuth(PAT), timeout=(0.5, 0.5))
    with pytest.raises(AdoTransient) as info:
        client.create_work_item("AppSec", "Bug", PATCH)
    assert info.value.outcome_unknown is False
    client.close()


def test_malformed_json_on_200(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.post(
        f"{BASE}/AppSec/_apis/wit/workitems/$Bug",
        body='{"id": 47',
        content_type="application/json",
    )
    with pytest.raises(AdoTransient) as info:
        client.create_work_item("AppSec", "Bug", PATCH)
    assert info.value.outcome_unknown is True


def test_on_response_counts_calls(
    rsps: responses.RequestsMock, client: AdoClient, seen: Recorder
) -> None:
    rsps.get(f"{BASE}/_apis/projects/AppSec", json={"id": "p1"})
    rsps.post(f"{BASE}/AppSec/_apis/wit/workitems/$Bug", status=400, json=RULE_ERROR)
    client.get_project("AppSec")
    with pytest.raises(AdoRuleError):
        client.create_work_item("AppSec", "Bug", PATCH)
    assert seen.calls == [("GET", 200), ("POST", 400)]


# --------------------------------------------------------------------------- listing and batches


def test_list_projects_follows_continuation_header(
    rsps: responses.RequestsMock, client: AdoClient
) -> None:
    rsps.get(
        f"{BASE}/_apis/projects",
        json={"count": 2, "value": [{"name": "A"}, {"name": "B"}]},
        headers={"x-ms-continuationtoken": "tok2"},
        match=[matchers.query_param_matcher({"api-version": "7.1"})],
    )
    rsps.get(
        f"{BASE}/_apis/projects",
        json={"count": 1, "value": [{"name": "C"}]},
        match=[matchers.query_param_matcher({"api-version": "7.1", "continuationToken": "tok2"})],
    )
    assert [p["name"] for p in client.list_projects()] == ["A", "B", "C"]


def test_list_projects_is_bounded(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.get(
        f"{BASE}/_apis/projects",
        json={"value": [{"name": "A"}]},
        headers={"x-ms-continuationtoken": "same"},
    )
    with pytest.raises(AdoError, match="pages"):
        client.list_projects()
    assert len(rsps.calls) == ado.MAX_PAGES


def test_unexpected_shape_is_an_error(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.get(f"{BASE}/AppSec/_apis/wit/workitemtypes", json=[1, 2])
    with pytest.raises(AdoError):
        client.list_work_item_types("AppSec")


def test_states(rsps: responses.RequestsMock, client: AdoClient) -> None:
    states = [
        {"name": "New", "color": "b2b2b2", "category": "Proposed"},
        {"name": "Closed", "color": "339933", "category": "Completed"},
    ]
    rsps.get(
        f"{BASE}/AppSec/_apis/wit/workitemtypes/Product%20Backlog%20Item/states",
        json={"count": 2, "value": states},
    )
    assert client.get_work_item_type_states("AppSec", "Product Backlog Item") == states


def test_batch_read_chunks_and_drops_nulls(rsps: responses.RequestsMock, client: AdoClient) -> None:
    ids = list(range(1, 451))
    url = f"{BASE}/AppSec/_apis/wit/workitemsbatch"
    rsps.post(url, json={"count": 2, "value": [{"id": 1}, None]})
    rsps.post(url, json={"count": 1, "value": [{"id": 201}]})
    rsps.post(url, json={"count": 1, "value": [None]})
    items = client.get_work_items_batch("AppSec", [*ids, 1], fields=["System.State"])
    assert items == [{"id": 1}, {"id": 201}]
    bodies = [json.loads(call.request.body) for call in rsps.calls]
    assert [len(b["ids"]) for b in bodies] == [200, 200, 50]
    assert bodies[0]["ids"][0] == 1 and bodies[2]["ids"][-1] == 450
    assert all(b["errorPolicy"] == "omit" for b in bodies)
    assert all(b["fields"] == ["System.State"] for b in bodies)


def test_batch_read_of_nothing_makes_no_call(client: AdoClient) -> None:
    assert client.get_work_items_batch("AppSec", []) == []


def test_comments(rsps: responses.RequestsMock, client: AdoClient) -> None:
    url = f"{BASE}/AppSec/_apis/wit/workItems/4711/comments"
    rsps.post(url, json={"id": 9, "text": "<p>Severity changed</p>"})
    rsps.get(url, json={"comments": [{"id": 1}, {"id": 2}], "continuationToken": "c2"})
    rsps.get(url, json={"comments": [{"id": 3}]})
    assert client.add_comment("AppSec", 4711, "<p>Severity changed</p>")["id"] == 9
    assert json.loads(rsps.calls[0].request.body) == {"text": "<p>Severity changed</p>"}
    assert rsps.calls[0].request.headers["Content-Type"] == "application/json"
    assert [c["id"] for c in client.list_comments("AppSec", 4711, top=10)] == [1, 2, 3]
    assert query(rsps.calls[2])["continuationToken"] == ["c2"]
    assert query(rsps.calls[1])["api-version"] == ["7.1-preview.4"]


# --------------------------------------------------------------------------- WIQL


def test_find_by_tag_builds_quoted_wiql(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.post(
        f"{BASE}/AppSec/_apis/wit/wiql",
        json={"queryType": "flat", "workItems": [{"id": 5, "url": "u"}, {"id": 8, "url": "u"}]},
    )
    assert client.find_by_tag("AppSec", "risk:o'brien") == [5, 8]
    body = json.loads(rsps.calls[0].request.body)
    assert body == {
        "query": "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project "
        "AND [System.Tags] CONTAINS 'risk:o''brien'"
    }


def test_query_wiql_top(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.post(f"{BASE}/AppSec/_apis/wit/wiql", json={"workItems": []})
    assert client.query_wiql("AppSec", "SELECT [System.Id] FROM WorkItems", top=50) == []
    assert query(rsps.calls[0])["$top"] == ["50"]


def test_changed_since(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.post(f"{BASE}/AppSec/_apis/wit/wiql", json={"workItems": [{"id": 3}]})
    assert client.changed_since("AppSec", "2025-03-04T10:12:33+01:00", tag="ado-webhook") == [3]
    wiql = json.loads(rsps.calls[0].request.body)["query"]
    assert "[System.TeamProject] = @project" in wiql
    assert "[System.ChangedDate] >= '2025-03-04T09:12:33Z'" in wiql
    assert "[System.Tags] CONTAINS 'ado-webhook'" in wiql
    assert query(rsps.calls[0])["timePrecision"] == ["true"]


def test_changed_since_rejects_garbage(client: AdoClient) -> None:
    with pytest.raises(ValueError):
        client.changed_since("AppSec", "yesterday' OR 1=1")


# --------------------------------------------------------------------------- subscriptions


SUBSCRIPTION = {
    "id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    "status": "enabled",
    "publisherId": "tfs",
    "eventType": "workitem.updated",
    "consumerInputs": {"url": "https://receiver.contoso.com/ado/hooks"},
}
SUB_URL = f"{BASE}/_apis/hooks/subscriptions/{SUBSCRIPTION['id']}"


def test_subscription_crud(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.post(f"{BASE}/_apis/hooks/subscriptions", json=SUBSCRIPTION)
    rsps.get(SUB_URL, json=SUBSCRIPTION)
    rsps.put(SUB_URL, json=SUBSCRIPTION)
    rsps.get(f"{BASE}/_apis/hooks/subscriptions", json={"count": 1, "value": [SUBSCRIPTION]})
    sid = SUBSCRIPTION["id"]
    assert client.create_subscription({"eventType": "workitem.updated"}) == SUBSCRIPTION
    assert json.loads(rsps.calls[0].request.body) == {"eventType": "workitem.updated"}
    assert client.get_subscription(sid) == SUBSCRIPTION
    assert client.replace_subscription(sid, SUBSCRIPTION) == SUBSCRIPTION
    listed = client.list_subscriptions(publisher_id="tfs", consumer_id="webHooks")
    assert listed == [SUBSCRIPTION]
    params = query(rsps.calls[3])
    assert params["publisherId"] == ["tfs"]
    assert params["consumerId"] == ["webHooks"]
    assert "eventType" not in params


def test_get_missing_subscription(rsps: responses.RequestsMock, client: AdoClient) -> None:
    rsps.get(SUB_URL, status=404, json={"message": "subscription not found"})
    with pytest.raises(AdoNotFound):
        client.get_subscription(str(SUBSCRIPTION["id"]))


@pytest.mark.parametrize("status", [200, 204, 404])
def test_delete_subscription(rsps: responses.RequestsMock, client: AdoClient, status: int) -> None:
    rsps.delete(SUB_URL, status=status, body="")
    assert client.delete_subscription(str(SUBSCRIPTION["id"])) is None


def test_delete_subscription_other_errors_raise(
    rsps: responses.RequestsMock, client: AdoClient
) -> None:
    rsps.delete(SUB_URL, status=403, json={"message": "Access denied"})
    with pytest.raises(AdoPermissionError):
        client.delete_subscription(str(SUBSCRIPTION["id"]))


# --------------------------------------------------------------------------- Entra ID


def sp_auth() -> ServicePrincipalAuth:
    return ServicePrincipalAuth(TENANT, CLIENT_ID, SECRET)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def token_body(token: str, expires_in: Any = 3599) -> dict[str, Any]:
    return {"token_type": "Bearer", "expires_in": expires_in, "access_token": token}


def test_entra_token_fetched_once_and_reused(rsps: responses.RequestsMock) -> None:
    rsps.post(TOKEN_URL, json=token_body(ACCESS_TOKEN))
    rsps.get(f"{BASE}/_apis/projects/AppSec", json={"id": "p1"})
    rsps.get(f"{BASE}/_apis/projects/AppSec", json={"id": "p1"})
    clock = Clock()
    provider = EntraTokenProvider("https://login.microsoftonline.com", sp_auth(), clock=clock)
    client = AdoClient(ORG, sp_auth(), token_provider=provider)
    client.get_project("AppSec")
    clock.now += 3000
    client.get_project("AppSec")
    token_calls = [c for c in rsps.calls if c.request.url == TOKEN_URL]
    assert len(token_calls) == 1
    form = parse_qs(token_calls[0].request.body)
    assert form == {
        "grant_type": ["client_credentials"],
        "client_id": [CLIENT_ID],
        "client_secret": [SECRET],
        "scope": ["499b84ac-1321-427f-aa17-267ca6975798/.default"],
    }
    assert token_calls[0].request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    for call in rsps.calls[1:]:
        assert call.request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"


def test_entra_token_renewed_near_expiry(rsps: responses.RequestsMock) -> None:
    rsps.post(TOKEN_URL, json=token_body("token-one", 3600))
    rsps.post(TOKEN_URL, json=token_body("token-two", "3600"))
    clock = Clock()
    provider = EntraTokenProvider("https://login.microsoftonline.com/", sp_auth(), clock=clock)
    assert provider.token() == "token-one"
    clock.now += 3600 - 301
    assert provider.token() == "token-one"
    clock.now += 2  # now fewer than 5 minutes are left
    assert provider.token() == "token-two"
    assert len(rsps.calls) == 2


def test_short_lived_token_renewed_at_80_percent(rsps: responses.RequestsMock) -> None:
    rsps.post(TOKEN_URL, json=token_body("short-one", 600))
    rsps.post(TOKEN_URL, json=token_body("short-two", 600))
    clock = Clock()
    provider = EntraTokenProvider("https://login.microsoftonline.com", sp_auth(), clock=clock)
    assert provider.token() == "short-one"
    clock.now += 479
    assert provider.token() == "short-one"
    clock.now += 2
    assert provider.token() == "short-two"


def test_entra_invalid_client_is_auth_error(rsps: responses.RequestsMock) -> None:
    rsps.post(
        TOKEN_URL,
        status=401,
        json={
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided.",
            "error_codes": [7000215],
        },
    )
    client = AdoClient(ORG, sp_auth())
    with pytest.raises(AdoAuthError) as info:
        client.get_project("AppSec")
    err = info.value
    assert err.type_key == "invalid_client"
    assert "AADSTS7000215" in str(err)
    assert_no_secrets(str(err) + repr(err))


def test_entra_error_never_echoes_the_secret(rsps: responses.RequestsMock) -> None:
    rsps.post(
        TOKEN_URL,
        status=400,
        json={"error": "invalid_request", "error_description": f"bad secret {SECRET}"},
    )
    provider = EntraTokenProvider("https://login.microsoftonline.com", sp_auth())
    with pytest.raises(AdoAuthError) as info:
        provider.token()
    assert_no_secrets(str(info.value) + repr(info.value))


@pytest.mark.parametrize("status", [500, 503, 429])
def test_entra_outage_is_transient(rsps: responses.RequestsMock, status: int) -> None:
    rsps.post(TOKEN_URL, status=status, json={"error": "temporarily_unavailable"})
    provider = EntraTokenProvider("https://login.microsoftonline.com", sp_auth())
    with pytest.raises(AdoTransient) as info:
        provider.token()
    assert info.value.outcome_unknown is False


def test_entra_network_error_is_transient(rsps: responses.RequestsMock) -> None:
    rsps.post(TOKEN_URL, body=requests.ConnectionError(f"boom client_secret={SECRET}"))
    provider = EntraTokenProvider("https://login.microsoftonline.com", sp_auth())
    with pytest.raises(AdoTransient) as info:
        provider.token()
    assert_no_secrets(str(info.value) + repr(info.value))
    assert info.value.__context__ is None


def test_entra_200_without_token_is_transient(rsps: responses.RequestsMock) -> None:
    rsps.post(TOKEN_URL, json={"token_type": "Bearer"})
    provider = EntraTokenProvider("https://login.microsoftonline.com", sp_auth())
    with pytest.raises(AdoTransient):
        provider.token()


def test_401_with_bearer_drops_the_cached_token(rsps: responses.RequestsMock) -> None:
    rsps.post(TOKEN_URL, json=token_body("revoked"))
    rsps.get(f"{BASE}/_apis/projects/AppSec", status=401, json=UNAUTHORIZED)
    rsps.post(TOKEN_URL, json=token_body("fresh"))
    rsps.get(f"{BASE}/_apis/projects/AppSec", json={"id": "p1"})
    client = AdoClient(ORG, sp_auth())
    with pytest.raises(AdoAuthError):
        client.get_project("AppSec")
    assert client.get_project("AppSec") == {"id": "p1"}
    assert rsps.calls[3].request.headers["Authorization"] == "Bearer fresh"


def test_shared_provider_reuses_tokens_across_clients(rsps: responses.RequestsMock) -> None:
    rsps.post(TOKEN_URL, json=token_body(ACCESS_TOKEN))
    rsps.get(f"{BASE}/_apis/projects/A", json={"id": "a"})
    rsps.get("https://dev.azure.com/other/_apis/projects/B", json={"id": "b"})
    AdoClient(ORG, sp_auth()).get_project("A")
    AdoClient(parse_organization_url("https://dev.azure.com/other"), sp_auth()).get_project("B")
    assert sum(1 for c in rsps.calls if c.request.url == TOKEN_URL) == 1
    assert ado.shared_token_provider(
        "https://login.microsoftonline.com", sp_auth()
    ) is ado.shared_token_provider("https://login.microsoftonline.com/", sp_auth())


def test_rotated_secret_gets_a_new_provider() -> None:
    first = ado.shared_token_provider("https://login.microsoftonline.com", sp_auth())
    rotated = ServicePrincipalAuth(TENANT, CLIENT_ID, SECRET + "-rotated")
    second = ado.shared_token_provider("https://login.microsoftonline.com", rotated)
    assert first is not second
    assert second.auth == rotated


def test_custom_authority_token_url(rsps: responses.RequestsMock) -> None:
    rsps.post(f"http://127.0.0.1:8765/entra/{TENANT}/oauth2/v2.0/token", json=token_body("t"))
    provider = EntraTokenProvider("http://127.0.0.1:8765/entra/", sp_auth())
    assert provider.token() == "t"


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "url",
    [
        "http://login.microsoftonline.com",
        "http://evil.example",
        "ftp://login.microsoftonline.com",
        "login.microsoftonline.com",
        "https://user:pw@login.microsoftonline.com",
        "https://login.microsoftonline.com?x=1",
        "https://login.microsoftonline.com#x",
        "https://login.microsoftonline.com /",
        "https://login\\microsoftonline.com",
        "https://login.microsoftonline.com:99999",
        "https://lögin.microsoftonline.com",
        "",
    ],
)
def test_validate_authority_rejects(url: str) -> None:
    with pytest.raises(ValueError):
        validate_authority(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://login.microsoftonline.com", "https://login.microsoftonline.com"),
        ("https://login.microsoftonline.com/", "https://login.microsoftonline.com"),
        ("https://login.microsoftonline.us", "https://login.microsoftonline.us"),
        ("http://127.0.0.1:8765/entra/", "http://127.0.0.1:8765/entra"),
        ("http://localhost:8765", "http://localhost:8765"),
        ("http://[::1]:8765", "http://[::1]:8765"),
    ],
)
def test_validate_authority_accepts(url: str, expected: str) -> None:
    assert validate_authority(url) == expected


def test_client_rejects_bad_authority_for_service_principal() -> None:
    with pytest.raises(ValueError):
        AdoClient(ORG, sp_auth(), entra_authority="http://login.example.com")


@pytest.mark.parametrize("token", ["", "with space", "line\nbreak", "tab\there", "é"])
def test_pat_validation(token: str) -> None:
    with pytest.raises(ValueError) as info:
        PatAuth(token)
    assert token not in str(info.value) or token == ""


def test_service_principal_validation() -> None:
    with pytest.raises(ValueError):
        ServicePrincipalAuth("../evil", CLIENT_ID, SECRET)
    with pytest.raises(ValueError):
        ServicePrincipalAuth(TENANT, "", SECRET)
    with pytest.raises(ValueError):
        ServicePrincipalAuth(TENANT, CLIENT_ID, "")
    assert ServicePrincipalAuth("contoso.onmicrosoft.com", CLIENT_ID, SECRET)


# --------------------------------------------------------------------------- secrets


def test_secrets_absent_from_reprs() -> None:
    client = AdoClient(ORG, PatAuth(PAT))
    sp_client = AdoClient(ORG, sp_auth())
    text = " ".join(
        [repr(PatAuth(PAT)), str(PatAuth(PAT)), repr(sp_auth()), repr(client), repr(sp_client)]
    )
    assert_no_secrets(text)
    assert "contoso" in repr(client)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (203, SIGN_IN_PAGE),
        (302, ""),
        (401, json.dumps(UNAUTHORIZED)),
        (403, json.dumps({"message": "Access denied"})),
        (400, json.dumps(RULE_ERROR)),
        (404, json.dumps(TYPE_NOT_FOUND)),
        (412, "{}"),
        (429, "{}"),
        (503, "oops"),
        (200, SIGN_IN_PAGE),
    ],
)
def test_secrets_absent_from_http_errors(
    rsps: responses.RequestsMock, client: AdoClient, status: int, body: str
) -> None:
    rsps.post(
        f"{BASE}/AppSec/_apis/wit/workitems/$Bug",
        status=status,
        body=body,
        content_type="application/json" if body.startswith("{") else "text/html",
        headers={"Location": "https://login.example/"} if status == 302 else {},
    )
    with pytest.raises(AdoError) as info:
        client.create_work_item("AppSec", "Bug", PATCH)
    err = info.value
    assert_no_secrets(f"{err!s} {err!r} {err.args!r} {err.url} {vars(err)!r}")


def test_secrets_scrubbed_from_network_errors(
    rsps: responses.RequestsMock, client: AdoClient
) -> None:
    leaky = requests.exceptions.InvalidHeader(f"bad header value: 'Basic {PAT_B64}' {PAT}")
    rsps.get(f"{BASE}/_apis/projects/AppSec", body=leaky)
    with pytest.raises(AdoTransient) as info:
        client.get_project("AppSec")
    err = info.value
    assert_no_secrets(f"{err!s} {err!r} {err.args!r}")
    assert err.__context__ is None and err.__cause__ is None


def test_secrets_scrubbed_for_bearer_token(rsps: responses.RequestsMock) -> None:
    rsps.post(TOKEN_URL, json=token_body(ACCESS_TOKEN))
    rsps.get(
        f"{BASE}/_apis/projects/AppSec",
        body=requests.ConnectionError(f"Authorization: Bearer {ACCESS_TOKEN}"),
    )
    with pytest.raises(AdoTransient) as info:
        AdoClient(ORG, sp_auth()).get_project("AppSec")
    assert_no_secrets(f"{info.value!s} {info.value!r}")


# --------------------------------------------------------------------------- sans-I/O


def make_response(
    status: int, body: bytes = b"", content_type: str | None = JSON_CT, method: str = "GET"
) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp._content = body
    if content_type:
        resp.headers["Content-Type"] = content_type
    resp.request = requests.Request(method, f"{BASE}/_apis/x").prepare()
    return resp


def test_classify_response_directly() -> None:
    assert classify_response(make_response(204)) is None
    assert classify_response(make_response(200, b"")) is None
    assert classify_response(make_response(200, b'{"a": 1}')) == {"a": 1}
    assert classify_response(make_response(201, b"[1]", "application/problem+json")) == [1]
    with pytest.raises(AdoAuthError):
        classify_response(make_response(200, b"{}", None))
    with pytest.raises(AdoNotFound):
        classify_response(make_response(410, b""))
    with pytest.raises(AdoTransient) as info:
        classify_response(make_response(408, b"", method="DELETE"))
    assert info.value.outcome_unknown is True
    with pytest.raises(AdoTransient) as info:
        classify_response(make_response(500, b"", method="POST"), read_only=True)
    assert info.value.outcome_unknown is False
    with pytest.raises(AdoError) as other:
        classify_response(make_response(415, b""))
    assert type(other.value) is AdoError
    assert other.value.status == 415


def test_error_hierarchy() -> None:
    for cls in (
        AdoAuthError,
        AdoPermissionError,
        AdoNotFound,
        AdoRuleError,
        AdoConflict,
        AdoRateLimited,
        AdoTransient,
    ):
        assert issubclass(cls, AdoError)
    assert issubclass(AdoPermissionError, AdoAuthError)


def test_client_module_has_no_flask_import() -> None:
    tree = ast.parse((Path(__file__).parents[1] / "webhook" / "ado.py").read_text())
    modules = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert "flask" not in modules
