"""A recording fake of the Azure DevOps client and gateway, for fast tests of the job handlers.

In the manner of gidgethub's test client (gidgethub/test/test_abc.py): every call is recorded
in order (``calls``), answers come from what the fake holds (work items, comments,
subscriptions) or from canned answers, and failures are scripted per method (``fail``). Only
the methods of :class:`webhook.ado.AdoClient` that the handlers and subscriptions use exist;
their answers have the shapes of AZURE_DEVOPS.md (create/update: the work item; comments: the
comment list; subscriptions: id and status).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from webhook.ado import AdoNotFound, AdoRateLimited, AdoRuleError, AdoTransient
from webhook.domain.models import WorkItemState, WorkItemTypeInfo

BUG = WorkItemTypeInfo(
    name="Bug",
    states=(
        WorkItemState("New", "Proposed"),
        WorkItemState("Active", "InProgress"),
        WorkItemState("Resolved", "Resolved"),
        WorkItemState("Closed", "Completed"),
    ),
    field_names=frozenset(
        {
            "System.Title",
            "System.Description",
            "System.Tags",
            "System.History",
            "Microsoft.VSTS.Common.Severity",
        }
    ),
    required_fields=frozenset(),
)


class ResponseLost(AdoTransient):
    """The request reached Azure DevOps and did its work; its answer never came back."""

    def __init__(self) -> None:
        super().__init__("connection reset after the request was sent", outcome_unknown=True)


def rate_limited(seconds: float = 30.0) -> AdoRateLimited:
    """A 429 with Retry-After (AZURE_DEVOPS.md, rate limits)."""
    return AdoRateLimited("TF400733: request blocked", status=429, retry_after=seconds)


def rule_error(field_name: str = "System.Title") -> AdoRuleError:
    """A 400 rule error naming the field (sample error-rule-validation.json)."""
    return AdoRuleError(f"TF401320: Rule Error for field {field_name}", status=400)


@dataclass
class Call:
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


def _fields(patch: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        op["path"].removeprefix("/fields/"): op["value"]
        for op in patch
        if op.get("op") in ("add", "replace") and op["path"].startswith("/fields/")
    }


class RecordingAdo:
    """Azure DevOps in memory. ``fail[method]`` is a list of scripted outcomes for that
    method's next calls: an exception raised *instead of* the call, or ``ResponseLost()``
    raised *after* the call took effect. ``canned[method]`` answers a method outright."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.items: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.fail: dict[str, list[Exception]] = {}
        self.canned: dict[str, Any] = {}
        self._next_id = 100

    # ---- recording ---------------------------------------------------------------------

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Callable[[], None]:
        """Record the call; raise a scripted failure now, or return the after-effect check."""
        self.calls.append(Call(method, args, kwargs))
        script = self.fail.get(method) or []
        outcome = script.pop(0) if script else None
        if outcome is not None and not isinstance(outcome, ResponseLost):
            raise outcome

        def after() -> None:
            if outcome is not None:
                raise outcome

        return after

    def called(self, method: str) -> list[Call]:
        """The calls of one method, in order."""
        return [c for c in self.calls if c.method == method]

    # ---- work items --------------------------------------------------------------------

    def create_work_item(
        self, project: str, type_name: str, patch: list[dict[str, Any]], **kwargs: Any
    ) -> dict[str, Any]:
        after = self._call("create_work_item", project, type_name, patch, **kwargs)
        self._next_id += 1
        fields = _fields(patch)
        fields.update(
            {"System.State": "New", "System.TeamProject": project, "System.WorkItemType": type_name}
        )
        item = {
            "id": self._next_id,
            "rev": 1,
            "fields": fields,
            "url": f"https://x/{self._next_id}",
        }
        self.items[item["id"]] = item
        after()
        return item

    def update_work_item(
        self, project: str, work_item_id: int, patch: list[dict[str, Any]], **kwargs: Any
    ) -> dict[str, Any]:
        after = self._call("update_work_item", project, work_item_id, patch, **kwargs)
        item = self.items[work_item_id]
        history = _fields(patch).pop("System.History", None)
        item["fields"].update({k: v for k, v in _fields(patch).items() if k != "System.History"})
        item["rev"] += 1
        if history is not None:
            self.comments.setdefault(work_item_id, []).append({"text": history})
        after()
        return item

    def get_work_item(self, project: str, work_item_id: int, **kwargs: Any) -> dict[str, Any]:
        after = self._call("get_work_item", project, work_item_id, **kwargs)
        after()
        return self.items[work_item_id]

    def get_work_items_batch(
        self, project: str, ids: list[int], **kwargs: Any
    ) -> list[dict[str, Any]]:
        after = self._call("get_work_items_batch", project, list(ids), **kwargs)
        after()
        return [self.items[i] for i in ids if i in self.items]

    def find_by_tag(self, project: str, tag: str) -> list[int]:
        after = self._call("find_by_tag", project, tag)
        after()
        return [
            i
            for i, item in self.items.items()
            if tag in [t.strip() for t in str(item["fields"].get("System.Tags", "")).split(";")]
        ]

    def list_comments(self, project: str, work_item_id: int, **kwargs: Any) -> list[dict[str, Any]]:
        after = self._call("list_comments", project, work_item_id, **kwargs)
        after()
        return list(self.comments.get(work_item_id, []))

    # ---- projects and subscriptions ----------------------------------------------------

    def get_project(self, name_or_id: str) -> dict[str, Any]:
        after = self._call("get_project", name_or_id)
        after()
        return self.canned.get("get_project") or {"id": f"id-{name_or_id}", "name": name_or_id}

    def create_subscription(self, body: dict[str, Any]) -> dict[str, Any]:
        after = self._call("create_subscription", body)
        self._next_id += 1
        sub_id = f"sub-{self._next_id}"
        self.subscriptions[sub_id] = {"id": sub_id, "status": "enabled", **body}
        after()
        return self.subscriptions[sub_id]

    def get_subscription(self, subscription_id: str) -> dict[str, Any]:
        after = self._call("get_subscription", subscription_id)
        after()
        if subscription_id not in self.subscriptions:
            raise AdoNotFound(f"subscription {subscription_id} not found", status=404)
        return self.subscriptions[subscription_id]

    def delete_subscription(self, subscription_id: str) -> None:
        after = self._call("delete_subscription", subscription_id)
        self.subscriptions.pop(subscription_id, None)
        after()


class FakeOrg:
    canonical = "https://dev.azure.com/example"


class FakeGateway:
    """The gateway's surface the handlers use: one RecordingAdo for every connection, a fixed
    type (BUG, or ``types[name]``) and no pauses."""

    def __init__(self, ado: RecordingAdo, info: WorkItemTypeInfo = BUG) -> None:
        self.ado = ado
        self.info = info
        self.type_reads = 0
        ado.org = FakeOrg()  # type: ignore[attr-defined]

    def client(self, connection_id: int) -> RecordingAdo:
        return self.ado

    def type_info(
        self, connection_id: int, project: str, type_name: str, *, refresh: bool = False
    ) -> WorkItemTypeInfo:
        self.type_reads += 1
        return self.info

    def paused_until(self, connection_id: int) -> float | None:
        return None

    def check_pause(self, organization: str) -> None:
        return None
