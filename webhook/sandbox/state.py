"""The sandbox's in-memory organization: projects, work items, subscriptions, logs.

Everything mutable lives in one `SandboxState` guarded by one re-entrant lock (`state.lock`);
the delivery queue waits on a condition built on that same lock.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .processes import Process, WorkItemTypeDef, build_processes
from .wire import Identity, SandboxError, fmt_date, utcnow

ORG_NAME = "contoso"
COLLECTION_ID = "b7e2f1a0-6c3d-4e8f-a1b2-c3d4e5f60718"
ACCOUNT_ID = "d1c2b3a4-9e8f-4a7b-8c6d-5e4f3a2b1c0d"
FIRST_WORK_ITEM_ID = 101
"""Work item ids start above the update numbers a client would see, so mixing up
`resource.id` (update number) and `resource.workItemId` fails loudly."""

SECBOT = Identity("secbot", "secbot@contoso.com")
DEFAULT_PERSON = Identity("Dana Developer", "dana@contoso.com")
DEFAULT_ADMIN = Identity("Sam Admin", "sam@contoso.com")


@dataclass
class Project:
    """A team project and its classification trees."""

    id: str
    name: str
    description: str
    process: Process
    areas: list[str]
    iterations: list[str]
    last_update: str

    def type(self, name: str) -> WorkItemTypeDef | None:
        """Return one of the project's work item types (case-insensitive)."""
        return self.process.type(name)


@dataclass
class Comment:
    """A discussion comment on a work item."""

    id: int
    work_item_id: int
    text: str
    format: str
    created_by: Identity
    created_date: str
    modified_by: Identity
    modified_date: str
    version: int = 1
    is_deleted: bool = False


@dataclass
class Revision:
    """A stored revision of a work item (what `/revisions/{rev}` returns)."""

    rev: int
    fields: dict[str, Any]
    relations: list[dict[str, Any]]


@dataclass
class Update:
    """A stored update (what `/updates/{id}` returns)."""

    id: int
    rev: int
    by: Identity
    date: str
    fields: dict[str, dict[str, Any]]
    relations: dict[str, list[dict[str, Any]]] | None


@dataclass
class WorkItem:
    """A work item. `fields` holds visible fields; identities are `"Name <mail>"` strings."""

    id: int
    project: Project
    type: WorkItemTypeDef
    fields: dict[str, Any]
    relations: list[dict[str, Any]] = field(default_factory=list)
    rev: int = 1
    watermark: int = 0
    deleted: bool = False
    deleted_date: str | None = None
    deleted_by: Identity | None = None
    revisions: list[Revision] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)


@dataclass
class Event:
    """Something that happened to a work item, to be published to service hooks."""

    event_type: str  # workitem.created | updated | deleted | restored | commented
    item: WorkItem
    by: Identity
    update: Update | None = None
    comment: Comment | None = None


@dataclass
class Subscription:
    """A service hook subscription; `consumer_inputs` holds the real (unmasked) password."""

    id: str
    publisher_id: str
    event_type: str
    resource_version: str | None
    consumer_id: str
    consumer_action_id: str
    publisher_inputs: dict[str, str]
    consumer_inputs: dict[str, str]
    status: str
    created_by: Identity
    created_date: str
    modified_by: Identity
    modified_date: str
    tfs_subscription_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    probation_retries: int = 0
    last_probation_retry_date: str | None = None


@dataclass
class Fault:
    """An injected fault, matched against REST calls (control calls are never matched)."""

    id: int
    kind: str  # status | lost_response | delay | retry_after_on_200
    method: str | None = None
    path_contains: str = ""
    times: int = 1
    status: int = 503
    retry_after: str | None = None
    delay: float = 0.0
    then: str = "500"  # lost_response: "500" or "close"
    ratelimit_headers: bool = True

    def matches(self, method: str, path: str) -> bool:
        """Tell whether this fault applies to a request."""
        if self.times <= 0:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        return self.path_contains.lower() in path.lower()

    def describe(self) -> dict[str, Any]:
        """Return the fault as the control API shows it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "method": self.method,
            "path_contains": self.path_contains,
            "times": self.times,
            "status": self.status,
            "retry_after": self.retry_after,
            "delay": self.delay,
            "then": self.then,
            "ratelimit_headers": self.ratelimit_headers,
        }


@dataclass
class Counters:
    """Monotonic id sources."""

    work_item: int = FIRST_WORK_ITEM_ID
    comment: int = 1000
    link: int = 880000
    watermark: int = 100
    notification: int = 1
    fault: int = 1

    def take(self, name: str) -> int:
        """Return the next value of counter `name`."""
        value: int = getattr(self, name)
        setattr(self, name, value + 1)
        return value


def _seed_projects() -> dict[str, Project]:
    processes = build_processes()
    now = fmt_date(utcnow())
    rows = [
        (
            "3f0c6a4e-5b1d-4c2e-9a77-0d2b8e41c9a1",
            "AppSec",
            "Application security (Agile)",
            "agile",
            ["Findings", "Web", "Mobile"],
        ),
        (
            "8e2d4c6a-1f3b-4a5c-9d7e-0b1a2c3d4e5f",
            "Platform",
            "Platform team (Basic)",
            "basic",
            ["Findings", "Infra"],
        ),
        (
            "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d",
            "Custom",
            "Custom inherited process",
            "custom",
            ["Findings"],
        ),
        (
            "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f",
            "Strict",
            "Agile with an extra required field",
            "strict",
            ["Findings"],
        ),
    ]
    projects: dict[str, Project] = {}
    for pid, name, description, process, areas in rows:
        projects[pid] = Project(
            id=pid,
            name=name,
            description=description,
            process=processes[process],
            areas=[name, *(f"{name}\\{area}" for area in areas)],
            iterations=[name, f"{name}\\Sprint 1", f"{name}\\Sprint 2"],
            last_update=now,
        )
    return projects


class SandboxState:
    """All mutable sandbox data, behind `self.lock`."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.pat = f"sandbox-pat-{secrets.token_hex(10)}"
        self.tenant_id = str(uuid.uuid4())
        self.client_id = str(uuid.uuid4())
        self.client_secret = f"sandbox-secret-{secrets.token_urlsafe(18)}"
        self.sp_identity = Identity("ado-webhook-sp", self.client_id)
        self.tokens: dict[str, tuple[float, Identity]] = {}
        self.base_url = "http://127.0.0.1:0"
        self.latency = 0.0
        self.token_lifetime = 3599
        self.projects_page_size = 100
        self.wiql_max_results = 20_000
        self.emit: Callable[[list[Event]], None] = lambda events: None
        self.reset()

    @property
    def org_url(self) -> str:
        """Return the organization URL (dev.azure.com-style path form)."""
        return f"{self.base_url}/{ORG_NAME}"

    def reset(self) -> None:
        """Forget all data and re-seed (credentials stay valid)."""
        with self.lock:
            self.projects = _seed_projects()
            self.items: dict[int, WorkItem] = {}
            self.subscriptions: dict[str, Subscription] = {}
            self.faults: list[Fault] = []
            self.requests: list[dict[str, Any]] = []
            self.deliveries: list[dict[str, Any]] = []
            self.counters = Counters()

    def project(self, id_or_name: str) -> Project:
        """Return a project by id or name (case-insensitive), or raise TF200016."""
        wanted = id_or_name.strip().lower()
        for project in self.projects.values():
            if wanted in (project.id.lower(), project.name.lower()):
                return project
        raise SandboxError(
            404,
            f"TF200016: The following project does not exist: {id_or_name}. Verify that the "
            "name of the project is correct and that the project exists on the specified "
            "Azure DevOps Server.",
            "ProjectDoesNotExistWithNameException",
            type_name="Microsoft.TeamFoundation.Core.WebApi.ProjectDoesNotExistWithNameException,"
            " Microsoft.TeamFoundation.Core.WebApi",
            event_id=3000,
        )

    def work_item_type(self, project: Project, name: str) -> WorkItemTypeDef:
        """Return a type of `project`, or raise VS402323."""
        found = project.type(name)
        if found is None:
            raise SandboxError(
                404,
                f"VS402323: Work item type {name} does not exist in project {project.id} or "
                "you do not have permission to access it.",
                "WorkItemTypeNotFoundException",
                type_name="Microsoft.TeamFoundation.WorkItemTracking.Server.Metadata."
                "WorkItemTypeNotFoundException, Microsoft.TeamFoundation.WorkItemTracking.Server",
                event_id=3200,
            )
        return found

    def item(self, item_id: int, *, include_deleted: bool = False) -> WorkItem:
        """Return a live work item, or raise TF401232."""
        found = self.items.get(item_id)
        if found is None or (found.deleted and not include_deleted):
            raise not_found(item_id)
        return found

    def subscription(self, sub_id: str) -> Subscription:
        """Return a subscription, or raise a 404."""
        found = self.subscriptions.get(sub_id.lower())
        if found is None:
            raise SandboxError(
                404,
                f"VS1050007: Subscription with id '{sub_id}' does not exist.",
                "SubscriptionNotFoundException",
                type_name="Microsoft.VisualStudio.Services.ServiceHooks.WebApi."
                "SubscriptionNotFoundException, Microsoft.VisualStudio.Services.ServiceHooks."
                "WebApi",
            )
        return found


def not_found(item_id: int) -> SandboxError:
    """Build the TF401232 error for a missing or deleted work item."""
    return SandboxError(
        404,
        f"TF401232: Work item {item_id} does not exist, or you do not have permissions to read it.",
        "WorkItemNotFoundException",
        type_name="Microsoft.TeamFoundation.WorkItemTracking.Server.WorkItemNotFoundException, "
        "Microsoft.TeamFoundation.WorkItemTracking.Server",
        event_id=3200,
    )
