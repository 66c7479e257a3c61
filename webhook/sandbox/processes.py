"""Seed processes: fields, work item types and their workflow states.

Agile and Basic follow the default processes (AZURE_DEVOPS.md §9, §3.2); `Custom` is an
inherited process with a `Security Finding` type whose state names are deliberately unlike
Agile's, so that clients must classify states by category, never by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CATEGORY_RANK = {"Proposed": 0, "InProgress": 1, "Resolved": 2, "Completed": 3, "Removed": 4}


@dataclass(frozen=True)
class FieldDef:
    """An organization-level field."""

    ref: str
    name: str
    kind: str  # string | integer | html | plainText | dateTime | identity | treePath | history
    read_only: bool = False
    help_text: str = ""


@dataclass(frozen=True)
class TypeField:
    """A field as used by one work item type."""

    field: FieldDef
    always_required: bool = False
    default: Any = None
    allowed: tuple[Any, ...] = ()


@dataclass(frozen=True)
class StateDef:
    """A workflow state of a work item type."""

    name: str
    category: str
    color: str
    reason: str  # reason given when a work item enters this state going forward


@dataclass(frozen=True)
class WorkItemTypeDef:
    """A work item type: fields and workflow."""

    name: str
    ref_name: str
    description: str
    color: str
    icon: str
    states: tuple[StateDef, ...]
    fields: dict[str, TypeField]  # keyed by lower-case reference name

    def field(self, ref: str) -> TypeField | None:
        """Return the type's use of a field, by reference name (case-insensitive)."""
        return self.fields.get(ref.lower())

    def state(self, name: str) -> StateDef | None:
        """Return a state by name (case-insensitive)."""
        wanted = name.lower()
        return next((s for s in self.states if s.name.lower() == wanted), None)

    @property
    def initial_state(self) -> StateDef:
        """Return the state new work items start in."""
        return self.states[0]


@dataclass(frozen=True)
class Process:
    """A process template and its work item types."""

    name: str
    type_id: str
    types: dict[str, WorkItemTypeDef] = field(default_factory=dict)  # keyed by lower-case name

    def type(self, name: str) -> WorkItemTypeDef | None:
        """Return a type by name (case-insensitive)."""
        return self.types.get(name.lower())


def _f(ref: str, name: str, kind: str, *, read_only: bool = False, help_text: str = "") -> FieldDef:
    return FieldDef(ref, name, kind, read_only, help_text)


FIELDS: dict[str, FieldDef] = {
    f.ref.lower(): f
    for f in (
        _f("System.Id", "ID", "integer", read_only=True),
        _f("System.Rev", "Rev", "integer", read_only=True),
        _f("System.WorkItemType", "Work Item Type", "string", read_only=True),
        _f("System.TeamProject", "Team Project", "string", read_only=True),
        _f("System.Title", "Title", "string", help_text="Short description of the work item"),
        _f("System.Description", "Description", "html"),
        _f("System.State", "State", "string"),
        _f("System.Reason", "Reason", "string"),
        _f("System.AreaPath", "Area Path", "treePath"),
        _f("System.IterationPath", "Iteration Path", "treePath"),
        _f("System.Tags", "Tags", "plainText"),
        _f("System.AssignedTo", "Assigned To", "identity"),
        _f("System.History", "History", "history"),
        _f("System.CreatedDate", "Created Date", "dateTime", read_only=True),
        _f("System.CreatedBy", "Created By", "identity", read_only=True),
        _f("System.ChangedDate", "Changed Date", "dateTime", read_only=True),
        _f("System.ChangedBy", "Changed By", "identity", read_only=True),
        _f("System.AuthorizedDate", "Authorized Date", "dateTime", read_only=True),
        _f("System.RevisedDate", "Revised Date", "dateTime", read_only=True),
        _f("System.Watermark", "Watermark", "integer", read_only=True),
        _f("System.CommentCount", "Comment Count", "integer", read_only=True),
        _f(
            "Microsoft.VSTS.Common.StateChangeDate", "State Change Date", "dateTime", read_only=True
        ),
        _f("Microsoft.VSTS.Common.ActivatedDate", "Activated Date", "dateTime", read_only=True),
        _f("Microsoft.VSTS.Common.ActivatedBy", "Activated By", "identity", read_only=True),
        _f("Microsoft.VSTS.Common.ResolvedDate", "Resolved Date", "dateTime", read_only=True),
        _f("Microsoft.VSTS.Common.ResolvedBy", "Resolved By", "identity", read_only=True),
        _f("Microsoft.VSTS.Common.ResolvedReason", "Resolved Reason", "string", read_only=True),
        _f("Microsoft.VSTS.Common.ClosedDate", "Closed Date", "dateTime", read_only=True),
        _f("Microsoft.VSTS.Common.ClosedBy", "Closed By", "identity", read_only=True),
        _f(
            "Microsoft.VSTS.Common.Priority",
            "Priority",
            "integer",
            help_text="Business importance. 1=must fix; 4=unimportant.",
        ),
        _f(
            "Microsoft.VSTS.Common.Severity",
            "Severity",
            "string",
            help_text="Assessment of the effect of the bug on the project.",
        ),
        _f(
            "Microsoft.VSTS.Common.ValueArea",
            "Value Area",
            "string",
            help_text="Business = delivers value to a user or another system; "
            "Architectural = work to support other stories or components",
        ),
        _f(
            "Microsoft.VSTS.TCM.ReproSteps",
            "Repro Steps",
            "html",
            help_text="How to see the bug. End by contrasting expected with actual behavior.",
        ),
        _f("Custom.Team", "Team", "string", help_text="Owning team (required in this project)"),
    )
}

SYSTEM_FIELDS = (
    "System.Id",
    "System.Rev",
    "System.WorkItemType",
    "System.TeamProject",
    "System.CreatedDate",
    "System.CreatedBy",
    "System.ChangedDate",
    "System.ChangedBy",
    "System.AuthorizedDate",
    "System.RevisedDate",
    "System.Watermark",
    "System.CommentCount",
    "System.State",
    "System.Reason",
    "System.AreaPath",
    "System.IterationPath",
    "System.Tags",
    "System.AssignedTo",
    "System.History",
    "System.Description",
    "Microsoft.VSTS.Common.StateChangeDate",
    "Microsoft.VSTS.Common.ActivatedDate",
    "Microsoft.VSTS.Common.ActivatedBy",
    "Microsoft.VSTS.Common.ClosedDate",
    "Microsoft.VSTS.Common.ClosedBy",
)
RESOLVED_FIELDS = (
    "Microsoft.VSTS.Common.ResolvedDate",
    "Microsoft.VSTS.Common.ResolvedBy",
    "Microsoft.VSTS.Common.ResolvedReason",
)
PRIORITY = TypeField(FIELDS["microsoft.vsts.common.priority"], default=2, allowed=(1, 2, 3, 4))
SEVERITY = TypeField(
    FIELDS["microsoft.vsts.common.severity"],
    default="3 - Medium",
    allowed=("1 - Critical", "2 - High", "3 - Medium", "4 - Low"),
)


def _fields(*extra: TypeField | str) -> dict[str, TypeField]:
    uses: list[TypeField] = [TypeField(FIELDS[ref.lower()]) for ref in SYSTEM_FIELDS]
    uses.append(TypeField(FIELDS["system.title"], always_required=True))
    for item in extra:
        uses.append(TypeField(FIELDS[item.lower()]) if isinstance(item, str) else item)
    return {use.field.ref.lower(): use for use in uses}


def _states(*rows: tuple[str, str, str]) -> tuple[StateDef, ...]:
    colors = {
        "Proposed": "b2b2b2",
        "InProgress": "007acc",
        "Resolved": "ff9d00",
        "Completed": "339933",
        "Removed": "ffffff",
    }
    return tuple(StateDef(name, cat, colors[cat], reason) for name, cat, reason in rows)


def _type(
    name: str,
    ref: str,
    color: str,
    icon: str,
    states: tuple[StateDef, ...],
    fields: dict[str, TypeField],
    description: str = "",
) -> WorkItemTypeDef:
    return WorkItemTypeDef(
        name, ref, description or f"{name} work item", color, icon, states, fields
    )


def _agile_types(*, strict: bool = False) -> dict[str, WorkItemTypeDef]:
    bug_extra: list[TypeField | str] = [
        PRIORITY,
        SEVERITY,
        *RESOLVED_FIELDS,
        "Microsoft.VSTS.TCM.ReproSteps",
        TypeField(
            FIELDS["microsoft.vsts.common.valuearea"],
            always_required=True,
            default="Business",
            allowed=("Architectural", "Business"),
        ),
    ]
    if strict:
        bug_extra.append(
            TypeField(FIELDS["custom.team"], always_required=True, allowed=("Red", "Blue"))
        )
    types = [
        _type(
            "Bug",
            "Microsoft.VSTS.WorkItemTypes.Bug",
            "CC293D",
            "icon_insect",
            _states(
                ("New", "Proposed", "New defect reported"),
                ("Active", "InProgress", "Approved"),
                ("Resolved", "Resolved", "Fixed"),
                ("Closed", "Completed", "Verified"),
            ),
            _fields(*bug_extra),
            "Describes a divergence between required and actual behavior.",
        ),
        _type(
            "User Story",
            "Microsoft.VSTS.WorkItemTypes.UserStory",
            "009CCC",
            "icon_book",
            _states(
                ("New", "Proposed", "New"),
                ("Active", "InProgress", "Implementation started"),
                ("Resolved", "Resolved", "Code complete and unit tests pass"),
                ("Closed", "Completed", "Acceptance tests pass"),
                ("Removed", "Removed", "Removed from the backlog"),
            ),
            _fields(PRIORITY, *RESOLVED_FIELDS),
        ),
        _type(
            "Task",
            "Microsoft.VSTS.WorkItemTypes.Task",
            "F2CB1D",
            "icon_clipboard",
            _states(
                ("New", "Proposed", "New"),
                ("Active", "InProgress", "Work started"),
                ("Closed", "Completed", "Completed"),
                ("Removed", "Removed", "Removed from the backlog"),
            ),
            _fields(PRIORITY),
        ),
    ]
    return {t.name.lower(): t for t in types}


def _basic_types() -> dict[str, WorkItemTypeDef]:
    def workflow() -> tuple[StateDef, ...]:
        return _states(
            ("To Do", "Proposed", "Added to backlog"),
            ("Doing", "InProgress", "Started"),
            ("Done", "Completed", "Work finished"),
        )

    types = [
        _type(
            "Issue",
            "Microsoft.VSTS.WorkItemTypes.Issue",
            "339947",
            "icon_clipboard_issue",
            workflow(),
            _fields(PRIORITY),
        ),
        _type(
            "Task",
            "Microsoft.VSTS.WorkItemTypes.Task",
            "F2CB1D",
            "icon_clipboard",
            workflow(),
            _fields(PRIORITY),
        ),
        _type(
            "Epic",
            "Microsoft.VSTS.WorkItemTypes.Epic",
            "773B93",
            "icon_crown",
            workflow(),
            _fields(PRIORITY),
        ),
    ]
    return {t.name.lower(): t for t in types}


def _custom_types() -> dict[str, WorkItemTypeDef]:
    finding = _type(
        "Security Finding",
        "Custom.SecurityFinding",
        "E60017",
        "icon_traffic_cone",
        _states(
            ("Triage", "Proposed", "New finding"),
            ("Fixing", "InProgress", "Fix started"),
            ("Verified", "Resolved", "Fix verified"),
            ("Accepted Risk", "Removed", "Risk accepted"),
            ("Closed", "Completed", "Finding closed"),
        ),
        _fields(PRIORITY, SEVERITY, *RESOLVED_FIELDS),
        "A security finding reported by a scanner.",
    )
    return {**_agile_types(), finding.name.lower(): finding}


AGILE_TYPE_ID = "adcc42ab-9882-485e-a3ed-7678f01f66bc"
BASIC_TYPE_ID = "b8a3a935-7e91-48b8-a94c-606d37c3e9f2"


def build_processes() -> dict[str, Process]:
    """Build the four seed processes, keyed by a short name."""
    return {
        "agile": Process("Agile", AGILE_TYPE_ID, _agile_types()),
        "basic": Process("Basic", BASIC_TYPE_ID, _basic_types()),
        "custom": Process(
            "Contoso Security", "5e3c0a4d-1b2f-4c6d-8e7f-9a0b1c2d3e4f", _custom_types()
        ),
        "strict": Process(
            "Contoso Strict Agile",
            "7d6c5b4a-3f2e-4d1c-9b0a-8f7e6d5c4b3a",
            _agile_types(strict=True),
        ),
    }


def field_by_name(name: str) -> FieldDef | None:
    """Look a field up by reference name or friendly name (case-insensitive)."""
    wanted = name.lower()
    found = FIELDS.get(wanted)
    if found:
        return found
    return next((f for f in FIELDS.values() if f.name.lower() == wanted), None)
