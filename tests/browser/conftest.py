"""Playwright on the system Chromium (headless; no browser download) against `live_server`.

Chromium comes from the OS (`apt-get install chromium`; .ci/run does it). Without it the browser
tests skip with the reason, or fail under REQUIRE_SERVICES=1. Screenshots of every page the
tests visit go to test-artifacts/screenshots/ (git-ignored); set UPDATE_DOCS_SCREENSHOT=1 to
refresh the README's docs/screenshot-request.png from the run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from tests.support.axe import AuditedBrowser
from tests.support.people import PASSWORD
from tests.support.services import REPO_ROOT, service_missing

SCREENSHOT_DIR = REPO_ROOT / "test-artifacts" / "screenshots"
DOCS_SCREENSHOT = REPO_ROOT / "docs" / "screenshot-request.png"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1280, "height": 900}


def chromium_executable() -> str | None:
    """CHROMIUM_PATH, else /usr/bin/chromium, else `chromium` on PATH; None when absent."""
    for candidate in (os.environ.get("CHROMIUM_PATH", ""), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


@pytest.fixture
def chromium() -> Iterator[Any]:
    """A headless Chromium for one test.

    Per test, not per session, because Playwright's sync API changes the context Django keeps
    its connections in: while it runs, the test's ORM calls use fresh connections (and need
    DJANGO_ALLOW_ASYNC_UNSAFE), so it must be gone before pytest-django tears the database down
    with the original ones (serialized rollback relies on them), and no other test may inherit
    the variable."""
    executable = chromium_executable()
    if executable is None:
        service_missing(
            "Chromium is not installed (apt-get install chromium, or set CHROMIUM_PATH)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - it is in requirements-dev.txt
        service_missing(f"the playwright package is missing: {exc}")
    # Playwright's sync API runs an event loop in this thread; Django's ORM refuses to run
    # beside one unless told the test knows what it does (no concurrent DB use here).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    # Restored however the set-up ends: a start that fails (no axe-core, say) must not leave it
    # to the tests after this one (`manage.py check --deploy` refuses it, async.E001).
    try:
        with sync_playwright() as playwright:
            try:
                browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            except Exception as exc:
                service_missing(f"Chromium at {executable} does not start: {exc}")
            # Every context it opens runs axe-core on every page it loads (tests/support/axe.py).
            audited = AuditedBrowser(browser)
            yield audited
            audited.check_open_pages()
            browser.close()
            # The connections opened in Playwright's context would otherwise stay open
            # (PostgreSQL then refuses to drop the test database).
            connections.close_all()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
    problems = audited.report.problems
    if problems:
        pytest.fail(
            f"axe-core found {len(problems)} serious or critical accessibility violation(s) on "
            f"the {len(set(audited.report.pages))} page(s) checked:\n" + "\n".join(problems),
            pytrace=False,
        )


SignIn = Callable[..., Any]


@pytest.fixture
def sign_in(chromium: Any, live_server: Any) -> Iterator[SignIn]:
    """`sign_in(user, next="/")`: a new browser context signed in through the login form; the
    page is left at `next`. `javascript=False` shows the pages as they work without the script.
    Contexts are closed when the test ends."""
    contexts: list[Any] = []

    def open_as(user: Any, next: str = "/", *, javascript: bool = True) -> Any:
        context = chromium.new_context(
            viewport=VIEWPORT,
            base_url=live_server.url,
            accept_downloads=True,
            java_script_enabled=javascript,
        )
        if javascript:
            context.grant_permissions(["clipboard-read", "clipboard-write"])
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(f"/accounts/login/?next={next}")
        page.get_by_label("Username").fill(user.get_username())
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"**{next}")
        return page

    yield open_as
    chromium.check_open_pages()  # their final state, before the contexts go
    for context in contexts:
        context.close()


Screenshot = Callable[[Any, str], Path]


@pytest.fixture
def screenshot() -> Screenshot:
    """`screenshot(page, "name")`: a full-page PNG under test-artifacts/screenshots/."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> Path:
        path = SCREENSHOT_DIR / f"{name}.png"
        # From the top, so sticky panels sit where a reader of the page first sees them.
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(path), full_page=True, animations="disabled")
        return path

    return take


def publish_docs_screenshot(page: Any) -> None:
    """With UPDATE_DOCS_SCREENSHOT=1, the top of `page` becomes the README's screenshot."""
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") != "1":
        return
    DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(
        path=str(DOCS_SCREENSHOT),
        clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": 1000},
        full_page=True,
        animations="disabled",
    )
