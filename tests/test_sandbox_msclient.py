"""The Azure DevOps stand-in driven by Microsoft's own Python client (`azure-devops` + msrest).

Microsoft's client hard-codes no route: it asks the location service first (`OPTIONS {org}/_apis`,
`GET {org}/_apis/ResourceAreas`, AZURE_DEVOPS.md §13) and builds every URL from the route
templates it gets back. A stand-in this client accepts, for every operation the product uses, is
one built from the wire format rather than from our own client. The last test checks that our
client (`webhook.ado.AdoClient`) asks for the very URLs Microsoft's client builds.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

# azure-devops caches OPTIONS answers on disk for 12 hours, keyed by URL, in a directory chosen
# when it is first imported (default ~/.azure-devops). Keep it out of the home directory; the
# `ms` fixture below also turns the file cache off so a reused port never reads stale answers.
os.environ.setdefault("AZURE_DEVOPS_CACHE_DIR", tempfile.gettempdir())

from azure.devops import _file_cache
from azure.devops.client import Client
from azure.devops.connection import Connection
from azure.devops.exceptions import AzureDevOpsServiceError
from azure.devops.v7_1.core.core_client import CoreClient
from azure.devops.v7_1.location.location_client import LocationClient
from azure.devops.v7_1.service_hooks.models import Subscription
from azure.devops.v7_1.service_hooks.service_hooks_client import ServiceHooksClient
from azure.devops.v7_1.work_item_tracking.models import (
    CommentCreate,
    JsonPatchOperation,
    TeamContext,
    Wiql,
    WorkItemBatchGetRequest,
    WorkItemDeleteUpdate,
)
from azure.devops.v7_1.work_item_tracking.work_item_tracking_client import (
    WorkItemTrackingClient,
)
from msrest.authentication import BasicAuthentication

from webhook.ado import AdoClient, PatAuth
from webhook.domain.orgurl import parse_organization_url
from webhook.sandbox import Sandbox

APPSEC_ID = "3f0c6a4e-5b1d-4c2e-9a77-0d2b8e41c9a1"
LOCATION_KEYS = {
    "id",
    "area",
    "resourceName",
    "routeTemplate",
    "resourceVersion",
    "minVersion",
    "maxVersion",
    "releasedVersion",
}
# location_id of every client method the product's operations map to (azure-devops 7.1 source).
PRODUCT_LOCATIONS = {
    "603fe2ac-9723-48b9-88ad-09305aa6c6e1",  # core projects
    "7c8d7a76-4a09-43e8-b5df-bd792f4ac6aa",  # work item types
    "7c9d7a76-4a09-43e8-b5df-bd792f4ac6aa",  # work item type states
    "bd293ce5-3d25-4192-8e67-e8092e879efb",  # work item type fields
    "62d3d110-0047-428c-ad3c-4fe872c91c74",  # create work item
    "72c7ddf8-2cdc-4f60-90cd-ab71c14a399b",  # get/update/delete work item
    "908509b6-4248-4475-a1cd-829139ba419f",  # work items batch
    "608aac0a-32e1-4493-a863-b9cf4566d257",  # comments
    "1a9c53f7-f243-4447-b110-35ef023636e4",  # wiql
    "b70d8d39-926c-465e-b927-b1bf0e5ca0e0",  # recycle bin
    "fc50d02a-849f-41fb-8af1-0a5216103269",  # service hook subscriptions
    "e81700f7-3be2-46de-8624-2eb35882fcaa",  # resource areas
}


def op(path: str, value: Any, kind: str = "add") -> JsonPatchOperation:
    """One JSON Patch operation as Microsoft's model holds it."""
    return JsonPatchOperation(op=kind, path=path, value=value)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        yield sb


@pytest.fixture
def sb(sandbox: Sandbox) -> Iterator[Sandbox]:
    sandbox.reset()
    yield sandbox
    sandbox.reset()


@pytest.fixture
def ms(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Connection:
    """A Microsoft `Connection` to the stand-in, authenticated with the PAT, no disk cache."""
    for cache in (_file_cache.OPTIONS_CACHE, _file_cache.RESOURCE_CACHE):
        monkeypatch.setattr(cache, "file_name", "")
        monkeypatch.setattr(cache, "data", {})
        monkeypatch.setattr(cache, "initial_load_occurred", True)
    return Connection(base_url=sb.org_url, creds=BasicAuthentication("", sb.pat))


@pytest.fixture
def core(ms: Connection) -> CoreClient:
    client: CoreClient = ms.clients_v7_1.get_core_client()
    return client


@pytest.fixture
def wit(ms: Connection) -> WorkItemTrackingClient:
    client: WorkItemTrackingClient = ms.clients_v7_1.get_work_item_tracking_client()
    return client


@pytest.fixture
def hooks(ms: Connection) -> ServiceHooksClient:
    client: ServiceHooksClient = ms.clients_v7_1.get_service_hooks_client()
    return client


def new_bug(wit: WorkItemTrackingClient, title: str, tags: str = "") -> Any:
    doc = [op("/fields/System.Title", title)]
    if tags:
        doc.append(op("/fields/System.Tags", tags))
    return wit.create_work_item(doc, "AppSec", "Bug")


# ---- discovery ---------------------------------------------------------------------------


def test_options_lists_the_locations_of_every_product_resource(sb: Sandbox) -> None:
    session = requests.Session()
    session.auth = ("", sb.pat)
    resp = session.options(f"{sb.org_url}/_apis", headers={"Accept": "application/json"})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert body["count"] == len(body["value"])
    assert all(set(loc) == LOCATION_KEYS for loc in body["value"])
    ids = [loc["id"] for loc in body["value"]]
    assert len(ids) == len(set(ids))
    assert set(ids) >= PRODUCT_LOCATIONS
    workitems = next(loc for loc in body["value"] if loc["id"].startswith("72c7ddf8"))
    assert workitems["routeTemplate"] == "{project}/_apis/{area}/{resource}/{id}"
    assert (workitems["area"], workitems["resourceName"]) == ("wit", "workItems")

    wit_only = session.options(f"{sb.org_url}/_apis/WIT").json()
    assert wit_only["count"] > 0
    assert {loc["area"] for loc in wit_only["value"]} == {"wit"}

    refused = requests.options(f"{sb.org_url}/_apis", timeout=10)
    assert refused.status_code == 401
    session.close()


def test_every_advertised_route_template_leads_to_a_served_path(
    sb: Sandbox, wit: WorkItemTrackingClient, hooks: ServiceHooksClient
) -> None:
    item = new_bug(wit, "Routed")
    binned = new_bug(wit, "Binned")
    wit.delete_work_item(binned.id, "AppSec")
    comment = wit.add_comment(CommentCreate(text="c"), "AppSec", item.id)
    sub = hooks.create_subscription(
        Subscription(
            publisher_id="tfs",
            event_type="workitem.created",
            consumer_id="webHooks",
            consumer_action_id="httpRequest",
            publisher_inputs={"projectId": APPSEC_ID},
            consumer_inputs={"url": "http://127.0.0.1:9/hooks/ado"},
        )
    )
    values = {
        "project": "AppSec",
        "projectId": "AppSec",
        "type": "Bug",
        "field": "System.Title",
        "id": str(item.id),
        "workItemId": str(item.id),
        "commentId": str(comment.id),
        "updateNumber": "1",
        "revisionNumber": "1",
        "subscriptionId": sub.id,
        "areaId": "5264459e-e5e0-4bd8-b118-0985e68a4ec5",
    }
    session = requests.Session()
    session.auth = ("", sb.pat)
    locations = session.options(f"{sb.org_url}/_apis").json()["value"]
    for loc in locations:
        # Exactly what Microsoft's client does with a template (azure/devops/client.py).
        route = dict(values, area=loc["area"], resource=loc["resourceName"])
        if loc["resourceName"] == "recyclebin":
            route["id"] = str(binned.id)
        template = Client._remove_optional_route_parameters(loc["routeTemplate"], route)
        path = template.format(**route)
        version = f"7.1-preview.{loc['resourceVersion']}"
        resp = session.get(f"{sb.org_url}{path}", params={"api-version": version})
        # 405 (a POST-only resource) still proves the route exists; 404 would not.
        assert resp.status_code in (200, 405), (loc["resourceName"], path, resp.text[:200])
    session.close()


def test_resource_areas_put_core_and_wit_on_the_organization(sb: Sandbox) -> None:
    session = requests.Session()
    session.auth = ("", sb.pat)
    v = {"api-version": "7.1-preview.1"}
    areas = session.get(f"{sb.org_url}/_apis/ResourceAreas", params=v).json()
    by_name = {a["name"]: a for a in areas["value"]}
    assert by_name["core"]["id"] == "79134c72-4a58-4b42-976c-04e7115f32bf"
    assert by_name["wit"]["locationUrl"] == f"{sb.org_url}/"
    one = session.get(f"{sb.org_url}/_apis/resourceAreas/{by_name['wit']['id']}", params=v)
    assert one.json()["name"] == "wit"
    assert session.get(f"{sb.org_url}/_apis/ResourceAreas/{APPSEC_ID}", params=v).status_code == 404
    session.close()


def test_microsoft_clients_find_every_area_on_the_organization(
    sb: Sandbox, core: CoreClient, wit: WorkItemTrackingClient, hooks: ServiceHooksClient
) -> None:
    for client in (core, wit, hooks):
        assert client.normalized_url == sb.org_url.lower()
    location = LocationClient(sb.org_url, BasicAuthentication("", sb.pat))
    data = location.get_connection_data()
    assert data.authenticated_user.provider_display_name == "secbot"
    assert data.instance_id
    assert location.get_resource_area("5264459e-e5e0-4bd8-b118-0985e68a4ec5").name == "wit"


# ---- projects, types, states, fields -----------------------------------------------------


def test_projects_types_states_and_fields(core: CoreClient, wit: WorkItemTrackingClient) -> None:
    projects = {p.name: p.id for p in core.get_projects()}
    assert set(projects) == {"AppSec", "Custom", "Platform", "Strict"}
    assert projects["AppSec"] == APPSEC_ID
    assert core.get_project("AppSec").id == APPSEC_ID
    assert [p.name for p in core.get_projects(top=2, skip=2)] == ["Platform", "Strict"]

    types = {t.name for t in wit.get_work_item_types("AppSec")}
    assert {"Bug", "User Story", "Task"} <= types
    assert "Security Finding" in {t.name for t in wit.get_work_item_types("Custom")}

    states = [(s.name, s.category) for s in wit.get_work_item_type_states("AppSec", "Bug")]
    assert states == [
        ("New", "Proposed"),
        ("Active", "InProgress"),
        ("Resolved", "Resolved"),
        ("Closed", "Completed"),
    ]
    bug = wit.get_work_item_type("AppSec", "Bug")
    assert [s.name for s in bug.states] == ["New", "Active", "Resolved", "Closed"]
    # A type name with a space travels percent-encoded in the path.
    assert wit.get_work_item_type_states("Custom", "Security Finding")

    fields = {
        f.reference_name: f
        for f in wit.get_work_item_type_fields_with_references(
            "AppSec", "Bug", expand="allowedValues"
        )
    }
    assert fields["System.Title"].always_required is True
    assert fields["Microsoft.VSTS.Common.Severity"].allowed_values == [
        "1 - Critical",
        "2 - High",
        "3 - Medium",
        "4 - Low",
    ]
    one = wit.get_work_item_type_field_with_references("AppSec", "Bug", "System.Tags")
    assert one.name == "Tags"


# ---- create and update -------------------------------------------------------------------


def test_create_with_json_patch_then_update_guarded_by_rev(wit: WorkItemTrackingClient) -> None:
    created = wit.create_work_item(
        [
            op("/fields/System.Title", "SQL injection in /login"),
            op("/fields/System.Tags", "sec-finding:R-1; scanner"),
            op("/fields/System.Description", "<p>User input reaches the query.</p>"),
            op("/fields/Microsoft.VSTS.Common.Severity", "2 - High"),
            op("/relations/-", {"rel": "Hyperlink", "url": "https://scanner.example/r/1"}),
        ],
        "AppSec",
        "Bug",
    )
    assert created.id > 0
    assert created.rev == 1
    assert created.fields["System.Title"] == "SQL injection in /login"
    assert sorted(created.fields["System.Tags"].split("; ")) == ["scanner", "sec-finding:R-1"]
    assert created.fields["System.Description"] == "<p>User input reaches the query.</p>"
    assert created.fields["System.State"] == "New"
    assert [r.url for r in created.relations] == ["https://scanner.example/r/1"]

    resolve = [op("/rev", 1, "test"), op("/fields/System.State", "Resolved")]
    updated = wit.update_work_item(resolve, created.id, "AppSec")
    assert (updated.rev, updated.fields["System.State"]) == (2, "Resolved")

    # The same document again: its `test /rev` now fails and nothing changes.
    stale = [op("/rev", 1, "test"), op("/fields/System.State", "Active")]
    with pytest.raises(AzureDevOpsServiceError) as info:
        wit.update_work_item(stale, created.id, "AppSec")
    assert "/rev" in info.value.message
    again = wit.get_work_item(created.id, "AppSec")
    assert (again.rev, again.fields["System.State"]) == (2, "Resolved")

    story = wit.create_work_item([op("/fields/System.Title", "A story")], "AppSec", "User Story")
    assert story.fields["System.WorkItemType"] == "User Story"


def test_create_errors_reach_the_caller_as_service_errors(wit: WorkItemTrackingClient) -> None:
    with pytest.raises(AzureDevOpsServiceError) as missing:
        wit.create_work_item([op("/fields/System.Tags", "x")], "AppSec", "Bug")
    assert missing.value.type_key == "RuleValidationException"
    assert missing.value.message.startswith("TF401320")
    with pytest.raises(AzureDevOpsServiceError) as no_type:
        wit.create_work_item([op("/fields/System.Title", "x")], "AppSec", "Nope")
    assert no_type.value.type_key == "WorkItemTypeNotFoundException"


# ---- comments ----------------------------------------------------------------------------


def test_comments(wit: WorkItemTrackingClient) -> None:
    item = new_bug(wit, "Commented")
    added = wit.add_comment(CommentCreate(text="<p>Scanner saw it again</p>"), "AppSec", item.id)
    assert added.work_item_id == item.id
    assert added.text == "<p>Scanner saw it again</p>"
    assert added.created_by.unique_name == "secbot@contoso.com"
    markdown = wit.add_work_item_comment(
        CommentCreate(text="**fixed**"), "AppSec", item.id, "markdown"
    )
    assert markdown.format == "markdown"

    listed = wit.get_comments("AppSec", item.id, order="asc")
    assert listed.total_count == 2
    assert [c.text for c in listed.comments] == ["<p>Scanner saw it again</p>", "**fixed**"]
    first_page = wit.get_comments("AppSec", item.id, top=1, order="asc")
    assert [c.text for c in first_page.comments] == ["<p>Scanner saw it again</p>"]
    rest = wit.get_comments(
        "AppSec", item.id, top=1, order="asc", continuation_token=first_page.continuation_token
    )
    assert [c.text for c in rest.comments] == ["**fixed**"]


# ---- WIQL and batch read -----------------------------------------------------------------


def test_wiql_and_batch_read(wit: WorkItemTrackingClient) -> None:
    first = new_bug(wit, "First", "sec-finding:A")
    second = new_bug(wit, "Second", "sec-finding:B")
    third = new_bug(wit, "Third", "other")

    query = Wiql(
        query="SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project "
        "AND [System.Tags] CONTAINS 'sec-finding:B'"
    )
    found = wit.query_by_wiql(query, team_context=TeamContext(project="AppSec"))
    assert [w.id for w in found.work_items] == [second.id]
    ordered = Wiql(query="SELECT [System.Id] FROM WorkItems ORDER BY [System.Id] DESC")
    assert [w.id for w in wit.query_by_wiql(ordered, top=1).work_items] == [third.id]

    batch = wit.get_work_items_batch(
        WorkItemBatchGetRequest(ids=[first.id, second.id], fields=["System.Title"]), "AppSec"
    )
    assert [(w.id, w.fields["System.Title"]) for w in batch] == [
        (first.id, "First"),
        (second.id, "Second"),
    ]
    omitted = wit.get_work_items_batch(
        WorkItemBatchGetRequest(ids=[first.id, 999999], error_policy="omit"), "AppSec"
    )
    assert omitted[0].id == first.id
    assert omitted[1] is None


# ---- recycle bin -------------------------------------------------------------------------


def test_delete_read_from_recycle_bin_and_restore(wit: WorkItemTrackingClient) -> None:
    item = new_bug(wit, "Goes to the bin")
    deleted = wit.delete_work_item(item.id, "AppSec")
    assert (deleted.id, deleted.name, deleted.project, deleted.type) == (
        item.id,
        "Goes to the bin",
        "AppSec",
        "Bug",
    )
    with pytest.raises(AzureDevOpsServiceError) as gone:
        wit.get_work_item(item.id, "AppSec")
    assert gone.value.type_key == "WorkItemNotFoundException"

    in_bin = wit.get_deleted_work_item(item.id, "AppSec")
    assert in_bin.resource.fields["System.Title"] == "Goes to the bin"
    assert item.id in [ref.id for ref in wit.get_deleted_work_item_shallow_references("AppSec")]

    restored = wit.restore_work_item(WorkItemDeleteUpdate(is_deleted=False), item.id, "AppSec")
    assert restored.id == item.id
    assert wit.get_work_item(item.id, "AppSec").fields["System.Title"] == "Goes to the bin"
    assert wit.get_deleted_work_item_shallow_references("AppSec") == []


# ---- service hook subscriptions ----------------------------------------------------------


def test_subscriptions_create_get_list_delete(hooks: ServiceHooksClient) -> None:
    wanted = Subscription(
        publisher_id="tfs",
        event_type="workitem.updated",
        resource_version="1.0",
        consumer_id="webHooks",
        consumer_action_id="httpRequest",
        publisher_inputs={"projectId": APPSEC_ID, "workItemType": "Bug"},
        consumer_inputs={
            "url": "http://127.0.0.1:9/hooks/ado",
            "basicAuthUsername": "ado",
            "basicAuthPassword": "s3cret-hook-password",
        },
    )
    created = hooks.create_subscription(wanted)
    assert created.status == "enabled"
    assert created.publisher_inputs["projectId"] == APPSEC_ID
    assert created.consumer_inputs["basicAuthPassword"] == "********"

    fetched = hooks.get_subscription(created.id)
    assert (fetched.id, fetched.event_type) == (created.id, "workitem.updated")
    assert fetched.consumer_inputs["url"] == "http://127.0.0.1:9/hooks/ado"
    listed = hooks.list_subscriptions(publisher_id="tfs", event_type="workitem.updated")
    assert [s.id for s in listed] == [created.id]
    assert hooks.list_subscriptions(event_type="workitem.created") == []

    hooks.delete_subscription(created.id)
    with pytest.raises(AzureDevOpsServiceError):
        hooks.get_subscription(created.id)
    assert hooks.list_subscriptions() == []


# ---- our client asks for the URLs Microsoft's client builds ------------------------------


def _paths(sb: Sandbox, run: Callable[[], object], *ids: str) -> list[tuple[str, str]]:
    """Run `run` and return the (method, lower-cased path) of the REST calls it made,
    discovery calls left out and each of `ids` replaced by `{id}`."""
    sb.clear_requests_log()
    run()
    out = []
    for entry in sb.requests_log():
        path = entry["path"].lower()
        if entry["method"] == "OPTIONS" or "/_apis/resourceareas" in path:
            continue
        for value in ids:
            path = path.replace(value.lower(), "{id}")
        out.append((entry["method"], path))
    return out


def test_our_client_uses_the_routes_microsofts_client_builds(
    sb: Sandbox,
    core: CoreClient,
    wit: WorkItemTrackingClient,
    hooks: ServiceHooksClient,
) -> None:
    host = sb.url.split("//", 1)[1]
    ours = AdoClient(
        parse_organization_url(sb.org_url, extra_hosts=frozenset({host})), PatAuth(sb.pat)
    )
    core.get_projects()  # discovery happens here, outside the comparisons below
    item = new_bug(wit, "Compared")
    patch = [{"op": "add", "path": "/fields/System.Title", "value": "t"}]
    ms_patch = [op("/fields/System.Title", "t")]
    hook_body = {
        "publisherId": "tfs",
        "eventType": "workitem.created",
        "resourceVersion": "1.0",
        "consumerId": "webHooks",
        "consumerActionId": "httpRequest",
        "publisherInputs": {"projectId": APPSEC_ID},
        "consumerInputs": {"url": "http://127.0.0.1:9/hooks/ado"},
    }
    wiql = "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project"
    pairs: list[tuple[Callable[[], object], Callable[[], object]]] = [
        (ours.list_projects, core.get_projects),
        (lambda: ours.get_project("AppSec"), lambda: core.get_project("AppSec")),
        (
            lambda: ours.list_work_item_types("AppSec"),
            lambda: wit.get_work_item_types("AppSec"),
        ),
        (
            lambda: ours.get_work_item_type_states("Custom", "Security Finding"),
            lambda: wit.get_work_item_type_states("Custom", "Security Finding"),
        ),
        (
            lambda: ours.get_work_item_type_fields("AppSec", "Bug"),
            lambda: wit.get_work_item_type_fields_with_references("AppSec", "Bug"),
        ),
        (
            lambda: ours.create_work_item("AppSec", "User Story", patch),
            lambda: wit.create_work_item(ms_patch, "AppSec", "User Story"),
        ),
        (
            lambda: ours.update_work_item("AppSec", item.id, patch),
            lambda: wit.update_work_item(ms_patch, item.id, "AppSec"),
        ),
        (
            lambda: ours.get_work_item("AppSec", item.id),
            lambda: wit.get_work_item(item.id, "AppSec"),
        ),
        (
            lambda: ours.get_work_items_batch("AppSec", [item.id]),
            lambda: wit.get_work_items_batch(WorkItemBatchGetRequest(ids=[item.id]), "AppSec"),
        ),
        (
            lambda: ours.add_comment("AppSec", item.id, "hi"),
            lambda: wit.add_comment(CommentCreate(text="hi"), "AppSec", item.id),
        ),
        (
            lambda: ours.list_comments("AppSec", item.id),
            lambda: wit.get_comments("AppSec", item.id),
        ),
        (
            lambda: ours.query_wiql("AppSec", wiql),
            lambda: wit.query_by_wiql(Wiql(query=wiql), team_context=TeamContext(project="AppSec")),
        ),
        (
            lambda: ours.create_subscription(hook_body),
            lambda: hooks.create_subscription(Subscription.from_dict(hook_body)),
        ),
        (ours.list_subscriptions, hooks.list_subscriptions),
    ]
    try:
        for ours_call, ms_call in pairs:
            assert _paths(sb, ours_call) == _paths(sb, ms_call)
        first, second = (s.id for s in hooks.list_subscriptions())
        assert _paths(sb, lambda: ours.get_subscription(first)) == _paths(
            sb, lambda: hooks.get_subscription(first)
        )
        assert _paths(sb, lambda: ours.delete_subscription(first), first) == _paths(
            sb, lambda: hooks.delete_subscription(second), second
        )
    finally:
        ours.close()
