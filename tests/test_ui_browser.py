"""The admin web UI in real headless Chromium, against `ado-webhook serve` and the stand-in.

Elements are found only by their accessible names (SPEC 3.4), as a screen reader would.
Needs Debian's `chromium` (/usr/bin/chromium) and Playwright for Python; without them these
tests skip with one line, unless WEBHOOK_REQUIRE_BROWSER=1 (set by .ci/run) turns that into a
failure. Screenshots of every page go to var/screenshots/ (gitignored); with
WEBHOOK_DOCS_SCREENSHOTS=1 the two the README shows are written to docs/ as well.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import signed_headers
from tests.e2e import Rig, rig, wait_for
from tests.servers import ADMIN_TOKEN, REPO

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = REPO / "var" / "screenshots"
DOCS = REPO / "docs"
README_SHOTS = {"overview": "ui-overview.png", "template-refused": "ui-template-form.png"}


def _missing_browser() -> str | None:
    if not CHROMIUM.exists():
        return f"browser tests need {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "browser tests need Playwright for Python (pip install '.[test]')"
    return None


MISSING = _missing_browser()
REQUIRED = os.environ.get("WEBHOOK_REQUIRE_BROWSER") == "1"
if MISSING and not REQUIRED:
    pytest.skip(MISSING, allow_module_level=True)  # one line in the summary


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if MISSING:
        pytest.fail(f"{MISSING}; WEBHOOK_REQUIRE_BROWSER=1 forbids skipping these tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Rig]:
    with rig(tmp_path) as r:
        yield r


@pytest.fixture
def page(browser: Any, live: Rig) -> Iterator[Any]:
    context = browser.new_context(
        base_url=live.base, viewport={"width": 1200, "height": 900}, color_scheme="light"
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.base)
    context.set_default_timeout(20_000)
    tab = context.new_page()
    problems: list[str] = []
    # Script errors, and anything the Content-Security-Policy blocked, are problems.
    tab.on("pageerror", lambda e: problems.append(str(e)))
    tab.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    try:
        yield tab
    finally:
        context.close()
    assert problems == [], "\n".join(problems)


def shot(page: Any, name: str) -> None:
    """Screenshot the whole page to var/screenshots/ (and docs/ for the README's two)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    target = SHOTS / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)
    if name in README_SHOTS and os.environ.get("WEBHOOK_DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(target, DOCS / README_SHOTS[name])


def nav(page: Any, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_role("heading", level=1, name=name)).to_be_visible()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def reload_until(page: Any, check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Reload the page until `check()` holds (the worker does the work in the background)."""

    def again() -> bool:
        page.reload()
        return check()

    if not check():
        wait_for(again, timeout=timeout, interval=0.3)


def says(page: Any, text: str) -> None:
    """A status message (role=status) on the page says `text`."""
    expect(page.get_by_role("status").filter(has_text=text)).to_be_visible()


def sign_in(page: Any) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/ui/login"))
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1, name="Overview")).to_be_visible()


def send(live: Rig, secret: str, *risks: dict[str, Any]) -> None:
    body = json.dumps({"risks": list(risks)}).encode()
    resp = requests.post(
        f"{live.base}/webhooks/risks/sast",
        data=body,
        headers=signed_headers(secret, body),
        timeout=30,
    )
    assert resp.status_code == 202, resp.text


def make_value_area_required(live: Rig, required: bool) -> None:
    """As an Azure DevOps process admin would: Value Area on Strict's Bug loses its default,
    so creating a Bug without it fails with TF401320 (or gets it back)."""
    from dataclasses import replace

    with live.sb.state.lock:
        bug = live.sb.state.project("Strict").type("Bug")
        assert bug is not None
        key = "microsoft.vsts.common.valuearea"
        bug.fields[key] = replace(bug.fields[key], default=None if required else "Business")


def test_the_whole_story_in_a_browser(page: Any, live: Rig) -> None:
    # Sign in.
    sign_in(page)
    shot(page, "overview-empty")

    # Add a connection; Test shows OK.
    nav(page, "Connections")
    page.get_by_role("button", name="Add connection").click()
    page.get_by_label("Name").fill("sandbox")
    page.get_by_label("Organization URL").fill(live.sb.org_url)
    page.get_by_label("Authentication").select_option(label="Personal access token")
    page.get_by_label("Personal access token").fill("wrong-token")
    page.get_by_role("button", name="Connect").click()
    expect(page.get_by_role("alert")).to_contain_text("Azure DevOps rejected the credentials")
    expect(page.get_by_label("Name")).to_have_value("sandbox")
    expect(page.get_by_label("Personal access token")).to_have_value("")
    shot(page, "connection-refused")
    page.get_by_label("Personal access token").fill(live.sb.pat)
    page.get_by_role("button", name="Connect").click()
    says(page, "4 project(s) visible")
    row = page.get_by_role("row", name=re.compile("sandbox"))
    row.get_by_role("button", name="Test").click()
    expect(row).to_contain_text("OK — connected")
    shot(page, "connections")

    # A template on a project whose type has an extra required field is refused, naming it.
    nav(page, "Templates")
    page.get_by_role("button", name="New template").click()
    page.get_by_label("Name").fill("Strict bugs")
    page.get_by_label("Connection").select_option(label="sandbox")
    page.get_by_label("Project").select_option("Strict")
    page.get_by_label("Work item type").select_option("Bug")
    expect(page.get_by_label("Team (Custom.Team)")).to_be_visible()
    page.get_by_label("Severity threshold").select_option(label="High")
    page.get_by_label("Create automatically").check()
    page.get_by_label("Title format").fill("[{severity}] {name}")
    preview = page.get_by_role("status").filter(has_text="SQL injection in /api/orders")
    expect(preview).to_have_text("[High] SQL injection in /api/orders")
    page.get_by_role("button", name="Save template").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "the template leaves them unset: Team (Custom.Team)"
    )
    expect(page.get_by_label("Name")).to_have_value("Strict bugs")
    expect(page.get_by_label("Team (Custom.Team)")).to_have_attribute("aria-invalid", "true")
    shot(page, "template-refused")
    # The choices offered are Azure DevOps' allowed values; with one, the template is valid.
    page.get_by_label("Team (Custom.Team)").select_option("Red")
    expect(page.get_by_label("Team (Custom.Team)")).to_have_value("Red")
    page.get_by_role("button", name="Save template").click()
    says(page, "Saved template “Strict bugs”")
    expect(page.get_by_role("row", name=re.compile("Strict bugs"))).to_contain_text("Red")
    shot(page, "templates")

    # Register hooks; the table shows their live status.
    nav(page, "Service hooks")
    page.get_by_label("Connection").select_option(label="sandbox")
    page.get_by_label("Project").select_option("Strict")
    page.get_by_role("button", name="Register hooks").click()
    says(page, "Registered 3 subscription(s) for Strict")
    rows = page.get_by_role("row", name=re.compile(r"Strict workitem\.\w+ enabled"))
    expect(rows).to_have_count(3)
    shot(page, "hooks")

    # Create a source and read its secret once.
    nav(page, "Sources")
    page.get_by_role("button", name="New source").click()
    page.get_by_label("Name").fill("sast")
    page.get_by_role("button", name="Create source").click()
    secret_field = page.get_by_label("Signing secret")
    secret = secret_field.input_value()
    assert secret.startswith("whsec_")
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("status").filter(has_text="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    shot(page, "source-secret")
    nav(page, "Sources")
    assert secret not in page.content()
    page.go_back()  # the secret page is not kept for the back button
    if page.url.endswith("/ui/sources"):
        assert secret not in page.content()
    for name in ("Overview", "Connections", "Templates", "Service hooks", "Risks", "Jobs"):
        nav(page, name)
        assert secret not in page.content()
        assert live.sb.pat not in page.content()
    shot(page, "sources")

    # A signed risk appears on Risks with a working link to its work item.
    send(live, secret, {"key": "UI-1", "name": "SQL injection in /api/orders", "severity": "high"})
    nav(page, "Risks")
    risk_row = page.get_by_role("row", name=re.compile("UI-1"))
    reload_until(
        page, lambda: risk_row.get_by_role("link", name=re.compile(r"Work item")).count() == 1
    )
    link = risk_row.get_by_role("link", name=re.compile(r"^Work item \d+$"))
    item_id = int(link.inner_text().split()[-1])
    assert link.get_attribute("href") == (
        f"{live.sb.org_url}/{live.sb.work_item(item_id)['project_id']}/_workitems/edit/{item_id}"
    )
    shot(page, "risks")

    # The item is closed in the stand-in as a person would; the risk shows resolved.
    link.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(
        f"Bug {item_id}: [High] SQL injection in /api/orders"
    )
    page.get_by_label("State").select_option("Closed")
    page.get_by_label("Reason").fill("Fixed and verified")
    page.get_by_label("Changed by").fill("Dana Developer <dana@contoso.com>")
    page.get_by_role("button", name="Save").click()
    says(page, "the work item is now Closed")
    shot(page, "stand-in-work-item")
    page.goto("/ui/risks")
    reload_until(page, lambda: "resolved" in risk_row.inner_text())
    expect(risk_row).to_contain_text("Dana Developer")
    risk_row.get_by_role("link", name="UI-1").click()
    expect(page.get_by_role("heading", name="History")).to_be_visible()
    history = page.get_by_role("list", name="History")
    expect(history).to_contain_text("work item created")
    expect(history).to_contain_text("Closed")
    shot(page, "risk")

    # A job failed by an Azure DevOps rule error shows the message; Retry requeues it.
    make_value_area_required(live, True)
    send(live, secret, {"key": "UI-2", "name": "Stored XSS in comments", "severity": "critical"})
    nav(page, "Jobs")
    retry = page.get_by_role("button", name="Retry")
    failed = page.get_by_role("row", name=re.compile("create work item")).filter(has=retry)
    reload_until(page, lambda: failed.count() == 1)
    expect(failed).to_contain_text("TF401320: Rule Error for field Value Area")
    shot(page, "jobs")
    make_value_area_required(live, False)  # the admin fixes the process, then retries
    failed.get_by_role("button", name="Retry").click()
    says(page, "is queued again")
    nav(page, "Risks")
    second = page.get_by_role("row", name=re.compile("UI-2"))
    reload_until(
        page, lambda: second.get_by_role("link", name=re.compile(r"Work item")).count() == 1
    )

    nav(page, "Overview")
    expect(page.get_by_role("img", name=re.compile("Work items filed per day"))).to_be_visible()
    shot(page, "overview")


def test_sign_out_ends_the_session_and_a_copied_cookie_stops_working(
    page: Any, live: Rig, browser: Any
) -> None:
    sign_in(page)
    cookies = page.context.cookies()
    assert [c["name"] for c in cookies] == ["adowh_ui"]
    assert cookies[0]["httpOnly"] is True
    assert cookies[0]["sameSite"] == "Lax"
    copy = browser.new_context(base_url=live.base)
    try:
        copy.add_cookies(cookies)
        other = copy.new_page()
        other.goto("/ui/jobs")
        expect(other.get_by_role("heading", level=1, name="Jobs")).to_be_visible()
        page.get_by_role("button", name="Sign out").click()
        says(page, "Signed out.")
        expect(page.get_by_label("Admin token")).to_be_visible()
        other.goto("/ui/jobs")
        expect(other).to_have_url(re.compile(r"/ui/login"))
        expect(other.get_by_role("button", name="Sign in")).to_be_visible()
    finally:
        copy.close()


def test_a_form_post_without_csrf_token_is_refused(page: Any, live: Rig) -> None:
    sign_in(page)
    # A page on another site cannot read the token: it posts the form without one.
    resp = page.request.post(f"{live.base}/ui/sources", form={"name": "forged"})
    assert resp.status == 400
    assert "security token is missing" in resp.text()
    nav(page, "Sources")
    assert "forged" not in page.content()


def test_keyboard_only_sign_in_and_navigation(page: Any) -> None:
    page.goto("/ui/login")
    page.keyboard.type(ADMIN_TOKEN)  # the token field has focus on arrival
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name="Overview")).to_be_visible()
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Risks":
            break
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name="Risks")).to_be_visible()


def test_pages_fit_a_narrow_window(page: Any) -> None:
    sign_in(page)
    page.set_viewport_size({"width": 380, "height": 800})
    for name in (
        "Overview",
        "Connections",
        "Templates",
        "Service hooks",
        "Sources",
        "Risks",
        "Jobs",
    ):
        nav(page, name)
        width = 0
        for _ in range(50):  # once laid out for the new width
            width = page.evaluate("document.documentElement.scrollWidth")
            if width <= 380:
                break
            page.wait_for_timeout(100)
        assert width <= 380, f"{name} scrolls sideways ({width}px)"
        shot(page, f"narrow-{name.lower().replace(' ', '-')}")


def test_a_choice_made_before_the_scripts_run_still_loads_the_next_list(
    page: Any, live: Rig
) -> None:
    live.connect()
    sign_in(page)
    held: list[Any] = []
    page.route("**/ui/static/htmx.min.js", lambda route: held.append(route))
    page.goto("/ui/hooks", wait_until="commit")
    for _ in range(400):  # let Playwright dispatch the held request to the handler
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the page never asked for htmx"
    # The page can be used while its deferred scripts are still on their way.
    page.get_by_label("Connection").select_option(label="sandbox")
    held[0].continue_()
    page.get_by_label("Project").select_option("AppSec")
    page.get_by_role("button", name="Register hooks").click()
    says(page, "Registered 3 subscription(s) for AppSec")
