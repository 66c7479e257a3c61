"""Helpers for the admin web UI tests: sign in through the form, read CSRF tokens, parse pages."""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import ADMIN_TOKEN

COOKIE = "adowh_ui"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = _TOKEN.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def csrf_token(client: FlaskClient, path: str = "/ui/login") -> str:
    """A CSRF token for this client's session, read from a page."""
    return csrf_from(client.get(path).get_data(as_text=True))


def sign_in(client: FlaskClient, token: str = ADMIN_TOKEN) -> TestResponse:
    """Sign in through the form, as a browser does."""
    return client.post(
        "/ui/login", data={"csrf_token": csrf_token(client), "token": token, "next": ""}
    )


def post_form(client: FlaskClient, path: str, data: dict[str, str], page: str) -> TestResponse:
    """POST a form with the CSRF token read from `page`."""
    return client.post(path, data={"csrf_token": csrf_token(client, page), **data})


def text_of(html: str) -> str:
    """The page's text with tags removed, entities decoded and whitespace collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


class PageParts(HTMLParser):
    """Collects the parts of a page a CSP check cares about."""

    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts: list[str] = []
        self.handlers: list[str] = []
        self.style_attributes: list[str] = []
        self.style_elements = 0
        self.script_srcs: list[str] = []
        self._in_script = False
        self._script_has_src = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name.lower(): value for name, value in attrs}
        self.handlers += [name for name in names if name.startswith("on")]
        if "style" in names:
            self.style_attributes.append(tag)
        if tag == "style":
            self.style_elements += 1
        if tag == "script":
            self._in_script = True
            self._script_has_src = bool(names.get("src"))
            if names.get("src"):
                self.script_srcs.append(str(names["src"]))
        for name in ("href", "src", "action"):
            if (names.get(name) or "").strip().lower().startswith("javascript:"):
                self.handlers.append(f"{name}=javascript:")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and not self._script_has_src and data.strip():
            self.inline_scripts.append(data)


def page_parts(html: str) -> PageParts:
    """Parse a page for scripts, handlers and styles."""
    parts = PageParts()
    parts.feed(html)
    return parts


def form_values(html: str) -> dict[str, Any]:
    """`{name: value}` of the text inputs on a page (values as rendered)."""
    out: dict[str, Any] = {}
    for match in re.finditer(r"<input\b[^>]*>", html):
        tag = match.group(0)
        name = re.search(r'name="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name:
            out[name.group(1)] = value.group(1) if value else None
    return out
