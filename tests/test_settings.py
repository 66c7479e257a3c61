"""Settings.from_env: WEBHOOK_ENTRA_AUTHORITY is checked at start, as organization URLs are."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_settings
from webhook.settings import SettingsError


@pytest.mark.parametrize(
    ("authority", "hosts"),
    [
        ("http://login.microsoftonline.com", ""),  # the input: plain http
        ("http://login.microsoftonline.com", "login.microsoftonline.com"),  # listed, not loopback
        ("http://127.0.0.1:8765", ""),  # loopback, not listed
        ("http://127.0.0.1:8765", "127.0.0.1"),  # listed without its port
        ("https://user:secret@login.microsoftonline.com", ""),
        ("https://login.microsoftonline.com/?tenant=x", ""),
        ("https://login.microsoftonline.com/#x", ""),
        ("https:///common", ""),
        ("ftp://login.microsoftonline.com", ""),
    ],
)
def test_a_bad_entra_authority_is_refused_naming_the_variable(
    tmp_path: Path, authority: str, hosts: str
) -> None:
    with pytest.raises(SettingsError) as info:
        make_settings(tmp_path, WEBHOOK_ENTRA_AUTHORITY=authority, WEBHOOK_ALLOWED_ORG_HOSTS=hosts)
    message = str(info.value)
    assert message.startswith("WEBHOOK_ENTRA_AUTHORITY") and "\n" not in message
    assert "secret" not in message


@pytest.mark.parametrize(
    ("authority", "hosts", "expected"),
    [
        ("", "", "https://login.microsoftonline.com"),
        ("https://login.microsoftonline.us/", "", "https://login.microsoftonline.us"),
        ("http://127.0.0.1:8765/entra/", "127.0.0.1:8765", "http://127.0.0.1:8765/entra"),
        ("http://localhost:9000", "localhost:9000,dev.example", "http://localhost:9000"),
        ("http://[::1]:8765", "[::1]:8765", "http://[::1]:8765"),
    ],
)
def test_a_good_entra_authority_is_kept_normalized(
    tmp_path: Path, authority: str, hosts: str, expected: str
) -> None:
    settings = make_settings(
        tmp_path, WEBHOOK_ENTRA_AUTHORITY=authority, WEBHOOK_ALLOWED_ORG_HOSTS=hosts
    )
    assert settings.entra_authority == expected


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://nobody:p@ssS3cretPW@127.0.0.1:5432/x",  # an @ not percent-encoded
        "postgresql://u:S3cretPW@[::1:5432/x",  # does not even split
        "postgresql://u:S3cretPW@h:99999/x",
        "postgresql://u@h:99999/x?password=S3cretPW",
        "mysql://u:S3cretPW@h/x",
    ],
)
def test_a_bad_database_url_is_refused_without_showing_its_password(
    tmp_path: Path, url: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        make_settings(tmp_path, WEBHOOK_DATABASE_URL=url)
    assert str(caught.value).startswith("WEBHOOK_DATABASE_URL is invalid")
    assert "S3cretPW" not in str(caught.value) and "ssS3cret" not in str(caught.value)


def test_database_urls_choose_the_engine(tmp_path: Path) -> None:
    relative = make_settings(tmp_path, WEBHOOK_DATABASE_URL="sqlite:///var/x.db")
    assert (relative.db_path, relative.database_url) == (Path("var/x.db"), None)
    pg = make_settings(tmp_path, WEBHOOK_DATABASE_URL="postgresql://u:S3cretPW@h:5432/db")
    assert pg.database_url == "postgresql://u:S3cretPW@h:5432/db"
    assert pg.storage_label == "postgresql://u:***@h:5432/db"
    assert "S3cretPW" not in repr(pg)
