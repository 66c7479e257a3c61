"""A small WIQL engine: tokenizer, recursive-descent parser, evaluator (AZURE_DEVOPS.md §6.4).

Grammar (flat queries only):

    query     := SELECT field ("," field)* FROM WorkItems [WHERE expr]
                 [ORDER BY field [ASC|DESC] ("," field [ASC|DESC])*] [ASOF 'date']
    expr      := term (OR term)*
    term      := factor (AND factor)*
    factor    := NOT factor | "(" expr ")" | field operator value
    operator  := = | <> | > | >= | < | <= | [NOT] CONTAINS [WORDS] | [NOT] IN | [NOT] UNDER
                 | IS [NOT] EMPTY
    value     := 'string' | "string" | number | @macro [(+|-) number] | field | "(" values ")"

Dates are compared at day precision unless the request sets `timePrecision=true`; a date
literal carrying a time is then refused as Azure DevOps refuses it. `CONTAINS` on System.Tags
matches whole tags, case-insensitively.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .processes import FieldDef, field_by_name
from .wire import Identity, SandboxError, has_time_component, parse_date

QUERY_TYPE = "Microsoft.TeamFoundation.WorkItemTracking.Server.Common"


def syntax_error(message: str, culprit: str) -> SandboxError:
    """Build a TF51006 error naming the offending token."""
    return SandboxError(
        400,
        f"TF51006: {message} The error is caused by «{culprit}».",
        "SyntaxException",
        type_name=f"{QUERY_TYPE}.SyntaxException, {QUERY_TYPE}",
        event_id=3200,
    )


def validation_error(message: str) -> SandboxError:
    """Build a query validation error (unknown field, bad value, bad macro)."""
    return SandboxError(
        400,
        message,
        "ValidationException",
        type_name="Microsoft.TeamFoundation.WorkItemTracking.Server.ValidationException, "
        "Microsoft.TeamFoundation.WorkItemTracking.Server",
        event_id=3200,
    )


@dataclass(frozen=True)
class Token:
    """A lexical token with its position in the query text."""

    kind: str  # field | string | number | macro | op | word | end
    text: str
    start: int
    end: int

    @property
    def upper(self) -> str:
        """Return the token text upper-cased (for keywords)."""
        return self.text.upper()


_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<field>\[[^\]]*\])
      | (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
      | (?P<macro>@[A-Za-z_]\w*)
      | (?P<number>\d+(?:\.\d+)?)
      | (?P<op><>|!=|>=|<=|=|>|<|\(|\)|,|\+|-)
      | (?P<word>[A-Za-z_][\w.]*)
    )""",
    re.VERBOSE,
)


def tokenize(text: str) -> list[Token]:
    """Split a WIQL statement into tokens."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN_RE.match(text, pos)
        if not match or match.lastgroup is None:
            stripped = text[pos:].lstrip()
            culprit = stripped[:1]
            if culprit in "'\"[":
                raise syntax_error("The query statement is not terminated properly.", stripped)
            raise syntax_error("The query statement contains an unexpected character.", culprit)
        kind = match.lastgroup
        start = match.start(kind)
        tokens.append(Token(kind, match.group(kind), start, match.end()))
        pos = match.end()
    tokens.append(Token("end", "", len(text), len(text)))
    return tokens


@dataclass
class FieldRef:
    """A field as written in the query and as resolved."""

    written: str
    definition: FieldDef | None = None

    @property
    def ref(self) -> str:
        """Return the resolved reference name."""
        assert self.definition is not None
        return self.definition.ref


@dataclass
class Macro:
    """`@project`, `@today - 7`, `@me`."""

    name: str
    offset: float = 0.0


@dataclass
class Condition:
    """`field operator value`."""

    field: FieldRef
    operator: str  # =, <>, >, >=, <, <=, CONTAINS, CONTAINS WORDS, IN, UNDER, IS EMPTY
    value: Any
    negated: bool
    text: str


@dataclass
class BoolOp:
    """AND / OR / NOT over sub-expressions."""

    op: str
    operands: list[Any] = field(default_factory=list)


@dataclass
class Query:
    """A parsed flat WIQL query."""

    columns: list[FieldRef]
    where: Any
    order: list[tuple[FieldRef, bool]]
    as_of: str | None


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        token = self.tokens[self.pos]
        self.pos = min(self.pos + 1, len(self.tokens) - 1)
        return token

    def at_word(self, *words: str) -> bool:
        return self.tok.kind == "word" and self.tok.upper in words

    def expect_word(self, word: str, message: str) -> None:
        if not self.at_word(word):
            raise syntax_error(message, self.tok.text or "<end of statement>")
        self.advance()

    def parse(self) -> Query:
        self.expect_word("SELECT", "Expecting 'SELECT'.")
        columns = [self.field()]
        while self.tok.text == ",":
            self.advance()
            columns.append(self.field())
        if not self.at_word("FROM"):
            raise syntax_error(
                "The query statement is missing a FROM clause.",
                self.tok.text or "<end of statement>",
            )
        self.advance()
        source = self.advance()
        if source.kind != "word" or source.upper not in ("WORKITEMS", "WORKITEMLINKS"):
            raise syntax_error(
                "Expecting 'WorkItems' or 'WorkItemLinks'.", source.text or "<end of statement>"
            )
        if source.upper == "WORKITEMLINKS":
            raise validation_error("The sandbox supports flat queries (FROM WorkItems) only.")
        where = None
        if self.at_word("WHERE"):
            self.advance()
            where = self.expr()
        order: list[tuple[FieldRef, bool]] = []
        if self.at_word("ORDER"):
            self.advance()
            self.expect_word("BY", "Expecting 'BY'.")
            order.append(self.sort_key())
            while self.tok.text == ",":
                self.advance()
                order.append(self.sort_key())
        as_of = None
        if self.at_word("ASOF"):
            self.advance()
            if self.tok.kind != "string":
                raise syntax_error("Expecting a date.", self.tok.text or "<end of statement>")
            as_of = _unquote(self.advance().text)
        if self.tok.kind != "end":
            raise syntax_error("Expecting end of statement.", self.tok.text)
        return Query(columns, where, order, as_of)

    def field(self) -> FieldRef:
        token = self.tok
        if token.kind == "field":
            self.advance()
            return FieldRef(token.text[1:-1].strip())
        if token.kind == "word" and token.upper not in ("FROM", "WHERE", "AND", "OR", "ORDER"):
            self.advance()
            return FieldRef(token.text)
        raise syntax_error("Expecting field name.", token.text or "<end of statement>")

    def sort_key(self) -> tuple[FieldRef, bool]:
        ref = self.field()
        descending = False
        if self.at_word("ASC", "DESC"):
            descending = self.advance().upper == "DESC"
        return ref, descending

    def expr(self) -> Any:
        node = self.term()
        operands = [node]
        while self.at_word("OR"):
            self.advance()
            operands.append(self.term())
        return operands[0] if len(operands) == 1 else BoolOp("OR", operands)

    def term(self) -> Any:
        operands = [self.factor()]
        while self.at_word("AND"):
            self.advance()
            operands.append(self.factor())
        return operands[0] if len(operands) == 1 else BoolOp("AND", operands)

    def factor(self) -> Any:
        if self.at_word("NOT"):
            self.advance()
            return BoolOp("NOT", [self.factor()])
        if self.tok.text == "(":
            self.advance()
            node = self.expr()
            if self.tok.text != ")":
                raise syntax_error("Expecting ')'.", self.tok.text or "<end of statement>")
            self.advance()
            return node
        return self.condition()

    def condition(self) -> Condition:
        start = self.tok.start
        ref = self.field()
        negated = False
        token = self.tok
        if token.kind == "op" and token.text in ("=", "<>", ">", ">=", "<", "<="):
            operator = self.advance().text
        elif self.at_word("IS"):
            self.advance()
            if self.at_word("NOT"):
                self.advance()
                negated = True
            self.expect_word("EMPTY", "Expecting 'EMPTY'.")
            return Condition(ref, "IS EMPTY", None, negated, self.text[start : self.tok.start])
        else:
            if self.at_word("NOT"):
                self.advance()
                negated = True
            if not self.at_word("CONTAINS", "IN", "UNDER"):
                raise syntax_error(
                    "Expecting comparison operator.", self.tok.text or "<end of statement>"
                )
            operator = self.advance().upper
            if operator == "CONTAINS" and self.at_word("WORDS"):
                self.advance()
                operator = "CONTAINS WORDS"
        if operator == "IN":
            value: Any = self.value_list()
        else:
            value = self.value()
        text = self.text[start : self.tokens[self.pos - 1].end].strip()
        return Condition(ref, operator, value, negated, text)

    def value_list(self) -> list[Any]:
        if self.tok.text != "(":
            raise syntax_error("Expecting '('.", self.tok.text or "<end of statement>")
        self.advance()
        values = [self.value()]
        while self.tok.text == ",":
            self.advance()
            values.append(self.value())
        if self.tok.text != ")":
            raise syntax_error("Expecting ')'.", self.tok.text or "<end of statement>")
        self.advance()
        return values

    def value(self) -> Any:
        token = self.tok
        if token.kind == "string":
            self.advance()
            return _unquote(token.text)
        if token.kind == "number":
            self.advance()
            return float(token.text) if "." in token.text else int(token.text)
        if token.kind == "op" and token.text == "-" and self.tokens[self.pos + 1].kind == "number":
            self.advance()
            number = self.advance().text
            return -(float(number) if "." in number else int(number))
        if token.kind == "macro":
            self.advance()
            macro = Macro(token.text[1:].lower())
            if self.tok.kind == "op" and self.tok.text in ("+", "-"):
                sign = -1 if self.advance().text == "-" else 1
                if self.tok.kind != "number":
                    raise syntax_error("Expecting a number.", self.tok.text or "<end>")
                macro.offset = sign * float(self.advance().text)
            return macro
        if token.kind == "field":
            return self.field()
        raise syntax_error("Expecting a value.", token.text or "<end of statement>")


def _unquote(text: str) -> str:
    quote = text[0]
    return text[1:-1].replace(quote * 2, quote)


def parse(text: str) -> Query:
    """Parse a WIQL statement and resolve its field names (TF51006 / TF51005 on error)."""
    query = _Parser(text).parse()
    for ref in _field_refs(query):
        ref.definition = field_by_name(ref.written)
        if ref.definition is None:
            raise validation_error(
                "TF51005: The query references a field that does not exist. The error is "
                f"caused by «[{ref.written}]»."
            )
    return query


def _field_refs(query: Query) -> list[FieldRef]:
    refs = list(query.columns) + [ref for ref, _ in query.order]
    stack = [query.where] if query.where is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, BoolOp):
            stack.extend(node.operands)
        elif isinstance(node, Condition):
            refs.append(node.field)
            values = node.value if isinstance(node.value, list) else [node.value]
            refs.extend(v for v in values if isinstance(v, FieldRef))
    return refs


@dataclass
class Context:
    """What macros and comparisons need to know about the request."""

    project: str | None
    me: Identity
    time_precision: bool
    now: datetime


def _resolve_macro(macro: Macro, ctx: Context, cond: Condition) -> Any:
    if macro.name == "project":
        if ctx.project is None:
            raise validation_error(
                "TF51011: The @project macro can only be used in the context of a project."
            )
        return ctx.project
    if macro.name == "today":
        midnight = ctx.now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight + timedelta(days=macro.offset)
    if macro.name == "me":
        return ctx.me.as_string()
    raise validation_error(
        f"TF51011: The macro '@{macro.name}' is not supported by the sandbox (in «{cond.text}»)."
    )


def _compile_value(value: Any, cond: Condition, ctx: Context) -> Any:
    """Turn a literal into the comparable form for the condition's field."""
    if isinstance(value, FieldRef):
        return value
    if isinstance(value, Macro):
        value = _resolve_macro(value, ctx, cond)
    kind = cond.field.definition.kind if cond.field.definition else "string"
    if kind == "dateTime":
        if isinstance(value, datetime):
            return value if ctx.time_precision else value.date()
        text = str(value)
        if text == "":
            return None
        if not ctx.time_precision and has_time_component(text):
            raise validation_error(
                "You cannot supply a time with the date when running a query using date "
                f"precision. The error is caused by «{cond.text}»."
            )
        try:
            moment = parse_date(text)
        except ValueError:
            raise validation_error(
                f"TF51008: The value '{text}' is not a valid date. The error is caused by "
                f"«{cond.text}»."
            ) from None
        return moment if ctx.time_precision else moment.date()
    if kind == "integer":
        if str(value).strip() == "":
            return None
        try:
            return int(float(str(value)))
        except ValueError:
            raise validation_error(
                f"TF51008: The value '{value}' is not a valid number. The error is caused by "
                f"«{cond.text}»."
            ) from None
    return str(value)


def _compile(node: Any, ctx: Context) -> Any:
    if isinstance(node, BoolOp):
        return BoolOp(node.op, [_compile(n, ctx) for n in node.operands])
    if isinstance(node, Condition):
        if isinstance(node.value, list):
            value: Any = [_compile_value(v, node, ctx) for v in node.value]
        elif node.value is None:
            value = None
        else:
            value = _compile_value(node.value, node, ctx)
        return Condition(node.field, node.operator, value, node.negated, node.text)
    return node


def _normalized(fdef: FieldDef, raw: Any, ctx: Context) -> Any:
    if raw in (None, ""):
        return None
    if fdef.kind == "dateTime":
        moment = parse_date(str(raw))
        return moment if ctx.time_precision else moment.date()
    if fdef.kind == "integer":
        return int(raw)
    return str(raw)


def _text_equal(fdef: FieldDef, actual: str, expected: str) -> bool:
    if fdef.kind == "identity":
        ident = Identity.parse(actual)
        return expected.lower() in (
            actual.lower(),
            ident.display_name.lower(),
            ident.unique_name.lower(),
        )
    return actual.lower() == expected.lower()


def _compare(fdef: FieldDef, actual: Any, op: str, expected: Any) -> bool:
    if op in ("=", "<>"):
        if expected is None or actual is None:
            equal = actual is None and expected is None
        elif isinstance(actual, str):
            equal = _text_equal(fdef, actual, str(expected))
        else:
            equal = actual == expected
        return equal if op == "=" else not equal
    if actual is None or expected is None:
        return False
    left, right = (
        (actual.lower(), str(expected).lower()) if isinstance(actual, str) else (actual, expected)
    )
    try:
        return {">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[op]
    except TypeError:
        return False


def _matches(node: Any, values: dict[str, Any], ctx: Context) -> bool:
    if isinstance(node, BoolOp):
        if node.op == "AND":
            return all(_matches(n, values, ctx) for n in node.operands)
        if node.op == "OR":
            return any(_matches(n, values, ctx) for n in node.operands)
        return not _matches(node.operands[0], values, ctx)
    cond: Condition = node
    fdef = cond.field.definition
    assert fdef is not None
    actual = _normalized(fdef, values.get(fdef.ref), ctx)

    def resolve(expected: Any) -> Any:
        if isinstance(expected, FieldRef) and expected.definition is not None:
            return _normalized(expected.definition, values.get(expected.definition.ref), ctx)
        return expected

    op = cond.operator
    if op == "IS EMPTY":
        result = actual is None
    elif op == "IN":
        result = any(_compare(fdef, actual, "=", resolve(v)) for v in cond.value)
    elif op == "UNDER":
        wanted = str(resolve(cond.value) or "").lower().strip("\\")
        text = (actual or "").lower()
        result = text == wanted or text.startswith(wanted + "\\")
    elif op in ("CONTAINS", "CONTAINS WORDS"):
        wanted = str(resolve(cond.value) or "").lower()
        text = str(actual or "")
        if fdef.ref == "System.Tags":
            result = wanted in {t.strip().lower() for t in text.split(";") if t.strip()}
        elif op == "CONTAINS WORDS":
            result = re.search(rf"\b{re.escape(wanted)}\b", text.lower()) is not None
        else:
            result = wanted in text.lower()
    else:
        return _compare(fdef, actual, op, resolve(cond.value))
    return not result if cond.negated else result


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (1, "")
    if isinstance(value, str):
        return (0, value.lower())
    return (0, value)


def run(query: Query, rows: list[dict[str, Any]], ctx: Context) -> list[dict[str, Any]]:
    """Return the rows (full field maps) matching `query`, in its ORDER BY order."""
    where = _compile(query.where, ctx) if query.where is not None else None
    found = [row for row in rows if where is None or _matches(where, row, ctx)]
    found.sort(key=lambda row: row["System.Id"])
    for ref, descending in reversed(query.order):
        fdef = ref.definition
        assert fdef is not None

        def key(row: dict[str, Any], f: FieldDef = fdef) -> tuple[int, Any]:
            return _sort_key(_normalized(f, row.get(f.ref), ctx))

        found.sort(key=key, reverse=descending)
    return found
