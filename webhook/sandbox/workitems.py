"""Work item operations: JSON Patch application, work item rules, saving, comments, recycle bin.

Callers hold `state.lock`. Every save stores a revision and an update record and hands the
resulting events to `state.emit`, so hook deliveries are queued in the order changes happen.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from .processes import CATEGORY_RANK, StateDef, TypeField, WorkItemTypeDef
from .state import (
    Comment,
    Event,
    Project,
    Revision,
    SandboxState,
    Update,
    WorkItem,
)
from .wire import (
    REVISED_DATE_OPEN,
    Identity,
    SandboxError,
    fmt_date,
    parse_date,
    rule_error,
    utcnow,
    wit_error,
)

PATCH_OPS = {"add", "replace", "remove", "test", "move", "copy"}
MAX_TITLE = 255
MAX_LONG_TEXT = 1_000_000


def invalid_patch() -> SandboxError:
    """Build the error for a body that is not a JSON Patch document."""
    return SandboxError(
        400,
        "You must pass a valid patch document in the body of the request.",
        "VssPropertyValidationException",
    )


def failed_test_op(path: str, actual: Any, expected: Any) -> SandboxError:
    """Build the 412 answered when a JSON Patch `test` operation fails."""
    return SandboxError(
        412,
        f"VS403351: Test Operation for path {path} failed, value {actual} was not equal to "
        f"test value {expected}.",
        "TestPatchOperationFailedException",
    )


def unknown_field(ref: str) -> SandboxError:
    """Build TF51535 for a field the work item type does not have."""
    return wit_error(400, f"TF51535: Cannot find field {ref}.", "WorkItemFieldInvalidException")


def not_in_list(name: str, value: Any) -> SandboxError:
    """Build the error for a value outside a field's allowed values."""
    return wit_error(
        400,
        f"The field '{name}' contains the value '{value}' that is not in the list of supported "
        "values",
        "RuleValidationException",
        error_code=600171,
    )


def normalize_tags(value: Any) -> str:
    """Return tags as Azure DevOps stores them: `"a; b"`, de-duplicated case-insensitively."""
    seen: dict[str, str] = {}
    for part in str(value or "").split(";"):
        tag = part.strip()
        if tag and tag.lower() not in seen:
            seen[tag.lower()] = tag
    return "; ".join(sorted(seen.values(), key=str.lower))


def split_tags(value: Any) -> list[str]:
    """Return the individual tags of a `System.Tags` value."""
    return [t.strip() for t in str(value or "").split(";") if t.strip()]


def coerce_identity(value: Any) -> str:
    """Return an identity value in the stored `"Name <mail>"` form."""
    if isinstance(value, dict):
        unique = value.get("uniqueName") or value.get("displayName") or ""
        display = value.get("displayName") or unique
        return Identity(str(display), str(unique)).as_string()
    return Identity.parse(str(value)).as_string()


@dataclass
class Draft:
    """A work item being edited: fields, links and a pending discussion comment."""

    fields: dict[str, Any]
    relations: list[dict[str, Any]]
    history: str | None = None
    reason_set: bool = False
    relations_added: list[dict[str, Any]] = field(default_factory=list)
    relations_removed: list[dict[str, Any]] = field(default_factory=list)


def _field_use(wit: WorkItemTypeDef, ref: str) -> TypeField:
    use = wit.field(ref)
    if use is None:
        raise unknown_field(ref)
    return use


def _coerce(use: TypeField, value: Any) -> Any:
    """Convert a patch value to the stored type of the field."""
    fdef = use.field
    if value is None or (isinstance(value, str) and value == "" and fdef.kind != "history"):
        return None
    if fdef.kind == "integer":
        try:
            return int(str(value).strip())
        except ValueError:
            raise not_in_list(fdef.name, value) from None
    if fdef.kind == "identity":
        return coerce_identity(value)
    if fdef.kind == "plainText" and fdef.ref == "System.Tags":
        return normalize_tags(value) or None
    if fdef.kind == "dateTime":
        try:
            return fmt_date(parse_date(str(value)))
        except ValueError:
            raise rule_error(fdef.name, "InvalidDate") from None
    text = value if isinstance(value, str) else str(value)
    limit = MAX_TITLE if fdef.ref == "System.Title" else MAX_LONG_TEXT
    if len(text) > limit:
        raise rule_error(fdef.name, "InvalidTooLong")
    return text


def _same(use: TypeField, current: Any, expected: Any) -> bool:
    try:
        return bool(current == _coerce(use, expected))
    except SandboxError:
        return False


def apply_patch(
    draft: Draft,
    wit: WorkItemTypeDef,
    ops: Any,
    *,
    rev: int,
    bypass_rules: bool,
    org_url: str,
    link_ids: Any,
    now: str,
) -> None:
    """Apply JSON Patch operations to `draft` (AZURE_DEVOPS.md §3.1, §3.3)."""
    if not isinstance(ops, list) or not ops:
        raise invalid_patch()
    for op in ops:
        if not isinstance(op, dict) or op.get("op") not in PATCH_OPS:
            raise invalid_patch()
        if not isinstance(op.get("path"), str):
            raise invalid_patch()
    for op in ops:
        kind, path, value = op["op"], op["path"], op.get("value")
        parts = path.strip("/").split("/", 1)
        head = parts[0].lower()
        if head == "rev" and len(parts) == 1:
            if kind != "test":
                raise invalid_patch()
            if str(value) != str(rev):
                raise failed_test_op("/rev", rev, value)
        elif head == "id" and len(parts) == 1:
            if kind != "test":
                raise invalid_patch()
        elif head == "fields" and len(parts) == 2:
            _apply_field_op(draft, wit, kind, parts[1], value, bypass_rules)
        elif head == "relations" and len(parts) == 2:
            _apply_relation_op(draft, kind, parts[1], value, org_url, link_ids, now)
        elif head == "multilinefieldsformat" and len(parts) == 2:
            _field_use(wit, parts[1])  # formats are accepted and not modelled
        else:
            raise SandboxError(
                400,
                f"VS402625: The path {path} is not valid for a work item patch.",
                "VssPropertyValidationException",
            )


def _apply_field_op(
    draft: Draft, wit: WorkItemTypeDef, kind: str, ref: str, value: Any, bypass_rules: bool
) -> None:
    use = _field_use(wit, ref)
    canonical = use.field.ref
    if kind == "test":
        current = draft.fields.get(canonical)
        if not _same(use, current, value):
            raise failed_test_op(f"/fields/{canonical}", current, value)
        return
    if kind in ("move", "copy"):
        raise invalid_patch()
    if canonical == "System.History":
        if kind != "remove" and value not in (None, ""):
            draft.history = str(value)
        return
    if use.field.read_only and not bypass_rules:
        raise wit_error(
            400,
            f"TF401326: Invalid field status 'ReadOnly' for field '{canonical}'.",
            "RuleValidationException",
            error_code=600171,
        )
    if canonical == "System.Reason":
        draft.reason_set = True
    new_value = None if kind == "remove" else _coerce(use, value)
    if new_value is None:
        draft.fields.pop(canonical, None)
    else:
        draft.fields[canonical] = new_value


def _apply_relation_op(
    draft: Draft, kind: str, index: str, value: Any, org_url: str, link_ids: Any, now: str
) -> None:
    if index == "-":
        if kind != "add" or not isinstance(value, dict):
            raise invalid_patch()
        rel, url = value.get("rel"), value.get("url")
        if not isinstance(rel, str) or not rel or not isinstance(url, str) or not url:
            raise SandboxError(
                400,
                "VS402625: A relation needs both 'rel' and 'url'.",
                "VssPropertyValidationException",
            )
        attributes = dict(value.get("attributes") or {})
        if rel.startswith("System.LinkTypes."):
            names = {
                "Hierarchy-Reverse": "Parent",
                "Hierarchy-Forward": "Child",
                "Related": "Related",
            }
            server = {"isLocked": False, "name": names.get(rel.rsplit(".", 1)[-1], rel)}
        else:
            server = {
                "authorizedDate": now,
                "id": link_ids(),
                "resourceCreatedDate": now,
                "resourceModifiedDate": now,
                "revisedDate": REVISED_DATE_OPEN,
            }
        relation = {"rel": rel, "url": url, "attributes": {**server, **attributes}}
        draft.relations.append(relation)
        draft.relations_added.append(relation)
        return
    try:
        position = int(index)
        target = draft.relations[position]
    except (ValueError, IndexError):
        raise invalid_patch() from None
    if kind == "remove":
        draft.relations.pop(position)
        draft.relations_removed.append(target)
    elif kind in ("add", "replace") and isinstance(value, dict):
        target.setdefault("attributes", {}).update(value.get("attributes") or {})
    elif kind != "test":
        raise invalid_patch()


def _tree_path(project: Project, ref: str, value: Any, item_id: int) -> str:
    nodes = project.areas if ref == "System.AreaPath" else project.iterations
    wanted = str(value).strip().strip("\\").lower()
    for node in nodes:
        if node.lower() == wanted:
            return node
    raise wit_error(
        400,
        f"TF401347: Invalid tree name given for work item {item_id}, field '{ref}'.",
        "WorkItemTrackingInvalidTreeNameException",
        error_code=600171,
    )


def _enter_state(
    fields: dict[str, Any],
    wit: WorkItemTypeDef,
    old: StateDef | None,
    new: StateDef,
    reason_set: bool,
    by: Identity,
    now: str,
) -> None:
    """Set Reason and the state bookkeeping fields when a work item changes state."""
    backwards = old is not None and CATEGORY_RANK[new.category] < CATEGORY_RANK[old.category]
    if not reason_set or not fields.get("System.Reason"):
        fields["System.Reason"] = "Reactivated" if backwards else new.reason
    fields["Microsoft.VSTS.Common.StateChangeDate"] = now
    who = by.as_string()

    def put(ref: str, value: Any) -> None:
        if wit.field(ref):
            fields[ref] = value

    def clear(*refs: str) -> None:
        for ref in refs:
            fields.pop(f"Microsoft.VSTS.Common.{ref}", None)

    if old is None:
        return
    if new.category == "Proposed":
        clear(
            "ActivatedDate",
            "ActivatedBy",
            "ResolvedDate",
            "ResolvedBy",
            "ResolvedReason",
            "ClosedDate",
            "ClosedBy",
        )
    elif new.category == "InProgress":
        put("Microsoft.VSTS.Common.ActivatedDate", now)
        put("Microsoft.VSTS.Common.ActivatedBy", who)
        clear("ResolvedDate", "ResolvedBy", "ResolvedReason", "ClosedDate", "ClosedBy")
    elif new.category == "Resolved":
        put("Microsoft.VSTS.Common.ResolvedDate", now)
        put("Microsoft.VSTS.Common.ResolvedBy", who)
        put("Microsoft.VSTS.Common.ResolvedReason", fields["System.Reason"])
        clear("ClosedDate", "ClosedBy")
    elif new.category == "Completed":
        put("Microsoft.VSTS.Common.ClosedDate", now)
        put("Microsoft.VSTS.Common.ClosedBy", who)


def _check_rules(fields: dict[str, Any], wit: WorkItemTypeDef) -> None:
    """Enforce alwaysRequired and allowed values, reporting the first violation as ADO does."""
    for use in wit.fields.values():
        ref = use.field.ref
        value = fields.get(ref)
        if use.always_required and value in (None, ""):
            raise rule_error(use.field.name, "Required, InvalidEmpty")
        if value is None or not use.allowed:
            continue
        matched = next((a for a in use.allowed if str(a).lower() == str(value).lower()), None)
        if matched is None:
            raise not_in_list(use.field.name, value)
        fields[ref] = matched


def _change_time(item: WorkItem | None) -> str:
    """Return a change time at millisecond precision, strictly after the previous change."""
    now = utcnow()
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    if item is not None:
        previous = parse_date(item.fields["System.ChangedDate"])
        if now <= previous:
            now = previous + timedelta(milliseconds=1)
    return fmt_date(now)


def full_fields(item: WorkItem) -> dict[str, Any]:
    """Return the visible fields plus the bookkeeping fields (System.Id, Rev, Watermark ...)."""
    return {
        "System.Id": item.id,
        "System.Rev": item.rev,
        "System.AuthorizedDate": item.fields.get("System.ChangedDate"),
        "System.RevisedDate": REVISED_DATE_OPEN,
        "System.Watermark": item.watermark,
        **item.fields,
    }


def field_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return `{ref: {oldValue?, newValue?}}` for every field whose value changed."""
    delta: dict[str, dict[str, Any]] = {}
    for ref in dict.fromkeys([*before, *after]):
        old, new = before.get(ref), after.get(ref)
        if old == new:
            continue
        entry: dict[str, Any] = {}
        if old not in (None, ""):
            entry["oldValue"] = old
        if new not in (None, ""):
            entry["newValue"] = new
        delta[ref] = entry
    return delta


def _new_draft(item: WorkItem | None) -> Draft:
    if item is None:
        return Draft(fields={}, relations=[])
    fields = dict(item.fields)
    fields.pop("System.History", None)  # History belongs to the revision that set it
    return Draft(fields=fields, relations=copy.deepcopy(item.relations))


def create_item(
    state: SandboxState,
    project: Project,
    wit: WorkItemTypeDef,
    ops: Any,
    by: Identity,
    *,
    validate_only: bool = False,
    bypass_rules: bool = False,
) -> WorkItem:
    """Create a work item from JSON Patch operations; with `validate_only`, save nothing."""
    now = _change_time(None)
    draft = _new_draft(None)
    apply_patch(
        draft,
        wit,
        ops,
        rev=0,
        bypass_rules=bypass_rules,
        org_url=state.org_url,
        link_ids=lambda: state.counters.take("link"),
        now=now,
    )
    given = draft.fields
    initial = wit.initial_state
    if "System.State" in given and not bypass_rules:
        requested = wit.state(str(given["System.State"]))
        if requested is None or requested != initial:
            raise not_in_list("State", given["System.State"])
    fields: dict[str, Any] = {
        "System.AreaPath": _tree_path(
            project, "System.AreaPath", given.pop("System.AreaPath", project.name), -1
        ),
        "System.TeamProject": project.name,
        "System.IterationPath": _tree_path(
            project, "System.IterationPath", given.pop("System.IterationPath", project.name), -1
        ),
        "System.WorkItemType": wit.name,
        "System.State": initial.name,
        "System.Reason": initial.reason,
        "System.CreatedDate": now,
        "System.CreatedBy": by.as_string(),
        "System.ChangedDate": now,
        "System.ChangedBy": by.as_string(),
        "System.CommentCount": 0,
    }
    if draft.reason_set and given.get("System.Reason"):
        fields["System.Reason"] = given.pop("System.Reason")
    given.pop("System.State", None)
    given.pop("System.Reason", None)
    fields.update({k: v for k, v in given.items() if k not in fields or bypass_rules})
    fields["Microsoft.VSTS.Common.StateChangeDate"] = now
    for use in wit.fields.values():
        if use.default is not None and use.field.ref not in fields:
            fields[use.field.ref] = use.default
    if not bypass_rules:
        _check_rules(fields, wit)
    if draft.history:
        fields["System.History"] = draft.history
        fields["System.CommentCount"] = 1
    item_id = 0 if validate_only else state.counters.take("work_item")
    item = WorkItem(id=item_id, project=project, type=wit, fields=fields, relations=draft.relations)
    if validate_only:
        return item
    item.watermark = state.counters.take("watermark")
    comment = _add_history_comment(state, item, draft.history, by, now)
    item.revisions.append(Revision(1, dict(fields), copy.deepcopy(item.relations)))
    created = {
        ref: {"newValue": value}
        for ref, value in full_fields(item).items()
        if ref != "System.RevisedDate"
    }
    relations = {"added": copy.deepcopy(item.relations)} if item.relations else None
    update = Update(1, 1, by, now, created, relations)
    item.updates.append(update)
    state.items[item.id] = item
    events = [Event("workitem.created", item, by, update=update)]
    if comment:
        events.append(Event("workitem.commented", item, by, update=update, comment=comment))
    state.emit(events)
    return item


def _add_history_comment(
    state: SandboxState,
    item: WorkItem,
    text: str | None,
    by: Identity,
    now: str,
    fmt: str = "html",
) -> Comment | None:
    if not text:
        return None
    comment = Comment(
        id=state.counters.take("comment"),
        work_item_id=item.id,
        text=text,
        format=fmt,
        created_by=by,
        created_date=now,
        modified_by=by,
        modified_date=now,
    )
    item.comments.append(comment)
    return comment


def update_item(
    state: SandboxState,
    item: WorkItem,
    ops: Any,
    by: Identity,
    *,
    validate_only: bool = False,
    bypass_rules: bool = False,
    comment_format: str = "html",
) -> WorkItem:
    """Apply JSON Patch operations to a work item and save a new revision."""
    now = _change_time(item)
    draft = _new_draft(item)
    apply_patch(
        draft,
        item.type,
        ops,
        rev=item.rev,
        bypass_rules=bypass_rules,
        org_url=state.org_url,
        link_ids=lambda: state.counters.take("link"),
        now=now,
    )
    return _save(
        state,
        item,
        draft,
        by,
        now,
        validate_only=validate_only,
        bypass_rules=bypass_rules,
        comment_format=comment_format,
    )


def _save(
    state: SandboxState,
    item: WorkItem,
    draft: Draft,
    by: Identity,
    now: str,
    *,
    validate_only: bool = False,
    bypass_rules: bool = False,
    comment_format: str = "html",
) -> WorkItem:
    fields = draft.fields
    wit = item.type
    for ref in ("System.AreaPath", "System.IterationPath"):
        fields[ref] = _tree_path(item.project, ref, fields.get(ref, item.project.name), item.id)
    old_state = wit.state(item.fields["System.State"])
    new_state = wit.state(str(fields.get("System.State", "")))
    if new_state is None:
        raise not_in_list("State", fields.get("System.State", ""))
    fields["System.State"] = new_state.name
    if new_state != old_state:
        _enter_state(fields, wit, old_state, new_state, draft.reason_set, by, now)
    if not bypass_rules:
        _check_rules(fields, wit)
    visible_before = {k: v for k, v in item.fields.items() if k != "System.History"}
    changed = (
        fields != visible_before
        or draft.history
        or draft.relations_added
        or draft.relations_removed
    )
    if not changed:
        return item
    if validate_only:
        preview = copy.copy(item)
        preview.fields = fields
        preview.relations = draft.relations
        return preview
    before = full_fields(item)
    before["System.RevisedDate"] = now
    before.pop("System.History", None)
    fields["System.ChangedDate"] = now
    fields["System.ChangedBy"] = by.as_string()
    comment = _add_history_comment(state, item, draft.history, by, now, comment_format)
    if comment:
        fields["System.History"] = comment.text
        fields["System.CommentCount"] = int(fields.get("System.CommentCount") or 0) + 1
    item.fields = fields
    item.relations = draft.relations
    item.rev += 1
    item.watermark = state.counters.take("watermark")
    delta = field_delta(before, full_fields(item))
    relations: dict[str, list[dict[str, Any]]] | None = None
    if draft.relations_added or draft.relations_removed:
        relations = {}
        if draft.relations_added:
            relations["added"] = copy.deepcopy(draft.relations_added)
        if draft.relations_removed:
            relations["removed"] = copy.deepcopy(draft.relations_removed)
    update = Update(len(item.updates) + 1, item.rev, by, now, delta, relations)
    item.updates.append(update)
    item.revisions.append(Revision(item.rev, dict(fields), copy.deepcopy(item.relations)))
    events = [Event("workitem.updated", item, by, update=update)]
    if comment:
        events.append(Event("workitem.commented", item, by, update=update, comment=comment))
    state.emit(events)
    return item


def set_fields(
    state: SandboxState, item: WorkItem, values: dict[str, Any], by: Identity
) -> WorkItem:
    """Change fields as a person in the web UI would (rules apply, read-only fields too)."""
    ops = [{"op": "add", "path": f"/fields/{ref}", "value": value} for ref, value in values.items()]
    return update_item(state, item, ops, by)


def change_type(
    state: SandboxState,
    item: WorkItem,
    wit: WorkItemTypeDef,
    state_name: str | None,
    by: Identity,
) -> WorkItem:
    """Change a work item's type as a person does in the web UI ("Change type").

    One new revision (fires workitem.updated) whose fields and revision snapshot show the new
    `System.WorkItemType` and a state of the new type: `state_name`, else the current state if
    the new type has it, else the new type's first state. Fields the new type lacks are dropped.
    """
    if state_name:
        target = wit.state(state_name)
        if target is None:
            raise not_in_list("State", state_name)
    else:
        target = wit.state(str(item.fields.get("System.State", ""))) or wit.initial_state
    now = _change_time(item)
    draft = _new_draft(item)
    draft.fields = {ref: v for ref, v in draft.fields.items() if wit.field(ref) is not None}
    draft.fields["System.WorkItemType"] = wit.name
    draft.fields["System.State"] = target.name
    old_type = item.type
    item.type = wit
    try:
        return _save(state, item, draft, by, now)
    except Exception:
        item.type = old_type
        raise


def add_comment(state: SandboxState, item: WorkItem, text: str, fmt: str, by: Identity) -> Comment:
    """Add a discussion comment (a new revision carrying System.History)."""
    now = _change_time(item)
    draft = _new_draft(item)
    draft.history = text
    _save(state, item, draft, by, now, comment_format=fmt)
    return item.comments[-1]


def edit_comment(comment: Comment, text: str, by: Identity) -> Comment:
    """Change a comment's text (bumps its version, not the work item's rev)."""
    comment.text = text
    comment.version += 1
    comment.modified_by = by
    comment.modified_date = fmt_date(utcnow())
    return comment


def delete_item(
    state: SandboxState, item: WorkItem, by: Identity, *, destroy: bool = False
) -> None:
    """Move a work item to the recycle bin (or destroy it); fires workitem.deleted."""
    if destroy:
        state.items.pop(item.id, None)
        if item.deleted:
            return
    item.deleted = True
    item.deleted_by = by
    item.deleted_date = fmt_date(utcnow())
    state.emit([Event("workitem.deleted", item, by)])


def restore_item(state: SandboxState, item: WorkItem, by: Identity) -> None:
    """Restore a work item from the recycle bin; fires workitem.restored (rev unchanged)."""
    if not item.deleted:
        return
    item.deleted = False
    item.deleted_by = None
    item.deleted_date = None
    state.emit([Event("workitem.restored", item, by)])
