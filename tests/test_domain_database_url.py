"""Database URLs (SPEC 2): what is accepted, and that no message ever shows a password."""

from __future__ import annotations

import pytest

from webhook.domain.database_url import DatabaseUrlError, parse_database_url, redact_url


@pytest.mark.parametrize(
    ("raw", "engine", "path"),
    [
        ("sqlite:///var/webhook.db", "sqlite", "var/webhook.db"),  # relative
        ("sqlite:////srv/ado/webhook.db", "sqlite", "/srv/ado/webhook.db"),  # absolute
        ("postgresql://u:pw@db.internal:5432/adowh", "postgresql", None),
        ("postgres://db/adowh", "postgresql", None),
        ("postgresql://u:p%40ss%2Fw@[::1]:5432/adowh", "postgresql", None),
        ("postgresql:///adowh?host=/run/postgresql", "postgresql", None),
    ],
)
def test_good_urls(raw: str, engine: str, path: str | None) -> None:
    parsed = parse_database_url(raw)
    assert (parsed.engine, parsed.path) == (engine, path)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("mysql://u:S3cretPW@h/db", "must start with"),
        ("postgresql://u:S3cretPW@h/", "names no database"),
        ("postgresql://nobody:p@ssW0rdS3cretPW@127.0.0.1:5432/x", "percent-encoded"),
        ("postgresql://nobody:pa/ssS3cretPW@127.0.0.1:5432/x", "percent-encoded"),
        ("postgresql://u:S3cretPW@[::1:5432/x", "not a valid URL"),
        ("postgresql://u:S3cretPW@h:99999/x", "from 1 to 65535"),
        ("postgresql://u:S3cretPW@h:port/x", "from 1 to 65535"),
        ("sqlite://relative.db", "sqlite:///"),
        ("postgresql://u:S3cretPW%zz@127.0.0.1:5432/x", "write % as %25"),
    ],
)
def test_bad_urls_say_why_without_the_password(raw: str, says: str) -> None:
    with pytest.raises(DatabaseUrlError) as caught:
        parse_database_url(raw)
    assert says in str(caught.value)
    assert "S3cretPW" not in str(caught.value) and "ssW0rd" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:S3cretPW@h:5432/db", "postgresql://u:***@h:5432/db"),
        (
            "postgresql://u@h/db?password=S3cretPW&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("postgresql://nobody:p@S3cretPW@h/x", "postgresql://nobody:***@h/x"),
        ("postgresql://u:S3cretPW@[::1:5432/x", "postgresql://u:***@[::1:5432/x"),
        ("postgresql://u:pa/ssS3cretPW@127.0.0.1:5432/x", "postgresql://u:***@127.0.0.1:5432/x"),
        ("postgresql://u:pa#ssS3cretPW@h/x", "postgresql://u:***@h/x"),
        ("postgresql://u:pa?ssS3cretPW@h/x", "postgresql://u:***@h/x"),
        (
            "postgresql://u@h/db?sslpassword=S3cretPW&password=S3cretPW",
            "postgresql://u@h/db?sslpassword=***&password=***",
        ),
        ("postgresql://h/db", "postgresql://h/db"),
    ],
)
def test_redaction_hides_every_password_form(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_password_is_known_in_either_place() -> None:
    assert parse_database_url("postgresql://u:S3cretPW@h/db").password == "S3cretPW"
    assert parse_database_url("postgresql://u@h/db?password=S3cretPW").password == "S3cretPW"
    assert parse_database_url("postgresql://u@h/db").password is None
