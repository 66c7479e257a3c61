"""Tests of the Azure DevOps stand-in (`webhook.sandbox`), over real HTTP.

Expected payload shapes are the key sets of /work/shared/azure-devops-samples/*.json, inlined
so the suite runs without that folder.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request

from webhook.sandbox import Sandbox
from webhook.sandbox.wire import parse_date

V = {"api-version": "7.1"}
PREVIEW = {"api-version": "7.1-preview.4"}
PATCH_JSON = {"Content-Type": "application/json-patch+json"}
APPSEC_ID = "3f0c6a4e-5b1d-4c2e-9a77-0d2b8e41c9a1"

ENVELOPE_KEYS = {
    "subscriptionId",
    "notificationId",
    "id",
    "eventType",
    "publisherId",
    "message",
    "detailedMessage",
    "resource",
    "resourceVersion",
    "resourceContainers",
    "createdDate",
}
CREATED_RESOURCE_KEYS = {"id", "rev", "fields", "relations", "_links", "url"}
REST_LINKS = {
    "self",
    "workItemUpdates",
    "workItemRevisions",
    "workItemComments",
    "html",
    "workItemType",
    "fields",
}
UPDATED_RESOURCE_KEYS = {
    "id",
    "workItemId",
    "rev",
    "revisedBy",
    "revisedDate",
    "fields",
    "_links",
    "url",
    "revision",
}
REVISED_BY_KEYS = {
    "id",
    "name",
    "displayName",
    "url",
    "_links",
    "uniqueName",
    "imageUrl",
    "descriptor",
}
IDENTITY_REF_KEYS = {"displayName", "url", "_links", "id", "uniqueName", "imageUrl", "descriptor"}
LINK_ATTRIBUTE_KEYS = {
    "authorizedDate",
    "id",
    "resourceCreatedDate",
    "resourceModifiedDate",
    "revisedDate",
    "comment",
}
SUBSCRIPTION_KEYS = {
    "id",
    "url",
    "status",
    "publisherId",
    "eventType",
    "subscriber",
    "resourceVersion",
    "eventDescription",
    "consumerId",
    "consumerActionId",
    "actionDescription",
    "probationRetries",
    "createdBy",
    "createdDate",
    "modifiedBy",
    "modifiedDate",
    "publisherInputs",
    "consumerInputs",
}
WRAPPED_KEYS = {"$id", "innerException", "message", "typeName", "typeKey", "errorCode", "eventId"}


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class Receiver:
    """A tiny web hook receiver: records each POST, answers queued statuses (default 200)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.replies: list[int] = []
        self.lock = threading.Lock()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True, request_handler=_Quiet)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/hooks/ado"

    def app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        req = Request(environ)
        with self.lock:
            self.calls.append(
                {"headers": dict(req.headers), "body": req.get_json(), "auth": req.authorization}
            )
            status = self.replies.pop(0) if self.replies else 200
        start_response(f"{status} Sandbox Test", [("Content-Type", "text/plain")])
        return [b"ok"]

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [c["body"] for c in self.calls]

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.replies.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(hook_retry_delays=(0.02, 0.04)) as sb:
        yield sb


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


@pytest.fixture
def sb(sandbox: Sandbox, receiver: Receiver) -> Iterator[Sandbox]:
    sandbox.reset()
    receiver.reset()
    yield sandbox
    sandbox.hold_deliveries()
    sandbox.reset()  # drops anything still queued
    sandbox.wait_deliveries_idle(5)


@pytest.fixture
def client(sb: Sandbox) -> Iterator[requests.Session]:
    session = requests.Session()
    session.auth = ("", sb.pat)
    yield session
    session.close()


def create(
    client: requests.Session,
    sb: Sandbox,
    fields: dict[str, Any],
    *,
    project: str = "AppSec",
    wit: str = "Bug",
    **params: str,
) -> requests.Response:
    ops = [{"op": "add", "path": f"/fields/{k}", "value": v} for k, v in fields.items()]
    return client.post(
        f"{sb.org_url}/{project}/_apis/wit/workitems/${wit}",
        params={**V, **params},
        json=ops,
        headers=PATCH_JSON,
    )


def patch(
    client: requests.Session, sb: Sandbox, item_id: int, ops: list[dict[str, Any]]
) -> requests.Response:
    return client.patch(
        f"{sb.org_url}/AppSec/_apis/wit/workitems/{item_id}", params=V, json=ops, headers=PATCH_JSON
    )


def subscribe(
    client: requests.Session,
    sb: Sandbox,
    receiver: Receiver,
    event_type: str,
    **consumer_inputs: str,
) -> dict[str, Any]:
    body = {
        "publisherId": "tfs",
        "eventType": event_type,
        "resourceVersion": "1.0",
        "consumerId": "webHooks",
        "consumerActionId": "httpRequest",
        "publisherInputs": {"projectId": APPSEC_ID},
        "consumerInputs": {
            "url": receiver.url,
            "resourceDetailsToSend": "all",
            "messagesToSend": "none",
            "detailedMessagesToSend": "none",
            **consumer_inputs,
        },
    }
    resp = client.post(f"{sb.org_url}/_apis/hooks/subscriptions", params=V, json=body)
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


def wiql(client: requests.Session, sb: Sandbox, query: str, **params: str) -> requests.Response:
    return client.post(
        f"{sb.org_url}/AppSec/_apis/wit/wiql", params={**V, **params}, json={"query": query}
    )


# ---- authentication ------------------------------------------------------------------------


def test_pat_is_accepted_and_bad_credentials_get_the_sign_in_trap(
    sb: Sandbox, client: requests.Session
):
    ok = client.get(f"{sb.org_url}/_apis/projects", params=V)
    assert ok.status_code == 200
    assert ok.headers["Content-Type"].startswith("application/json")
    with requests.Session() as bad:
        bad.auth = ("", "not-the-pat")
        page = bad.get(f"{sb.org_url}/_apis/projects", params=V)
        assert page.status_code == 203
        assert page.headers["Content-Type"].startswith("text/html")
        assert (
            bad.post(
                f"{sb.org_url}/AppSec/_apis/wit/wiql", params=V, json={"query": "x"}
            ).status_code
            == 203
        )
        refused = bad.patch(
            f"{sb.org_url}/_apis/wit/workitems/101", params=V, json=[], headers=PATCH_JSON
        )
        assert refused.status_code == 401
        assert refused.json()["message"].startswith("TF400813")
        assert set(refused.json()) == WRAPPED_KEYS
        assert "Basic" in refused.headers["WWW-Authenticate"]
        assert bad.get(f"{sb.org_url}/_apis/projects", params=V, auth=None).status_code == 203


def test_service_principal_token_flow(sb: Sandbox):
    token_url = f"{sb.url}/{sb.sp['tenant_id']}/oauth2/v2.0/token"
    form = {
        "grant_type": "client_credentials",
        "client_id": sb.sp["client_id"],
        "client_secret": sb.sp["client_secret"],
        "scope": "499b84ac-1321-427f-aa17-267ca6975798/.default",
    }
    with requests.Session() as session:
        issued = session.post(token_url, data=form)
        assert issued.status_code == 200
        assert issued.json()["token_type"] == "Bearer"
        assert issued.json()["expires_in"] == 3599
        bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
        made = session.post(
            f"{sb.org_url}/AppSec/_apis/wit/workitems/$Task",
            params=V,
            headers={**bearer, **PATCH_JSON},
            json=[{"op": "add", "path": "/fields/System.Title", "value": "t"}],
        )
        assert made.status_code == 200
        assert made.json()["fields"]["System.ChangedBy"]["uniqueName"] == sb.sp["client_id"]

        bad_secret = session.post(token_url, data={**form, "client_secret": "wrong"})
        assert bad_secret.status_code == 401
        assert bad_secret.json()["error"] == "invalid_client"
        assert (
            session.post(token_url, data={**form, "scope": "https://x/.default"}).json()["error"]
            == "invalid_scope"
        )

        sb.token_lifetime = 0
        try:
            expired = session.post(token_url, data=form).json()["access_token"]
        finally:
            sb.token_lifetime = 3599
        stale = session.get(
            f"{sb.org_url}/_apis/projects", params=V, headers={"Authorization": f"Bearer {expired}"}
        )
        assert stale.status_code == 203


def test_api_version_is_required(sb: Sandbox, client: requests.Session):
    missing = client.get(f"{sb.org_url}/_apis/projects")
    assert missing.status_code == 400
    assert missing.json()["typeKey"] == "VssVersionNotSpecifiedException"


# ---- discovery -----------------------------------------------------------------------------


def test_projects_paging_and_lookup(sb: Sandbox, client: requests.Session):
    first = client.get(f"{sb.org_url}/_apis/projects", params={**V, "$top": "3"})
    assert first.json()["count"] == 3
    token = first.headers["x-ms-continuationtoken"]
    rest = client.get(
        f"{sb.org_url}/_apis/projects", params={**V, "$top": "3", "continuationToken": token}
    )
    assert rest.json()["count"] == 1
    assert "x-ms-continuationtoken" not in rest.headers
    names = {p["name"] for p in first.json()["value"] + rest.json()["value"]}
    assert names == {"AppSec", "Platform", "Custom", "Strict"}
    project = rest.json()["value"][0]
    assert project["state"] == "wellFormed"
    by_id = client.get(f"{sb.org_url}/_apis/projects/{APPSEC_ID}", params=V).json()
    assert by_id["name"] == "AppSec"
    missing = client.get(f"{sb.org_url}/_apis/projects/Nope", params=V)
    assert missing.status_code == 404
    assert missing.json()["typeKey"] == "ProjectDoesNotExistWithNameException"
    assert "TF200016" in missing.json()["message"]


def test_types_states_and_fields_per_process(sb: Sandbox, client: requests.Session):
    def states(project: str, wit: str) -> list[tuple[str, str]]:
        resp = client.get(f"{sb.org_url}/{project}/_apis/wit/workitemtypes/{wit}/states", params=V)
        return [(s["name"], s["category"]) for s in resp.json()["value"]]

    def fields(project: str, wit: str) -> dict[str, dict[str, Any]]:
        resp = client.get(
            f"{sb.org_url}/{project}/_apis/wit/workitemtypes/{wit}/fields",
            params={**V, "$expand": "allowedValues"},
        )
        return {f["referenceName"]: f for f in resp.json()["value"]}

    assert states("AppSec", "Bug") == [
        ("New", "Proposed"),
        ("Active", "InProgress"),
        ("Resolved", "Resolved"),
        ("Closed", "Completed"),
    ]
    assert ("Removed", "Removed") in states("AppSec", "User%20Story")
    assert states("Platform", "Issue") == [
        ("To Do", "Proposed"),
        ("Doing", "InProgress"),
        ("Done", "Completed"),
    ]
    finding = dict(states("Custom", "Security Finding"))
    assert finding["Accepted Risk"] == "Removed" and finding["Verified"] == "Resolved"

    bug = fields("AppSec", "Bug")
    assert bug["System.Title"]["alwaysRequired"] is True
    assert bug["Microsoft.VSTS.Common.Priority"]["allowedValues"] == ["1", "2", "3", "4"]
    assert bug["Microsoft.VSTS.Common.Severity"]["defaultValue"] == "3 - Medium"
    assert "Microsoft.VSTS.TCM.ReproSteps" in bug
    assert "Microsoft.VSTS.Common.Severity" not in fields("Platform", "Issue")
    team = fields("Strict", "Bug")["Custom.Team"]
    assert team["alwaysRequired"] is True and team["defaultValue"] is None
    assert team["allowedValues"] == ["Red", "Blue"]

    types = client.get(f"{sb.org_url}/Platform/_apis/wit/workitemtypes", params=V).json()
    assert {t["name"] for t in types["value"]} == {"Issue", "Task", "Epic"}
    no_bug = client.get(f"{sb.org_url}/Platform/_apis/wit/workitemtypes/Bug", params=V)
    assert no_bug.status_code == 404
    assert no_bug.json()["typeKey"] == "WorkItemTypeNotFoundException"
    assert no_bug.json()["message"].startswith("VS402323: Work item type Bug does not exist")


# ---- work items ----------------------------------------------------------------------------


def test_create_response_shape_matches_the_sample(sb: Sandbox, client: requests.Session):
    ops = [
        {"op": "add", "path": "/fields/System.Title", "value": "[SAST] SQL injection"},
        {"op": "add", "path": "/fields/System.AreaPath", "value": "appsec\\findings"},
        {"op": "add", "path": "/fields/System.Tags", "value": "sast; Security; sast;"},
        {"op": "add", "path": "/fields/Microsoft.VSTS.Common.Priority", "value": "1"},
        {
            "op": "add",
            "path": "/relations/-",
            "value": {
                "rel": "Hyperlink",
                "url": "https://scanner/f/1",
                "attributes": {"comment": "Scanner finding"},
            },
        },
    ]
    resp = client.post(
        f"{sb.org_url}/AppSec/_apis/wit/workitems/%24Bug", params=V, json=ops, headers=PATCH_JSON
    )
    assert resp.status_code == 200, resp.text
    item = resp.json()
    assert set(item) == CREATED_RESOURCE_KEYS
    assert set(item["_links"]) == REST_LINKS
    assert item["_links"]["html"]["href"].endswith(f"/{APPSEC_ID}/_workitems/edit/{item['id']}")
    fields = item["fields"]
    assert item["rev"] == 1
    assert fields["System.State"] == "New" and fields["System.Reason"] == "New defect reported"
    assert fields["System.AreaPath"] == "AppSec\\Findings"
    assert fields["System.IterationPath"] == "AppSec"
    assert fields["System.Tags"] == "sast; Security"
    assert fields["Microsoft.VSTS.Common.Priority"] == 1
    assert fields["Microsoft.VSTS.Common.ValueArea"] == "Business"
    assert fields["System.CommentCount"] == 0
    assert set(fields["System.CreatedBy"]) == IDENTITY_REF_KEYS
    assert fields["System.CreatedBy"]["uniqueName"] == "secbot@contoso.com"
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z", fields["System.CreatedDate"]
    )
    assert set(item["relations"][0]["attributes"]) == LINK_ATTRIBUTE_KEYS


def test_create_rules(sb: Sandbox, client: requests.Session):
    strict = create(client, sb, {"System.Title": "x"}, project="Strict")
    assert strict.status_code == 400
    assert strict.json()["typeKey"] == "RuleValidationException"
    assert strict.json()["message"] == (
        "TF401320: Rule Error for field Team. Error code: Required, InvalidEmpty."
    )
    green = create(client, sb, {"System.Title": "x", "Custom.Team": "Green"}, project="Strict")
    assert green.status_code == 400
    assert "not in the list of supported values" in green.json()["message"]

    preview = create(
        client,
        sb,
        {"System.Title": "x", "Custom.Team": "red"},
        project="Strict",
        validateOnly="true",
    )
    assert preview.status_code == 200
    assert preview.json()["fields"]["Custom.Team"] == "Red"
    real = create(client, sb, {"System.Title": "x", "Custom.Team": "Red"}, project="Strict")
    assert real.json()["id"] == 101  # validateOnly consumed no id
    assert len(sb.work_items()) == 1

    severity = {"System.Title": "x", "Microsoft.VSTS.Common.Severity": "2 - High"}
    unknown = create(client, sb, severity, project="Platform", wit="Issue")
    assert unknown.status_code == 400
    assert unknown.json()["message"] == "TF51535: Cannot find field Microsoft.VSTS.Common.Severity."
    no_type = create(client, sb, {"System.Title": "x"}, project="Platform", wit="Bug")
    assert no_type.status_code == 404
    bad_area = create(client, sb, {"System.Title": "x", "System.AreaPath": "Elsewhere\\X"})
    assert bad_area.status_code == 400 and bad_area.json()["message"].startswith("TF401347")
    no_title = create(client, sb, {"System.Description": "d"})
    assert no_title.json()["message"] == (
        "TF401320: Rule Error for field Title. Error code: Required, InvalidEmpty."
    )
    wrong_type = client.post(
        f"{sb.org_url}/AppSec/_apis/wit/workitems/$Bug",
        params=V,
        json=[{"op": "add", "path": "/fields/System.Title", "value": "x"}],
    )
    assert wrong_type.status_code == 415


def test_update_rev_test_state_changes_and_delete(sb: Sandbox, client: requests.Session):
    item_id = create(client, sb, {"System.Title": "x"}).json()["id"]
    moved = patch(
        client,
        sb,
        item_id,
        [
            {"op": "test", "path": "/rev", "value": 1},
            {"op": "add", "path": "/fields/System.State", "value": "Resolved"},
        ],
    )
    assert moved.status_code == 200
    fields = moved.json()["fields"]
    assert moved.json()["rev"] == 2
    assert fields["System.Reason"] == "Fixed"
    assert fields["Microsoft.VSTS.Common.ResolvedBy"]["uniqueName"] == "secbot@contoso.com"
    # ADO trims trailing zeros of the milliseconds: compare dates, never their strings.
    assert parse_date(fields["System.ChangedDate"]) > parse_date(fields["System.CreatedDate"])
    stale = patch(
        client,
        sb,
        item_id,
        [
            {"op": "test", "path": "/rev", "value": 1},
            {"op": "add", "path": "/fields/System.Title", "value": "y"},
        ],
    )
    assert stale.status_code == 412
    assert stale.json()["message"].startswith("VS403351")
    bad_state = patch(
        client, sb, item_id, [{"op": "add", "path": "/fields/System.State", "value": "Removed"}]
    )  # Agile Bug has no Removed
    assert bad_state.status_code == 400

    batch = client.post(
        f"{sb.org_url}/AppSec/_apis/wit/workitemsbatch",
        params=V,
        json={
            "ids": [item_id, 999],
            "errorPolicy": "omit",
            "fields": ["System.Id", "System.State"],
        },
    ).json()
    assert batch["value"][0]["fields"] == {"System.Id": item_id, "System.State": "Resolved"}
    assert batch["value"][1] is None

    gone = client.delete(f"{sb.org_url}/AppSec/_apis/wit/workitems/{item_id}", params=V)
    assert gone.status_code == 200
    assert gone.json()["url"].endswith(f"/_apis/wit/recyclebin/{item_id}")
    missing = client.get(f"{sb.org_url}/_apis/wit/workitems/{item_id}", params=V)
    assert missing.status_code == 404 and missing.json()["message"].startswith("TF401232")
    restored = client.patch(
        f"{sb.org_url}/AppSec/_apis/wit/recyclebin/{item_id}", params=V, json={"IsDeleted": False}
    )
    assert restored.status_code == 200
    assert client.get(f"{sb.org_url}/_apis/wit/workitems/{item_id}", params=V).json()["rev"] == 2


def test_comments_need_the_preview_version_and_include_history(
    sb: Sandbox, client: requests.Session
):
    item_id = create(client, sb, {"System.Title": "x"}).json()["id"]
    url = f"{sb.org_url}/AppSec/_apis/wit/workItems/{item_id}/comments"
    ga = client.post(url, params=V, json={"text": "hi"})
    assert ga.status_code == 400
    assert ga.json()["typeKey"] == "VssInvalidPreviewVersionException"
    posted = client.post(
        url, params={**PREVIEW, "format": "markdown"}, json={"text": "**Severity** changed"}
    )
    assert posted.status_code == 200
    comment = posted.json()
    assert {
        "workItemId",
        "id",
        "version",
        "text",
        "renderedText",
        "format",
        "createdBy",
        "createdDate",
        "modifiedBy",
        "modifiedDate",
        "isDeleted",
        "url",
    } <= set(comment)
    assert comment["format"] == "markdown" and "<strong>" in comment["renderedText"]
    patch(
        client,
        sb,
        item_id,
        [{"op": "add", "path": "/fields/System.History", "value": "<p>from history</p>"}],
    )
    listed = client.get(url, params={**PREVIEW, "order": "asc"}).json()
    assert listed["totalCount"] == 2
    assert [c["text"] for c in listed["comments"]] == [
        "**Severity** changed",
        "<p>from history</p>",
    ]
    top = client.get(url, params={**PREVIEW, "$top": "1"}).json()
    assert top["count"] == 1 and top["comments"][0]["text"] == "<p>from history</p>"
    assert sb.work_item(item_id)["fields"]["System.CommentCount"] == 2


def test_wiql(sb: Sandbox, client: requests.Session):
    first = create(client, sb, {"System.Title": "a", "System.Tags": "finding:ABC123; sast"})
    create(client, sb, {"System.Title": "b", "System.Tags": "finding:ABC1234"})
    by_tag = (
        "SELECT [System.Id], [System.Title] FROM WorkItems WHERE [System.TeamProject] = "
        "@project AND [System.Tags] CONTAINS 'FINDING:abc123' AND [System.State] <> 'Closed'"
    )
    ids = [i["id"] for i in wiql(client, sb, by_tag).json()["workItems"]]
    assert ids == [first.json()["id"]]

    created = first.json()["fields"]["System.CreatedDate"]
    since = f"SELECT [System.Id] FROM WorkItems WHERE [System.ChangedDate] >= '{created}'"
    refused = wiql(client, sb, since)
    assert refused.status_code == 400
    assert refused.json()["message"].startswith("You cannot supply a time with the date")
    precise = wiql(client, sb, since + " ORDER BY [System.Id] DESC", timePrecision="true")
    assert [i["id"] for i in precise.json()["workItems"]] == [102, 101]
    later = wiql(
        client,
        sb,
        "SELECT [System.Id] FROM WorkItems WHERE [System.ChangedDate] > '2999-01-01T00:00:00Z'",
        timePrecision="true",
    )
    assert later.json()["workItems"] == []
    today = wiql(
        client,
        sb,
        "SELECT [System.Id] FROM WorkItems WHERE "
        "[System.ChangedDate] >= @today - 1 AND [Title] IN ('a', 'B')",
    )
    assert len(today.json()["workItems"]) == 2

    syntax = wiql(client, sb, "SELECT TOP 5 [System.Id] FROM WorkItems")
    assert syntax.status_code == 400
    assert syntax.json()["message"].startswith("TF51006: The query statement is missing a FROM")
    unknown = wiql(client, sb, "SELECT [System.Bogus] FROM WorkItems")
    assert unknown.json()["message"].startswith("TF51005")
    quoted = wiql(client, sb, "SELECT [System.Id] FROM WorkItems WHERE [System.Title] = 'it''s'")
    assert quoted.status_code == 200

    sb.delete_item(first.json()["id"])
    everything = "SELECT [System.Id] FROM WorkItems"
    assert len(wiql(client, sb, everything).json()["workItems"]) == 1
    sb.wiql_max_results = 0
    try:
        too_many = wiql(client, sb, everything)
    finally:
        sb.wiql_max_results = 20_000
    assert too_many.status_code == 400 and too_many.json()["message"].startswith("VS402337")


# ---- subscriptions -------------------------------------------------------------------------


def test_subscription_crud_masks_the_password(
    sb: Sandbox, client: requests.Session, receiver: Receiver
):
    sub = subscribe(
        client,
        sb,
        receiver,
        "workitem.updated",
        basicAuthUsername="ado",
        basicAuthPassword="s3cret",
    )
    assert set(sub) == SUBSCRIPTION_KEYS
    assert sub["status"] == "enabled"
    assert sub["consumerInputs"]["basicAuthPassword"] == "********"
    assert {"hostId", "tfsSubscriptionId"} <= set(sub["publisherInputs"])
    base = f"{sb.org_url}/_apis/hooks/subscriptions"
    listed = client.get(base, params={**V, "eventType": "workitem.updated"}).json()
    assert listed["count"] == 1
    assert client.get(base, params={**V, "eventType": "workitem.created"}).json()["count"] == 0

    sb.set_subscription_status(sub["id"], "disabledBySystem")
    fetched = client.get(f"{base}/{sub['id']}", params=V).json()
    assert fetched["status"] == "disabledBySystem"
    fetched["status"] = "enabled"
    put = client.put(f"{base}/{sub['id']}", params=V, json=fetched)
    assert put.status_code == 200 and put.json()["status"] == "enabled"
    stored = next(s for s in sb.subscriptions() if s["id"] == sub["id"])
    assert stored["consumerInputs"]["basicAuthPassword"] == "s3cret"

    bad = {**fetched, "eventType": "git.push"}
    assert client.post(base, params=V, json=bad).status_code == 400
    no_project = {**fetched, "publisherInputs": {"projectId": "AppSec"}}
    assert client.post(base, params=V, json=no_project).status_code == 400
    assert client.delete(f"{base}/{sub['id']}", params=V).status_code == 204
    assert client.get(f"{base}/{sub['id']}", params=V).status_code == 404


# ---- hook deliveries -----------------------------------------------------------------------


def test_updated_and_created_payloads_match_the_samples(
    sb: Sandbox, client: requests.Session, receiver: Receiver
):
    sub = subscribe(
        client,
        sb,
        receiver,
        "workitem.updated",
        basicAuthUsername="ado",
        basicAuthPassword="s3cret",
        httpHeaders="X-Receiver-Token:abc",
    )
    subscribe(client, sb, receiver, "workitem.created", messagesToSend="all")
    item = create(client, sb, {"System.Title": "t"}).json()
    sb.update_fields(
        item["id"],
        {"System.State": "Active", "System.AssignedTo": "Dana Developer <dana@contoso.com>"},
        by="Dana Developer <dana@contoso.com>",
    )
    assert sb.wait_deliveries_idle(5)
    calls = receiver.calls
    assert len(calls) == 2
    created = next(c["body"] for c in calls if c["body"]["eventType"] == "workitem.created")
    updated_call = next(c for c in calls if c["body"]["eventType"] == "workitem.updated")
    assert updated_call["auth"].username == "ado"
    assert updated_call["auth"].password == "s3cret"
    assert updated_call["headers"]["X-Receiver-Token"] == "abc"
    assert updated_call["headers"]["Content-Type"] == "application/json; charset=utf-8"

    assert set(created) == ENVELOPE_KEYS
    assert created["message"]["text"].startswith(f"Bug #{item['id']} (t) created by secbot")
    assert set(created["resource"]) == CREATED_RESOURCE_KEYS - {"relations"}
    assert created["resource"]["fields"]["System.CreatedBy"] == "secbot <secbot@contoso.com>"

    updated = updated_call["body"]
    assert set(updated) == ENVELOPE_KEYS
    assert updated["subscriptionId"] == sub["id"]
    assert updated["message"] is None and updated["detailedMessage"] is None
    assert updated["resourceVersion"] == "1.0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", updated["createdDate"])
    assert set(updated["resourceContainers"]) == {"collection", "account", "project"}
    assert updated["resourceContainers"]["project"]["id"] == APPSEC_ID
    resource = updated["resource"]
    assert set(resource) == UPDATED_RESOURCE_KEYS
    assert resource["id"] == 2  # update number, not the work item id
    assert resource["workItemId"] == item["id"] and resource["rev"] == 2
    assert resource["revisedDate"] == "9999-01-01T00:00:00Z"
    assert set(resource["revisedBy"]) == REVISED_BY_KEYS
    assert resource["revisedBy"]["name"] == "Dana Developer <dana@contoso.com>"
    deltas = resource["fields"]
    assert deltas["System.State"] == {"oldValue": "New", "newValue": "Active"}
    assert deltas["System.AssignedTo"] == {"newValue": "Dana Developer <dana@contoso.com>"}
    assert {
        "System.Rev",
        "System.AuthorizedDate",
        "System.RevisedDate",
        "System.ChangedDate",
        "System.Watermark",
    } <= set(deltas)
    assert deltas["System.RevisedDate"]["newValue"] == "9999-01-01T00:00:00Z"
    revision = resource["revision"]
    assert revision["id"] == item["id"] and revision["rev"] == 2
    assert revision["fields"]["System.State"] == "Active"
    assert revision["fields"]["System.ChangedBy"] == "Dana Developer <dana@contoso.com>"
    assert set(revision["_links"]) == {"self", "workItemRevisions", "parent"}
    assert resource["url"].endswith(f"/workItems/{item['id']}/updates/2")


def test_deleted_and_restored_payloads(sb: Sandbox, client: requests.Session, receiver: Receiver):
    subscribe(client, sb, receiver, "workitem.deleted")
    subscribe(client, sb, receiver, "workitem.restored")
    item_id = create(client, sb, {"System.Title": "t"}).json()["id"]
    sb.delete_item(item_id)
    sb.restore_item(item_id)
    assert sb.wait_deliveries_idle(5)
    deleted, restored = (c["body"] for c in receiver.calls)
    assert deleted["eventType"] == "workitem.deleted"
    assert deleted["resource"]["url"].endswith(f"/_apis/wit/recyclebin/{item_id}")
    assert set(deleted["resource"]["_links"]) == {"self", "workItemType", "fields"}
    assert restored["eventType"] == "workitem.restored"
    assert restored["resource"]["url"].endswith(f"/_apis/wit/workItems/{item_id}")
    assert set(restored["resource"]["_links"]) == {
        "self",
        "workItemUpdates",
        "workItemRevisions",
        "workItemType",
        "fields",
        "html",
        "workItemHistory",
    }


def test_filters_and_commented_payload(sb: Sandbox, client: requests.Session, receiver: Receiver):
    only_state = subscribe(client, sb, receiver, "workitem.updated")
    body = client.get(f"{sb.org_url}/_apis/hooks/subscriptions/{only_state['id']}", params=V).json()
    body["publisherInputs"].update({"changedFields": "System.State", "workItemType": "Bug"})
    client.put(f"{sb.org_url}/_apis/hooks/subscriptions/{only_state['id']}", params=V, json=body)
    subscribe(client, sb, receiver, "workitem.commented")
    bug = create(client, sb, {"System.Title": "b"}).json()["id"]
    task = create(client, sb, {"System.Title": "t"}, wit="Task").json()["id"]
    sb.update_fields(bug, {"System.Title": "renamed"})  # not a State change: filtered out
    sb.set_state(task, "Active")  # not a Bug: filtered out
    sb.set_state(bug, "Active")
    posted = client.post(
        f"{sb.org_url}/AppSec/_apis/wit/workItems/{bug}/comments",
        params=PREVIEW,
        json={"text": "<div>Verified</div>"},
    ).json()
    assert sb.wait_deliveries_idle(5)
    kinds = [
        (b["eventType"], b["resource"].get("workItemId", b["resource"]["id"]))
        for b in receiver.bodies()
    ]
    assert kinds == [("workitem.updated", bug), ("workitem.commented", bug)]
    commented = receiver.bodies()[1]["resource"]
    assert set(commented) == {"id", "rev", "fields", "commentVersionRef", "_links", "url"}
    assert commented["fields"]["System.History"] == "<div>Verified</div>"
    assert commented["fields"]["System.CommentCount"] == 1
    assert commented["commentVersionRef"]["commentId"] == posted["id"]


def test_500_puts_the_subscription_on_probation_and_later_events_are_dropped(
    sb: Sandbox, client: requests.Session, receiver: Receiver
):
    sub = subscribe(client, sb, receiver, "workitem.updated")
    item_id = create(client, sb, {"System.Title": "t"}).json()["id"]
    receiver.replies = [500]
    sb.set_state(item_id, "Active")
    assert sb.wait_deliveries_idle(5)
    status = client.get(f"{sb.org_url}/_apis/hooks/subscriptions/{sub['id']}", params=V)
    assert status.json()["status"] == "onProbation"
    sb.set_state(item_id, "Resolved")
    assert sb.wait_deliveries_idle(5)
    assert len(receiver.calls) == 1
    assert [d["status"] for d in sb.deliveries()] == [500, "dropped"]


def test_transient_replies_are_retried_then_exhaustion_means_probation(
    sb: Sandbox, client: requests.Session, receiver: Receiver
):
    sub = subscribe(client, sb, receiver, "workitem.updated")
    item_id = create(client, sb, {"System.Title": "t"}).json()["id"]
    receiver.replies = [503, 502]
    sb.set_state(item_id, "Active")
    assert sb.wait_deliveries_idle(5)
    assert [d["status"] for d in sb.deliveries()] == [503, 502, 200]
    event_ids = {c["body"]["id"] for c in receiver.calls}
    assert len(event_ids) == 1  # the same notification each time
    receiver.replies = [503, 503, 503]
    sb.set_state(item_id, "Resolved")
    assert sb.wait_deliveries_idle(5)
    assert sb.subscriptions()[0]["status"] == "onProbation"
    assert sub["id"] == sb.subscriptions()[0]["id"]


def test_410_disables_the_subscription_at_once(
    sb: Sandbox, client: requests.Session, receiver: Receiver
):
    subscribe(client, sb, receiver, "workitem.created")
    receiver.replies = [410]
    create(client, sb, {"System.Title": "t"})
    assert sb.wait_deliveries_idle(5)
    assert sb.subscriptions()[0]["status"] == "disabledBySystem"
    create(client, sb, {"System.Title": "u"})
    assert sb.wait_deliveries_idle(5)
    assert len(receiver.calls) == 1


def test_hold_release_reverse_and_duplicate(
    sb: Sandbox, client: requests.Session, receiver: Receiver
):
    subscribe(client, sb, receiver, "workitem.updated")
    item_id = create(client, sb, {"System.Title": "t"}).json()["id"]
    sb.hold_deliveries()
    for state in ("Active", "Resolved", "Closed"):
        sb.set_state(item_id, state)
    assert receiver.calls == []
    assert sb.release_deliveries("reverse") == 3
    assert sb.wait_deliveries_idle(5)
    assert [b["resource"]["rev"] for b in receiver.bodies()] == [4, 3, 2]

    receiver.reset()
    sb.duplicate_next_delivery()
    sb.set_state(item_id, "Active")
    assert sb.wait_deliveries_idle(5)
    first, second = receiver.bodies()
    assert first["id"] == second["id"] and first["notificationId"] == second["notificationId"]


# ---- faults --------------------------------------------------------------------------------


def test_lost_response_creates_the_item_but_the_client_never_learns(
    sb: Sandbox, client: requests.Session
):
    sb.add_fault(kind="lost_response", method="POST", path_contains="/workitems/")
    lost = create(client, sb, {"System.Title": "t"})
    assert lost.status_code == 500
    assert len(sb.work_items()) == 1
    sb.add_fault(kind="lost_response", method="POST", path_contains="/workitems/", then="close")
    with pytest.raises(requests.ConnectionError):
        create(client, sb, {"System.Title": "u"})
    assert len(sb.work_items()) == 2
    assert [r["status"] for r in sb.requests_log()][-2:] == [500, "closed"]


def test_rate_limit_faults(sb: Sandbox, client: requests.Session):
    sb.add_fault(kind="status", status=429, retry_after="2", path_contains="/_apis/projects")
    blocked = client.get(f"{sb.org_url}/_apis/projects", params=V)
    assert blocked.status_code == 429
    assert blocked.headers["Retry-After"] == "2"
    assert blocked.headers["X-RateLimit-Remaining"] == "0"
    assert blocked.json()["message"].startswith("TF400733")
    assert client.get(f"{sb.org_url}/_apis/projects", params=V).status_code == 200
    sb.add_fault(kind="retry_after_on_200", retry_after="1", times=1)
    slowed = client.get(f"{sb.org_url}/_apis/projects", params=V)
    assert slowed.status_code == 200 and slowed.headers["Retry-After"] == "1"
    sb.add_fault(kind="status", status=503, times=5)
    sb.clear_faults()
    assert client.get(f"{sb.org_url}/_apis/projects", params=V).status_code == 200


# ---- control surface and CLI ---------------------------------------------------------------


def test_control_routes_over_http(sb: Sandbox, client: requests.Session):
    with requests.Session() as ctl:
        made = ctl.post(
            f"{sb.url}/_sandbox/workitems",
            json={"project": "Custom", "type": "Security Finding", "fields": {"System.Title": "f"}},
        ).json()
        assert made["fields"]["System.State"] == "Triage"
        moved = ctl.post(
            f"{sb.url}/_sandbox/workitems/{made['id']}/state",
            json={"state": "Accepted Risk", "by": "Pat Reviewer <pat@contoso.com>"},
        )
        assert moved.json()["fields"]["System.ChangedBy"] == "Pat Reviewer <pat@contoso.com>"
        assert ctl.post(f"{sb.url}/_sandbox/faults", json={"kind": "bogus"}).status_code == 400
        assert ctl.post(f"{sb.url}/_sandbox/latency", json={"seconds": 0.01}).ok
        client.get(f"{sb.org_url}/_apis/projects", params=V)
        assert ctl.post(f"{sb.url}/_sandbox/latency", json={"seconds": 0}).ok
        log = ctl.get(f"{sb.url}/_sandbox/requests").json()
        assert [entry["path"] for entry in log] == ["/contoso/_apis/projects"]
        assert log[0]["query"] == V
        everything = ctl.get(f"{sb.url}/_sandbox/workitems").json()
        assert everything[0]["rev"] == 2 and everything[0]["deleted"] is False
        assert ctl.post(f"{sb.url}/_sandbox/reset").ok
        assert ctl.get(f"{sb.url}/_sandbox/workitems").json() == []


@pytest.mark.e2e
def test_python_m_prints_its_facts_and_serves_until_sigterm():
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "webhook.sandbox", "--port", "0"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        facts = json.loads(proc.stdout.readline())
        assert facts["org_url"] == f"{facts['url']}/contoso"
        with requests.Session() as session:
            resp = session.get(
                f"{facts['org_url']}/_apis/projects", params=V, auth=("", facts["pat"])
            )
            assert resp.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def test_many_concurrent_requests(sb: Sandbox):
    errors: list[Exception] = []

    def worker() -> None:
        try:
            with requests.Session() as session:
                session.auth = ("", sb.pat)
                for _ in range(5):
                    resp = create(session, sb, {"System.Title": "c"})
                    assert resp.status_code == 200
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not errors
    assert len({i["id"] for i in sb.work_items()}) == 40
    assert time.monotonic() - started < 20


def test_a_person_changes_a_work_item_type(
    sb: Sandbox, client: requests.Session, receiver: Receiver
):
    subscribe(client, sb, receiver, "workitem.updated")
    item = create(client, sb, {"System.Title": "t"}).json()
    with requests.Session() as ctl:
        changed = ctl.post(
            f"{sb.url}/_sandbox/workitems/{item['id']}/type",
            json={"type": "Task", "state": "Removed", "by": "Dana Developer <dana@contoso.com>"},
        )
        assert changed.status_code == 200, changed.text
        refused = ctl.post(
            f"{sb.url}/_sandbox/workitems/{item['id']}/type", json={"type": "Bug", "state": "Gone"}
        )
        assert refused.status_code == 400 and "Gone" in refused.json()["message"]
        unknown = ctl.post(f"{sb.url}/_sandbox/workitems/{item['id']}/type", json={"type": "Nope"})
        assert unknown.status_code == 404 and "VS402323" in unknown.json()["message"]
    assert sb.wait_deliveries_idle(5)
    read = client.get(f"{sb.org_url}/AppSec/_apis/wit/workitems/{item['id']}", params=V).json()
    assert read["rev"] == 2
    assert read["fields"]["System.WorkItemType"] == "Task"
    assert read["fields"]["System.State"] == "Removed"
    assert "Microsoft.VSTS.Common.Severity" not in read["fields"]  # Tasks have no Severity
    (delivery,) = receiver.bodies()
    resource = delivery["resource"]
    assert resource["rev"] == 2
    assert resource["fields"]["System.WorkItemType"] == {"oldValue": "Bug", "newValue": "Task"}
    assert resource["fields"]["System.State"] == {"oldValue": "New", "newValue": "Removed"}
    assert resource["revision"]["fields"]["System.WorkItemType"] == "Task"
    assert resource["revision"]["fields"]["System.State"] == "Removed"
