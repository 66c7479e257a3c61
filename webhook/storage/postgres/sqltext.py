"""The shared SQL's parameter style, translated to psycopg's.

The repositories write parameters the SQLite way (`?` by position, `:name` by name); psycopg
wants `%s` and `%(name)s`, and reads every other `%` as the start of a placeholder, so a literal
`%` becomes `%%`. Text inside single-quoted literals, double-quoted identifiers and comments is
left as it is apart from that doubling, and `::type` casts are not parameters. Dollar-quoted
strings and E'' escapes are not understood: the shared SQL uses neither.
"""

from __future__ import annotations

import re
from functools import lru_cache

# One token at a time: a quoted literal or identifier, a comment, a cast, a placeholder, a `%`,
# or a run of anything else. Unterminated quotes and comments run to the end of the text.
_TOKEN = re.compile(
    r"""
      (?P<quoted>'[^']*(?:'|$)|"[^"]*(?:"|$))
    | (?P<comment>--[^\n]*|/\*.*?(?:\*/|$))
    | (?P<cast>::+)
    | (?P<named>:[A-Za-z_][A-Za-z0-9_]*)
    | (?P<positional>\?)
    | (?P<percent>%)
    | (?P<other>[^'"\-/:?%]+|.)
    """,
    re.VERBOSE | re.DOTALL,
)


@lru_cache(maxsize=4096)
def to_psycopg(sql: str) -> str:
    """`sql` with `?` → `%s`, `:name` → `%(name)s` and every literal `%` → `%%`.

    Raises ValueError when the text mixes `?` and `:name` (psycopg cannot bind both at once).
    Results are cached: the repositories send the same few hundred statement texts.
    """
    out: list[str] = []
    positional = named = False
    for match in _TOKEN.finditer(sql):
        kind, text = match.lastgroup, match.group()
        if kind == "positional":
            positional = True
            out.append("%s")
        elif kind == "named":
            named = True
            out.append(f"%({text[1:]})s")
        elif kind in ("quoted", "comment", "percent"):
            out.append(text.replace("%", "%%"))
        else:
            out.append(text)
    if positional and named:
        raise ValueError(f"SQL mixes ? and :name parameters: {sql[:200]!r}")
    return "".join(out)
