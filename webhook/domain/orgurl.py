"""Strict parsing of Azure DevOps organization URLs into one canonical form.

Only two public shapes exist on Azure DevOps Services: ``https://dev.azure.com/{org}`` and the
legacy ``https://{org}.visualstudio.com``. Anything else (a stand-in, a proxy) must be named
exactly in ``WEBHOOK_ALLOWED_ORG_HOSTS`` and uses the dev.azure.com form. The parser is
deliberately hand-written: ``urllib.parse`` is lenient about backslashes, whitespace, userinfo
and odd hosts, which is how allow-lists get bypassed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["OrgUrl", "OrgUrlError", "parse_allowed_hosts", "parse_organization_url"]

DEV_AZURE_HOST = "dev.azure.com"
VISUALSTUDIO_SUFFIX = ".visualstudio.com"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]", "localhost"})
DEFAULT_PORTS = {"https": 443, "http": 80}
MAX_URL_LENGTH = 2048

# Organization names: letters, digits, '-', '_', '.'; must start and end with a letter or digit.
_ORG_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,48}[A-Za-z0-9])?")
# {org}.visualstudio.com: the org is one DNS label.
_VS_ORG_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?")
# Linear even with search(): the scheme starts where a run of scheme characters starts and,
# like the authority, is matched possessively (the character after each run ends it anyway).
_URL_RE = re.compile(
    r"(?P<scheme>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*+)://(?P<authority>[^/?#]*+)"
    r"(?P<rest>.*)",
    re.S,
)
_HOSTNAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*")
_IPV6_RE = re.compile(r"\[[0-9a-f:.]+\]")
_PORT_RE = re.compile(r"[1-9][0-9]{0,4}")


class OrgUrlError(ValueError):
    """The organization URL is not acceptable; the message says why in plain words."""


@dataclass(frozen=True)
class OrgUrl:
    canonical: str
    organization: str
    host: str

    @property
    def api_base(self) -> str:
        """Return the base URL that REST paths (``/_apis/...``) are appended to."""
        return self.canonical

    def __str__(self) -> str:
        return self.canonical


def parse_organization_url(url: str, *, extra_hosts: frozenset[str] = frozenset()) -> OrgUrl:
    """Parse an organization URL strictly and return it in canonical form."""
    if not isinstance(url, str):
        raise OrgUrlError("the organization URL must be text")
    if not url:
        raise OrgUrlError("the organization URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise OrgUrlError("the organization URL is too long")
    if not url.isascii():
        raise OrgUrlError(
            "the organization URL contains non-ASCII characters; write it as plain ASCII "
            "(e.g. https://dev.azure.com/your-org)"
        )
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise OrgUrlError("the organization URL contains spaces or control characters")
    if "\\" in url:
        raise OrgUrlError("the organization URL contains a backslash")
    if "%" in url:
        raise OrgUrlError("the organization URL contains percent-encoded characters")

    match = _URL_RE.fullmatch(url)
    if match is None:
        raise OrgUrlError(
            "the organization URL must look like https://dev.azure.com/your-org "
            "or https://your-org.visualstudio.com"
        )
    scheme = match["scheme"].lower()
    authority = match["authority"]
    rest = match["rest"]
    if scheme not in DEFAULT_PORTS:
        raise OrgUrlError(f"the organization URL must use https, not {scheme}")
    if "?" in rest or "#" in rest:
        raise OrgUrlError("the organization URL must not have a query (?...) or fragment (#...)")
    path = rest
    if "@" in authority:
        raise OrgUrlError("the organization URL must not contain a user name or password (@)")
    if not authority:
        raise OrgUrlError("the organization URL has no host")

    host, port = _split_authority(authority)
    default_port = DEFAULT_PORTS[scheme]
    host_key = host if port is None or port == default_port else f"{host}:{port}"
    allowed = _normalize_hosts(extra_hosts)
    listed = host_key in allowed or (port is not None and f"{host}:{port}" in allowed)

    if scheme == "http":
        if host not in LOOPBACK_HOSTS:
            raise OrgUrlError(
                "the organization URL must use https (http is allowed only for loopback)"
            )
        if not listed:
            raise OrgUrlError(
                f"http is allowed only for loopback hosts listed in WEBHOOK_ALLOWED_ORG_HOSTS; "
                f"{host_key} is not listed"
            )

    builtin = host == DEV_AZURE_HOST or host.endswith(VISUALSTUDIO_SUFFIX)
    if listed and not (builtin and host_key == host):
        org = _single_segment_org(path, example=f"{scheme}://{host_key}/your-org")
        return OrgUrl(f"{scheme}://{host_key}/{org}", org, host_key)
    if port is not None and port != default_port:
        raise OrgUrlError(
            f"the organization URL uses port {port}; Azure DevOps uses the default https port "
            "(list host:port in WEBHOOK_ALLOWED_ORG_HOSTS for a stand-in)"
        )
    if host == DEV_AZURE_HOST:
        org = _single_segment_org(path, example="https://dev.azure.com/your-org")
        return OrgUrl(f"https://{DEV_AZURE_HOST}/{org}", org, DEV_AZURE_HOST)
    if host.endswith(VISUALSTUDIO_SUFFIX):
        label = host[: -len(VISUALSTUDIO_SUFFIX)]
        if not _VS_ORG_RE.fullmatch(label):
            raise OrgUrlError(
                f"{host} is not an organization host; expected https://your-org.visualstudio.com"
            )
        # Old collection URLs carry /DefaultCollection; Services answers the same without it.
        if path.rstrip("/").lower() not in ("", "/defaultcollection") or path.endswith("//"):
            raise OrgUrlError(
                "a visualstudio.com organization URL takes no path: "
                f"use https://{label}.visualstudio.com (without the project)"
            )
        return OrgUrl(f"https://{label}{VISUALSTUDIO_SUFFIX}", label, host)
    raise OrgUrlError(
        f"{host_key} is not an Azure DevOps host; use https://dev.azure.com/your-org or "
        "https://your-org.visualstudio.com "
        "(other hosts must be listed in WEBHOOK_ALLOWED_ORG_HOSTS)"
    )


def parse_allowed_hosts(value: str) -> frozenset[str]:
    """Parse a comma-separated ``host[:port]`` list (WEBHOOK_ALLOWED_ORG_HOSTS)."""
    hosts: set[str] = set()
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if not entry.isascii() or any(c in entry for c in "/@\\%?# \t"):
            raise OrgUrlError(f"{entry!r} is not a host or host:port")
        host, port = _split_authority(_bracket_bare_ipv6(entry))
        hosts.add(host if port is None else f"{host}:{port}")
    return frozenset(hosts)


def _split_authority(authority: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` into a lower-cased host and an optional port, or raise."""
    authority = authority.lower()
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise OrgUrlError("the organization URL has a malformed IPv6 host")
        host, after = authority[: end + 1], authority[end + 1 :]
        if not _IPV6_RE.fullmatch(host):
            raise OrgUrlError("the organization URL has a malformed IPv6 host")
        if after and not after.startswith(":"):
            raise OrgUrlError("the organization URL has a malformed host")
        port_text = after[1:] if after else None
    else:
        host, sep, after = authority.partition(":")
        port_text = after if sep else None
        if len(host) > 253 or not _HOSTNAME_RE.fullmatch(host):
            raise OrgUrlError(f"{host!r} is not a valid host name")
    if port_text is None:
        return host, None
    if not _PORT_RE.fullmatch(port_text) or int(port_text) > 65535:
        raise OrgUrlError("the organization URL has an invalid port")
    return host, int(port_text)


def _single_segment_org(path: str, *, example: str) -> str:
    """Return the organization from a ``/{org}`` or ``/{org}/`` path, or raise."""
    segment = path[1:] if path.startswith("/") else None
    if segment is not None and segment.endswith("/"):
        segment = segment[:-1]
    if not segment:
        raise OrgUrlError(f"the organization URL has no organization name; expected {example}")
    if "/" in segment:
        raise OrgUrlError(
            f"the organization URL must name only the organization (no project or other path); "
            f"expected {example}"
        )
    if not _ORG_RE.fullmatch(segment):
        raise OrgUrlError(
            f"{segment!r} is not a valid organization name (letters, digits, '-', '_', '.'; "
            "up to 50 characters, starting and ending with a letter or digit)"
        )
    # Organization names are case-insensitive; one canonical spelling keeps comparisons simple.
    return segment.lower()


def _bracket_bare_ipv6(entry: str) -> str:
    return f"[{entry}]" if entry.count(":") > 1 and not entry.startswith("[") else entry


def _normalize_hosts(hosts: frozenset[str]) -> frozenset[str]:
    return frozenset(_bracket_bare_ipv6(h.strip().lower()) for h in hosts if h.strip())
