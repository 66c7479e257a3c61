"""Database URLs (SPEC 2, `WEBHOOK_DATABASE_URL` and `copy-db --to`): parsing, and hiding
their passwords in every message.

`sqlite:///relative/path.db` (three slashes: relative to the working directory) or
`sqlite:////absolute/path.db` names an SQLite file; `postgresql://user:password@host:port/db`
(or `postgres://`) a PostgreSQL database, in libpq's URL form: characters such as `@`, `/` and
`:` inside the user name or password must be percent-encoded (`%40`, `%2F`, `%3A`), or the
URL means something else (libpq would take part of the password for the host, and print it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import SplitResult, urlsplit

Engine = Literal["sqlite", "postgresql"]

EXAMPLE_POSTGRES = "postgresql://user:password@host:port/dbname"
# password=... and sslpassword=... in a libpq URL's query string (up to the next & or the end).
_QUERY_SECRET = re.compile(r"(?i)([?&](?:ssl)?password=)[^&#]*")
_QUERY_PASSWORD = re.compile(r"(?i)[?&]password=([^&#]*)")
# A % not followed by two hex digits: libpq refuses it, quoting the text around it.
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class DatabaseUrlError(ValueError):
    """A database URL that cannot be used; the message says why and never holds a password."""


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed database URL: an SQLite file (`path`) or a PostgreSQL URL (`url`, as given)."""

    engine: Engine
    path: str | None = None
    url: str | None = field(default=None, repr=False)

    @property
    def password(self) -> str | None:
        """The PostgreSQL password the URL carries (user info or `password=`), if any."""
        if self.url is None:
            return None
        parts = urlsplit(self.url)
        if parts.password:
            return parts.password
        found = _QUERY_PASSWORD.search(self.url)
        return found.group(1) if found and found.group(1) else None

    @property
    def label(self) -> str:
        """For messages and logs: the file, or the URL with its password as `***`."""
        return self.path if self.path is not None else redact_url(self.url or "")


def redact_url(url: str) -> str:
    """`url` with any password (user info, `password=` or `sslpassword=`) replaced by `***`.

    Never raises, and hides a password however malformed the URL: the user information is
    taken to end at the LAST `@` (a password may hold an unencoded `/`, `?`, `#` or `@`), so
    `postgresql://u:pa/ss@h/db` shows as `postgresql://u:***@h/db`.
    """
    text = _QUERY_SECRET.sub(r"\1***", url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    user_info, at, host = rest.rpartition("@")
    if not at or ":" not in user_info:
        return text
    user = user_info.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def hide_password(text: str, url: str) -> str:
    """`text` (a driver's message about `url`, say) with `url`'s password replaced by `***`."""
    try:
        password = DatabaseUrl("postgresql", url=url).password
    except ValueError:  # a URL that does not split names no password urlsplit can find
        password = None
    return text.replace(password, "***") if password else text


def parse_database_url(raw: str) -> DatabaseUrl:
    """Parse `raw` (see the module docstring).

    Raises DatabaseUrlError naming the problem: another scheme, an SQLite URL without a path,
    a PostgreSQL URL that does not split, has an unencoded `@` or `/` in its user information,
    a port that is not 1 to 65535, or no database name.
    """
    text = raw.strip()
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if scheme == "sqlite" and sep:
        if not rest.startswith("/") or not rest[1:]:
            raise DatabaseUrlError(
                "write SQLite as sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        return DatabaseUrl("sqlite", path=rest[1:])
    if scheme in ("postgresql", "postgres") and sep:
        return DatabaseUrl("postgresql", url=_checked_postgres(text, rest))
    raise DatabaseUrlError(
        f"it must start with sqlite:/// or postgresql:// (got {redact_url(text)!r})"
    )


def _checked_postgres(text: str, rest: str) -> str:
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    if authority.count("@") > 1 or ("@" not in authority and "@" in rest.split("?", 1)[0]):
        raise DatabaseUrlError(
            "its user name or password holds a character that must be percent-encoded "
            "(@ as %40, / as %2F, : as %3A)"
        )
    if _BAD_PERCENT.search(authority):
        raise DatabaseUrlError(
            "its user name or password holds a % that does not start a percent-encoding: "
            "write % as %25"
        )
    try:
        parts: SplitResult = urlsplit(text)
    except ValueError:
        raise DatabaseUrlError(f"it is not a valid URL; write {EXAMPLE_POSTGRES}") from None
    try:
        port = parts.port
    except ValueError:
        raise DatabaseUrlError("its port must be a number from 1 to 65535") from None
    if port == 0:
        raise DatabaseUrlError("its port must be a number from 1 to 65535")
    if not parts.path.strip("/") and "dbname=" not in parts.query:
        raise DatabaseUrlError(f"it names no database; write {EXAMPLE_POSTGRES}")
    return text
