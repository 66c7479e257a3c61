"""Tests for strict organization URL parsing (webhook.domain.orgurl)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from webhook.domain.orgurl import OrgUrl, OrgUrlError, parse_allowed_hosts, parse_organization_url

SANDBOX = frozenset({"127.0.0.1:8765", "localhost:9000", "[::1]:7000", "ado.internal.example"})


@pytest.mark.parametrize(
    ("url", "canonical", "organization", "host"),
    [
        ("https://dev.azure.com/acme", "https://dev.azure.com/acme", "acme", "dev.azure.com"),
        ("https://dev.azure.com/acme/", "https://dev.azure.com/acme", "acme", "dev.azure.com"),
        ("HTTPS://DEV.Azure.COM/Acme", "https://dev.azure.com/acme", "acme", "dev.azure.com"),
        ("https://dev.azure.com:443/acme", "https://dev.azure.com/acme", "acme", "dev.azure.com"),
        ("https://dev.azure.com/a", "https://dev.azure.com/a", "a", "dev.azure.com"),
        (
            "https://dev.azure.com/my_org.name-2",
            "https://dev.azure.com/my_org.name-2",
            "my_org.name-2",
            "dev.azure.com",
        ),
        (
            "https://acme.visualstudio.com",
            "https://acme.visualstudio.com",
            "acme",
            "acme.visualstudio.com",
        ),
        (
            "https://acme.visualstudio.com/",
            "https://acme.visualstudio.com",
            "acme",
            "acme.visualstudio.com",
        ),
        (
            "https://Acme.VisualStudio.com/DefaultCollection",
            "https://acme.visualstudio.com",
            "acme",
            "acme.visualstudio.com",
        ),
        (
            "https://acme.visualstudio.com/defaultcollection/",
            "https://acme.visualstudio.com",
            "acme",
            "acme.visualstudio.com",
        ),
    ],
)
def test_accepts_public_forms(url: str, canonical: str, organization: str, host: str) -> None:
    parsed = parse_organization_url(url)
    assert parsed == OrgUrl(canonical, organization, host)
    assert parsed.api_base == canonical
    assert not parsed.api_base.endswith("/")


@pytest.mark.parametrize(
    ("url", "canonical", "host"),
    [
        ("http://127.0.0.1:8765/sandbox", "http://127.0.0.1:8765/sandbox", "127.0.0.1:8765"),
        ("http://localhost:9000/org1/", "http://localhost:9000/org1", "localhost:9000"),
        ("http://[::1]:7000/org1", "http://[::1]:7000/org1", "[::1]:7000"),
        ("https://127.0.0.1:8765/sandbox", "https://127.0.0.1:8765/sandbox", "127.0.0.1:8765"),
        (
            "https://ado.internal.example/org1",
            "https://ado.internal.example/org1",
            "ado.internal.example",
        ),
        (
            "https://ADO.internal.example:443/org1",
            "https://ado.internal.example/org1",
            "ado.internal.example",
        ),
    ],
)
def test_accepts_listed_extra_hosts(url: str, canonical: str, host: str) -> None:
    parsed = parse_organization_url(url, extra_hosts=SANDBOX)
    assert parsed.canonical == canonical
    assert parsed.host == host
    assert parsed.api_base == canonical


def test_extra_hosts_are_compared_case_insensitively() -> None:
    parsed = parse_organization_url(
        "http://LOCALHOST:9000/x", extra_hosts=frozenset({"LocalHost:9000"})
    )
    assert parsed.canonical == "http://localhost:9000/x"


def test_bare_ipv6_in_allow_list_means_the_bracketed_host() -> None:
    parsed = parse_organization_url("http://[::1]/x", extra_hosts=frozenset({"::1"}))
    assert parsed.canonical == "http://[::1]/x"
    # "::1:7000" is itself an IPv6 address, not [::1] with port 7000.
    with pytest.raises(OrgUrlError):
        parse_organization_url("http://[::1]:7000/x", extra_hosts=frozenset({"::1:7000"}))


def test_listing_dev_azure_com_changes_nothing() -> None:
    parsed = parse_organization_url(
        "https://acme.visualstudio.com", extra_hosts=frozenset({"acme.visualstudio.com"})
    )
    assert parsed.canonical == "https://acme.visualstudio.com"


@pytest.mark.parametrize(
    "url",
    [
        # look-alike hosts and allow-list bypass tricks
        "https://dev.azure.com.evil.com/x",
        "https://evil.com/dev.azure.com/x",
        "https://evil.com#@dev.azure.com/x",
        "https://evil.com?@dev.azure.com/x",
        "https://evil.com\\@dev.azure.com/x",
        "https://user@dev.azure.com/x",
        "https://user:pass@dev.azure.com/x",
        "https://dev.azure.com@evil.com/x",
        "https://evil.com\\.dev.azure.com/x",
        "https://dev.azure.com\\x",
        "https://dev.azure.com/x\\y",
        "https://devXazure.com/x",
        "https://dev.azure.com./x",
        "https://xdev.azure.com/x",
        "https://azure.com/x",
        "https://visualstudio.com",
        "https://evilvisualstudio.com",
        "https://acme.visualstudio.com.evil.com",
        "https://app.vssps.visualstudio.com",
        "https://-acme.visualstudio.com",
        # ports
        "https://dev.azure.com:8443/x",
        "https://dev.azure.com:0443/x",
        "https://dev.azure.com:/x",
        "https://dev.azure.com:99999/x",
        "https://dev.azure.com:+443/x",
        "https://acme.visualstudio.com:444",
        # whitespace and control characters
        " https://dev.azure.com/x",
        "https://dev.azure.com/x ",
        "https://dev.azure.com/x\n",
        "https://dev.azure.com/x\t",
        "https://dev.azure.com/a b",
        "https://dev.azure.com/x\x00",
        "https:// dev.azure.com/x",
        # percent-encoding
        "https://dev.azure.com/x%2Fy",
        "https://dev.azure.com/x%2fy",
        "https://dev.azure.com/%61cme",
        "https://dev.azure.com%2Fx",
        "https://dev%2Eazure.com/x",
        # IP literals and numeric hosts
        "https://[::1]/x",
        "https://[::1]:7000/x",
        "https://127.0.0.1/x",
        "https://2130706433/x",
        "https://0x7f000001/x",
        "https://0177.0.0.1/x",
        "https://[0:0:0:0:0:0:0:1]:7000/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://[::1/x",
        # IDNA
        "https://dev.azure.com/acmé",
        "https://dév.azure.com/x",
        "https://xn--dv-bja.azure.com/x",
        # scheme
        "http://dev.azure.com/x",
        "ftp://dev.azure.com/x",
        "javascript://dev.azure.com/x",
        "//dev.azure.com/x",
        "dev.azure.com/x",
        "https:/dev.azure.com/x",
        "https:///dev.azure.com/x",
        "https://",
        "",
        # query / fragment
        "https://dev.azure.com/x?",
        "https://dev.azure.com/x?a=b",
        "https://dev.azure.com/x#",
        "https://dev.azure.com/x#frag",
        "https://acme.visualstudio.com?x",
        # paths
        "https://dev.azure.com",
        "https://dev.azure.com/",
        "https://dev.azure.com//x",
        "https://dev.azure.com/x//",
        "https://dev.azure.com/x/project",
        "https://dev.azure.com/x/_apis",
        "https://dev.azure.com/.",
        "https://dev.azure.com/..",
        "https://dev.azure.com/-x",
        "https://dev.azure.com/x-",
        "https://dev.azure.com/a+b",
        "https://dev.azure.com/" + "a" * 51,
        "https://acme.visualstudio.com/project",
        "https://acme.visualstudio.com/DefaultCollection/project",
        "https://acme.visualstudio.com//",
        "https://dev.azure.com/" + "a" * 3000,
    ],
)
def test_rejects(url: str) -> None:
    with pytest.raises(OrgUrlError) as info:
        parse_organization_url(url)
    assert str(info.value)  # a human-readable reason


@pytest.mark.parametrize(
    "url",
    [
        # http only for listed loopback hosts
        "http://ado.internal.example/org1",
        "http://127.0.0.1:8766/sandbox",
        "http://127.0.0.1/sandbox",
        "http://localhost/org",
        "http://[::1]/org",
        # listed host:port does not allow other ports or hosts
        "https://127.0.0.1:8766/sandbox",
        "https://ado.internal.example:8443/org1",
        "https://evil.ado.internal.example/org1",
        "https://ado.internal.example.evil.com/org1",
        # extra hosts still need exactly one org segment
        "http://127.0.0.1:8765",
        "http://127.0.0.1:8765/",
        "http://127.0.0.1:8765/org/project",
        "https://user@ado.internal.example/org1",
        "https://ado.internal.example/org1#x",
        "http://2130706433:8765/sandbox",
        "http://[0:0:0:0:0:0:0:1]:7000/org1",
    ],
)
def test_rejects_with_extra_hosts(url: str) -> None:
    with pytest.raises(OrgUrlError):
        parse_organization_url(url, extra_hosts=SANDBOX)


def test_http_rejected_for_listed_non_loopback_host() -> None:
    with pytest.raises(OrgUrlError, match="https"):
        parse_organization_url("http://ado.internal.example/x", extra_hosts=SANDBOX)


def test_error_is_a_value_error_with_useful_text() -> None:
    with pytest.raises(ValueError, match=r"dev\.azure\.com"):
        parse_organization_url("https://evil.com/x")
    with pytest.raises(OrgUrlError, match="user name"):
        parse_organization_url("https://user@dev.azure.com/x")
    with pytest.raises(OrgUrlError, match="port 8443"):
        parse_organization_url("https://dev.azure.com:8443/x")
    with pytest.raises(OrgUrlError, match="project"):
        parse_organization_url("https://dev.azure.com/acme/Project")


def test_rejects_non_string() -> None:
    with pytest.raises(OrgUrlError):
        parse_organization_url(None)  # type: ignore[arg-type]


def test_canonical_form_is_a_fixed_point() -> None:
    for url in ("https://dev.azure.com/Acme/", "https://acme.visualstudio.com/DefaultCollection"):
        once = parse_organization_url(url)
        assert parse_organization_url(once.canonical) == once
    sandbox = parse_organization_url("http://127.0.0.1:8765/Org/", extra_hosts=SANDBOX)
    assert parse_organization_url(sandbox.canonical, extra_hosts=SANDBOX) == sandbox


def test_parse_allowed_hosts() -> None:
    assert parse_allowed_hosts("") == frozenset()
    assert parse_allowed_hosts(" 127.0.0.1:8765, LocalHost ,,[::1]:7000 ") == frozenset(
        {"127.0.0.1:8765", "localhost", "[::1]:7000"}
    )
    for bad in ("http://x", "x/y", "user@x", "x:0", "x:abc", "a b", "x%2f"):
        with pytest.raises(OrgUrlError):
            parse_allowed_hosts(bad)


def test_module_is_pure_stdlib() -> None:
    source = Path(__file__).parents[1] / "webhook" / "domain" / "orgurl.py"
    tree = ast.parse(source.read_text())
    imported = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__", "re", "dataclasses"}
