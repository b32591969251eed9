"""What the browser tests share: Debian's Chromium launched by Playwright, tabs whose page errors
fail the test, and full-page screenshots under ``test-output/screenshots/``.

Each browser test module imports this first: on a machine without Playwright or Chromium the
import skips that module, before Playwright itself is imported.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
# The flags that run Debian's Chromium headless on this kind of machine (see PEERS.md).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
TIMEOUT_MS = 15_000

if importlib.util.find_spec("playwright") is None:
    pytest.skip("the playwright package is not installed", allow_module_level=True)
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import (  # noqa: E402
    Browser,
    ConsoleMessage,
    Page,
    Response,
    sync_playwright,
)


@contextmanager
def chromium() -> Iterator[tuple[Browser, list[str]]]:
    """Chromium, and the list its tabs report page errors into; any error fails the test once
    the browser is closed."""
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser, problems
        finally:
            browser.close()
    assert problems == [], problems


def new_tab(
    browser: Browser,
    problems: list[str],
    *,
    base_url: str,
    width: int,
    height: int,
    user_agent: str | None = None,
) -> Page:
    """A tab on a device of its own (own cookies) that reports any script error, CSP refusal
    or missing resource (404) into ``problems``."""

    def on_console(message: ConsoleMessage) -> None:
        # Error statuses are expected (a refused sign-in is a 401, a refused page a 403);
        # anything else is not.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    def on_response(response: Response) -> None:
        if response.status == 404:
            problems.append(f"404 {response.url}")

    context = browser.new_context(
        base_url=base_url, viewport={"width": width, "height": height}, user_agent=user_agent
    )
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    tab.on("console", on_console)
    tab.on("pageerror", lambda error: problems.append(str(error)))
    tab.on("response", on_response)
    return tab


def shot(page: Page, name: str) -> Path:
    """Saves the whole page as ``test-output/screenshots/<name>.png`` for a person to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def fill_sign_in(page: Page, email: str, password: str) -> None:
    """Fill and send the sign-in form the page shows."""
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
