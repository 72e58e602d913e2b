"""Headless Chromium (Debian's ``chromium`` package) driven by Playwright.

The browser is never downloaded by Playwright: the test command installs Debian's package
(``apt-get install -y chromium``) and we launch ``/usr/bin/chromium`` (override with
``SLUICE_TEST_CHROMIUM``). Each test gets a fresh browser context, so a fresh identity cookie,
and a ``ChatPage`` helper that records console errors, CSP violations, page errors and
dialogs: a test fails if any of those happen unless it expects them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Page, Playwright, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("SLUICE_TEST_CHROMIUM", "/usr/bin/chromium")
# Playwright starts Chromium with a --disable-features list of its own, and Chromium honours
# only the last such flag. So ours repeats Playwright's, as the locked Playwright writes it
# (test_chromium_flags.py fails when that list changes), and adds the omnibox's popup, a WebUI
# page that each new context's window prepares in a renderer of its own, though a headless
# browser never shows it: 0.4 CPU-seconds of the 1.4 that each context cost.
PLAYWRIGHT_DISABLED_FEATURES = (
    "AvoidUnnecessaryBeforeUnloadCheckSync",
    "DestroyProfileOnBrowserClose",
    "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable",
    "LensOverlay",
    "MediaRouter",
    "PaintHolding",
    "ThirdPartyStoragePartitioning",
    "AvoidCorsURLLoaderRestartOnRedirect",
    "TcpPortRandomizationWin",
    "OptimizationHints",
    "NetworkTimeServiceQuerying",
    "AimEnabled",
    "PreconnectToSearch",
    "msForceBrowserSignIn",
    "msEdgeUpdateLaunchServicesPreferredVersion",
)
DISABLED_FEATURES = (*PLAYWRIGHT_DISABLED_FEATURES, "WebUIOmniboxPopup")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-features=" + ",".join(DISABLED_FEATURES),
]


# Package scope, not session: while Playwright's sync API is alive its asyncio loop stays
# marked as running in this thread, and every async test after the browser tests would fail
# with "Cannot run the event loop while another loop is running".
@pytest.fixture(scope="package")
def playwright_instance() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) "
            "or set SLUICE_TEST_CHROMIUM"
        )
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@dataclass
class ChatPage:
    """The page plus what it reported: the test asserts on these."""

    page: Page
    base_url: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def open(self, path: str = "/") -> None:
        self.page.goto(self.base_url + path)
        self.page.wait_for_selector("#app[data-ready='true']")

    def send(self, text: str) -> None:
        box = self.page.locator("#input")
        box.fill(text)
        box.press("Enter")

    def answers(self) -> Any:
        return self.page.locator(".message.assistant")

    def wait_for_answers(self, count: int, timeout: float = 20_000) -> None:
        """Until ``count`` answers have finished (complete, error or stopped)."""
        self.page.wait_for_function(
            """n => [...document.querySelectorAll('.message.assistant')]
                     .filter(m => ['complete', 'error', 'stopped'].includes(m.dataset.status))
                     .length >= n""",
            arg=count,
            timeout=timeout,
        )

    def assert_clean(self) -> None:
        assert self.page_errors == [], self.page_errors
        assert self.console_errors == [], self.console_errors
        assert self.dialogs == [], self.dialogs

    def sibling(self) -> ChatPage:
        """A second tab of the same browser: same identity cookie, its own page."""
        return watch(self.page.context.new_page(), self.base_url)


def _on_console(chat: ChatPage, message: Any) -> None:
    if message.type == "error" or "Content Security Policy" in message.text:
        chat.console_errors.append(message.text)


def watch(page: Page, base_url: str) -> ChatPage:
    """Wrap ``page``, recording what it reports."""
    chat = ChatPage(page, base_url)
    page.on("console", lambda m: _on_console(chat, m))
    page.on("pageerror", lambda e: chat.page_errors.append(str(e)))

    def on_dialog(dialog: Dialog) -> None:
        chat.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on(
        "request",
        lambda r: chat.requests.append((r.method, r.url, dict(r.headers))),
    )
    return chat


@pytest.fixture
def chat_page(browser: Browser) -> Iterator[Any]:
    """Factory: ``chat_page(server, **context_options) -> ChatPage``."""
    contexts = []

    def make(server: Any, **options: Any) -> ChatPage:
        defaults = {"viewport": {"width": 1200, "height": 820}, "reduced_motion": "reduce"}
        context = browser.new_context(**{**defaults, **options})
        contexts.append(context)
        return watch(context.new_page(), server.url)

    yield make
    for context in contexts:
        context.close()
