"""axe-core (from npm, at a pinned version) run inside the page in Chromium: no serious or
critical violation on the empty page, while an answer streams, while a tool call waits for
approval, and in the phone layout; and every control has an accessible name, whatever the
impact axe gives a missing one.

axe is evaluated through the DevTools protocol, which the page's Content-Security-Policy
(``script-src 'self'``) does not govern: the page under test is the page as served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests import test_tool_turns
from tests.browser.conftest import ChatPage
from tests.browser.test_tool_steps import ask_guarded
from tests.conftest import StartServer
from tests.fakes.threaded import ThreadedFakes
from tests.support.packages import cached_npm_package
from tests.support.server import RunningServer

pytestmark = pytest.mark.browser

AXE_VERSION = "4.11.0"
tools_path = test_tool_turns.tools_path

# The rules that say a control has no accessible name (a button, a form field, a select, a
# link, a dialog, an image button); each must pass at any impact.
NAME_RULES = [
    "button-name",
    "input-button-name",
    "label",
    "select-name",
    "link-name",
    "aria-command-name",
    "aria-input-field-name",
    "aria-toggle-field-name",
    "aria-dialog-name",
]

RUN_AXE = """
async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => n.target.join(' ') + ' ' + n.failureSummary),
  }));
}
"""


@pytest.fixture(scope="module")
def axe_source() -> str:
    package = cached_npm_package("axe-core", AXE_VERSION)
    return (package / "axe.min.js").read_text(encoding="utf-8")


def audit(page: Page, axe_source: str) -> list[dict[str, Any]]:
    """The violations on the page as it is now: the serious and critical ones, and any
    missing accessible name."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(axe_source)
    found: list[dict[str, Any]] = page.evaluate(RUN_AXE)
    return [v for v in found if v["impact"] in ("serious", "critical") or v["id"] in NAME_RULES]


def test_the_empty_page_light_and_dark(
    demo_server: RunningServer, chat_page: Any, axe_source: str, artifacts: Path
) -> None:
    server = demo_server
    for scheme in ("light", "dark"):
        chat = chat_page(server, color_scheme=scheme)
        chat.open()
        assert audit(chat.page, axe_source) == [], scheme
        chat.page.screenshot(path=str(artifacts / f"a11y-empty-{scheme}.png"))
        # The connection check's dialog, open.
        chat.page.click("#check-open")
        expect(chat.page.locator("#check-dialog")).to_be_visible()
        assert audit(chat.page, axe_source) == [], f"{scheme}, dialog open"
        chat.assert_clean()


def test_a_streaming_answer_and_its_finished_state(
    start_server: StartServer, chat_page: Any, axe_source: str, artifacts: Path
) -> None:
    server = start_server({"SLUICE_LLM__DEMO__WORDS_PER_SECOND": "6"})
    chat = chat_page(server)
    chat.open()
    chat.send("Show me code:\n\n```python\nprint('hi')\n```")
    expect(chat.answers().last).to_have_attribute("data-status", "streaming")
    assert audit(chat.page, axe_source) == []
    chat.page.screenshot(path=str(artifacts / "a11y-streaming.png"))
    chat.page.keyboard.press("Escape")
    chat.wait_for_answers(1)
    # Stopped, with its note, the Copy buttons, suggestions and the history row.
    assert audit(chat.page, axe_source) == []
    chat.assert_clean()


def test_a_tool_call_waiting_for_approval(
    start_server: StartServer,
    fakes: ThreadedFakes,
    tools_path: str,
    chat_page: Any,
    axe_source: str,
) -> None:
    chat, tool = ask_guarded(start_server, fakes, tools_path, chat_page, "Done.")
    expect(tool).to_have_attribute("data-phase", "awaiting")
    assert audit(chat.page, axe_source) == []
    tool.get_by_role("button", name="Allow guarded_echo").click()
    chat.wait_for_answers(1)
    assert audit(chat.page, axe_source) == []
    chat.assert_clean()


def test_the_phone_layout_with_the_drawer_closed_and_open(
    demo_server: RunningServer, chat_page: Any, axe_source: str, artifacts: Path
) -> None:
    server = demo_server
    chat: ChatPage = chat_page(
        server, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    chat.open()
    chat.send("Find me a restaurant in Tokyo")
    chat.wait_for_answers(1)
    assert audit(chat.page, axe_source) == []
    chat.page.click("#sidebar-toggle")
    chat.page.wait_for_function(
        "() => document.getElementById('sidebar').getBoundingClientRect().left >= 0"
    )
    assert audit(chat.page, axe_source) == []
    chat.page.screenshot(path=str(artifacts / "a11y-phone-drawer.png"))
    chat.assert_clean()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_undo_notice_and_a_rename_in_progress(
    demo_server: RunningServer, chat_page: Any, axe_source: str, scheme: str
) -> None:
    server = demo_server
    chat = chat_page(server, color_scheme=scheme)
    chat.open()
    chat.send("Keep me")
    chat.wait_for_answers(1)
    row = chat.page.locator("#session-list .session").first
    row.locator(".session-rename").click()
    expect(chat.page.get_by_role("textbox", name="Conversation title")).to_be_focused()
    assert audit(chat.page, axe_source) == []
    chat.page.keyboard.press("Escape")
    row.locator(".session-delete").click()
    expect(chat.page.locator("#toast-action")).to_be_visible()
    assert audit(chat.page, axe_source) == []
    chat.assert_clean()
