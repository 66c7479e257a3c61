"""SQLite's spelling of the SQL fragments that differ between engines (sql.db.Dialect)."""

from __future__ import annotations


class SqliteDialect:
    """SQLite 3.38+ fragments: scalar max(), the JSON1 functions."""

    name = "sqlite"

    def greatest(self, a: str, b: str) -> str:
        """The larger of two SQL expressions: SQLite's scalar max(a, b)."""
        return f"max({a}, {b})"

    def json_array_length(self, column: str) -> str:
        """The length of the JSON array text in `column`."""
        return f"json_array_length({column})"

    def json_array_head(self, column: str, n: int) -> str:
        """The first `n` elements of the JSON array text in `column`, as JSON array text."""
        return (
            "(SELECT json_group_array(json(a.value)) FROM"
            f" (SELECT value FROM json_each({column}) LIMIT {int(n)}) a)"
        )

    def skip_locked(self, alias: str) -> str:
        """Nothing: SQLite's writers are serialized, a claim never meets another's locks."""
        return ""
