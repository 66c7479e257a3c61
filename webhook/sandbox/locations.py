"""Location service: what Microsoft's own clients ask before their first real call.

The official clients (`azure-devops` for Python, `azure-devops-node-api`, the .NET client) do not
hard-code routes (AZURE_DEVOPS.md §13). Before the first call to an area they send
`OPTIONS {organization URL}/_apis` (or `OPTIONS {org}/_apis/{area}`) and read a `{count, value}`
collection of *ApiResourceLocation* objects; the request URL is then built from the
`routeTemplate` of the location whose `id` the client has compiled in, and the api-version is
negotiated down to the location's `maxVersion` / `resourceVersion`. The Python `Connection` first
asks the location service for the resource areas (`GET {org}/_apis/ResourceAreas`) to find the
host of an area (`locationUrl`).

Served here:

- `OPTIONS {org}/_apis` and `OPTIONS {org}/_apis/{area}`: the locations of every resource the
  stand-in serves (`LOCATIONS`);
- `GET {org}/_apis/ResourceAreas` and `GET {org}/_apis/ResourceAreas/{areaId}`: the resource
  areas `core` and `wit`, both hosted on the organization URL;
- `GET {org}/_apis/ConnectionData`: the authenticated identity and the organization's ids.

Sources of the location facts: the location ids, resource versions and route values are those of
the generated `azure-devops` 7.1 clients (`location_id=`, `version=` and `route_values` of each
`_send` call); the route templates, area and resource names are those of a recorded
`OPTIONS _apis` answer (TFS 2015 era, e.g. `{project}/_apis/{area}/{resource}/${type}`), with the
`{project}` segment Azure DevOps Services added since, and, for resources younger than that
record (comments, states, work item batch, recycle bin), templates built the same way that
produce the documented paths. The resource areas' ids are the clients'
`resource_area_identifier`s. `maxVersion` is 7.1 because the stand-in serves 7.1 only
(`auth.check_api_version`); `releasedVersion` is "0.0" for resources still in preview at 7.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response

from .auth import api_version, caller, get_state, require_auth
from .state import ACCOUNT_ID, COLLECTION_ID
from .wire import SandboxError, json_response

bp = Blueprint("locations", __name__)
bp.before_request(require_auth)

MAX_VERSION = "7.1"
"""Highest api-version the stand-in serves (AZURE_DEVOPS.md: REST API 7.1)."""


@dataclass(frozen=True)
class Location:
    """One ApiResourceLocation: a resource's id, area, name, route template and versions.

    `released_version` is the highest released (non-preview) api-version of the resource, "0.0"
    when it has only ever been in preview.
    """

    id: str
    area: str
    resource_name: str
    route_template: str
    resource_version: int
    released_version: str = MAX_VERSION
    min_version: str = "1.0"
    max_version: str = MAX_VERSION

    def render(self) -> dict[str, Any]:
        """Return the location as the `OPTIONS _apis` collection carries it."""
        return {
            "id": self.id,
            "area": self.area,
            "resourceName": self.resource_name,
            "routeTemplate": self.route_template,
            "resourceVersion": self.resource_version,
            "minVersion": self.min_version,
            "maxVersion": self.max_version,
            "releasedVersion": self.released_version,
        }


LOCATIONS: tuple[Location, ...] = (
    # Location service itself.
    Location(
        "e81700f7-3be2-46de-8624-2eb35882fcaa",
        "Location",
        "ResourceAreas",
        "_apis/{resource}/{areaId}",
        1,
        released_version="0.0",
        min_version="3.2",
    ),
    Location(
        "00d9565f-ed9c-4a06-9a50-00e7896ccab4",
        "Location",
        "ConnectionData",
        "_apis/{resource}",
        1,
        released_version="0.0",
    ),
    # core
    Location(
        "603fe2ac-9723-48b9-88ad-09305aa6c6e1",
        "core",
        "projects",
        "_apis/{resource}/{*projectId}",
        4,
    ),
    # wit
    Location(
        "7c8d7a76-4a09-43e8-b5df-bd792f4ac6aa",
        "wit",
        "workItemTypes",
        "{project}/_apis/{area}/{resource}/{type}",
        2,
    ),
    Location(
        "7c9d7a76-4a09-43e8-b5df-bd792f4ac6aa",
        "wit",
        "workItemTypeStates",
        "{project}/_apis/{area}/workitemtypes/{type}/states",
        1,
    ),
    Location(
        "bd293ce5-3d25-4192-8e67-e8092e879efb",
        "wit",
        "workItemTypesField",
        "{project}/_apis/{area}/workitemtypes/{type}/fields/{field}",
        3,
    ),
    Location(
        "62d3d110-0047-428c-ad3c-4fe872c91c74",
        "wit",
        "workItems",
        "{project}/_apis/{area}/{resource}/${type}",
        3,
    ),
    Location(
        "72c7ddf8-2cdc-4f60-90cd-ab71c14a399b",
        "wit",
        "workItems",
        "{project}/_apis/{area}/{resource}/{id}",
        3,
    ),
    Location(
        "908509b6-4248-4475-a1cd-829139ba419f",
        "wit",
        "workItemsBatch",
        "{project}/_apis/{area}/{resource}",
        1,
    ),
    Location(
        "6570bf97-d02c-4a91-8d93-3abe9895b1a9",
        "wit",
        "updates",
        "{project}/_apis/{area}/workItems/{id}/{resource}/{updateNumber}",
        3,
    ),
    Location(
        "a00c85a5-80fa-4565-99c3-bcd2181434bb",
        "wit",
        "revisions",
        "{project}/_apis/{area}/workItems/{id}/{resource}/{revisionNumber}",
        3,
    ),
    Location(
        "608aac0a-32e1-4493-a863-b9cf4566d257",
        "wit",
        "comments",
        "{project}/_apis/{area}/workItems/{workItemId}/{resource}/{commentId}",
        4,
        released_version="0.0",
    ),
    Location(
        "1a9c53f7-f243-4447-b110-35ef023636e4",
        "wit",
        "wiql",
        "{project}/{team}/_apis/{area}/{resource}",
        2,
    ),
    Location(
        "b70d8d39-926c-465e-b927-b1bf0e5ca0e0",
        "wit",
        "recyclebin",
        "{project}/_apis/{area}/{resource}/{id}",
        2,
    ),
    # hooks
    Location(
        "fc50d02a-849f-41fb-8af1-0a5216103269",
        "hooks",
        "subscriptions",
        "_apis/{area}/{resource}/{subscriptionId}",
        1,
    ),
    Location(
        "c7c3c1cf-9e05-4c0d-a425-a0f922c2c6ed",
        "hooks",
        "subscriptionsQuery",
        "_apis/{area}/{resource}",
        1,
    ),
)
"""Every resource the stand-in serves, as `OPTIONS {org}/_apis` lists it."""

RESOURCE_AREAS: tuple[tuple[str, str], ...] = (
    ("79134c72-4a58-4b42-976c-04e7115f32bf", "core"),
    ("5264459e-e5e0-4bd8-b118-0985e68a4ec5", "wit"),
)
"""(id, name) of the resource areas hosted on the organization URL; the ids are the
`resource_area_identifier` of the `azure-devops` CoreClient and WorkItemTrackingClient."""


def _render_area(org_url: str, area_id: str, name: str) -> dict[str, str]:
    return {"id": area_id, "name": name, "locationUrl": f"{org_url}/"}


@bp.route("/contoso/_apis", methods=["OPTIONS"])
def options_all() -> Response:
    """List every ApiResourceLocation (`{count, value}`); no api-version needed."""
    value = [loc.render() for loc in LOCATIONS]
    return json_response({"count": len(value), "value": value})


@bp.route("/contoso/_apis/<area>", methods=["OPTIONS"])
def options_area(area: str) -> Response:
    """List the locations of one area (case-insensitive); an unknown area gives an empty list."""
    value = [loc.render() for loc in LOCATIONS if loc.area.lower() == area.lower()]
    return json_response({"count": len(value), "value": value})


@bp.get("/contoso/_apis/resourceareas")
@api_version(preview=1)
def resource_areas() -> Response:
    """List the resource areas this organization hosts: `{count, value: [ResourceAreaInfo]}`."""
    org_url = get_state().org_url
    value = [_render_area(org_url, area_id, name) for area_id, name in RESOURCE_AREAS]
    return json_response({"count": len(value), "value": value})


@bp.get("/contoso/_apis/resourceareas/<area_id>")
@api_version(preview=1)
def resource_area(area_id: str) -> Response:
    """Return one ResourceAreaInfo by id; 404 for an area the stand-in does not host."""
    org_url = get_state().org_url
    for known_id, name in RESOURCE_AREAS:
        if known_id == area_id.strip().lower():
            return json_response(_render_area(org_url, known_id, name))
    raise SandboxError(
        404,
        f"The resource area '{area_id}' was not found on this host.",
        "ResourceAreaNotFoundException",
    )


@bp.get("/contoso/_apis/connectiondata")
@api_version(preview=1)
def connection_data() -> Response:
    """Return ConnectionData: the caller as `authenticatedUser`/`authorizedUser`, the
    organization (instance) id and the hosted deployment's id."""
    me = caller()
    identity = {
        "id": me.id,
        "descriptor": f"Microsoft.IdentityModel.Claims.ClaimsIdentity;{me.unique_name}",
        "subjectDescriptor": me.descriptor,
        "providerDisplayName": me.display_name,
        "customDisplayName": me.display_name,
        "isActive": True,
        "isContainer": False,
        "members": [],
        "memberOf": [],
        "properties": {"Account": {"$type": "System.String", "$value": me.unique_name}},
        "resourceVersion": 2,
        "metaTypeId": 0,
    }
    body: dict[str, Any] = {
        "authenticatedUser": identity,
        "authorizedUser": identity,
        "instanceId": COLLECTION_ID,
        "deploymentId": ACCOUNT_ID,
        "deploymentType": "hosted",
        "locationServiceData": {
            "serviceOwner": "00025394-6065-48ca-87d9-7f5672854ef7",
            "defaultAccessMappingMoniker": "PublicAccessMapping",
            "lastChangeId": 1,
            "lastChangeId64": 1,
        },
    }
    return json_response(body)
