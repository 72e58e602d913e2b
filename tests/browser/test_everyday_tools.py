"""What people reach for every day on a chat page, in headless Chromium against the real
server: highlighted code with a Copy button, a model picker, renaming and searching the
history, a theme toggle, and the keys (Enter, Shift+Enter, Escape, ↑).

Every wait is on a condition in the page; each test ends with ``assert_clean()``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ChatPage
from tests.conftest import StartServer
from tests.fakes.llm_upstreams import Reply
from tests.fakes.threaded import ThreadedFakes
from tests.support.server import RunningServer

pytestmark = pytest.mark.browser

PYTHON = 'def greet(name):\n    # say hello\n    return f"<b>{name}</b> & co"\n'
SHELL = "ls -la | grep '*.py'"


def type_message(chat: ChatPage, *lines: str) -> None:
    """Type ``lines`` into the box as a person does: Shift+Enter between them, Enter sends."""
    box = chat.page.locator("#input")
    box.focus()
    for i, line in enumerate(lines):
        if i:
            chat.page.keyboard.press("Shift+Enter")
        chat.page.keyboard.insert_text(line)
    chat.page.keyboard.press("Enter")


def test_code_is_highlighted_and_copy_takes_exactly_the_code(
    demo_server: RunningServer, chat_page: Any, artifacts: Path
) -> None:
    server = demo_server
    chat = chat_page(server, permissions=["clipboard-read", "clipboard-write"])
    chat.open()
    # The demo answer repeats the message, so the answer holds these two blocks.
    message = f"Two blocks:\n\n```python\n{PYTHON}```\n\n```\n{SHELL}\n```"
    type_message(chat, *message.split("\n"))
    chat.wait_for_answers(1)
    answer = chat.answers().last
    blocks = answer.locator(".code-block")
    expect(blocks).to_have_count(2)

    python = blocks.nth(0)
    expect(python.locator(".code-lang")).to_have_attribute("data-lang", "python")
    # Coloured by highlight.js: the keyword and the string are their own spans.
    expect(python.locator(".hljs-keyword").first).to_have_text("def")
    expect(python.locator(".hljs-comment")).to_have_text("# say hello")
    colour = "e => getComputedStyle(e).color"
    keyword_colour = python.locator(".hljs-keyword").first.evaluate(colour)
    plain_colour = python.locator("code").evaluate(colour)
    assert keyword_colour != plain_colour
    # The model's markup stays text: "<b>" is shown, not made bold.
    expect(python.locator("b")).to_have_count(0)
    expect(python.locator("code")).to_contain_text("<b>{name}</b> & co")
    chat.page.screenshot(path=str(artifacts / "code-highlighted.png"), full_page=True)

    copy = python.locator(".code-copy")
    expect(copy).to_have_accessible_name("Copy python code")
    copy.click()
    expect(copy).to_have_attribute("data-state", "copied")
    expect(copy).to_have_accessible_name("Copied")
    assert chat.page.evaluate("navigator.clipboard.readText()") == PYTHON.rstrip("\n")
    # A block that names no language, too short for highlight.js to tell which: plain.
    expect(blocks.nth(1).locator(".code-lang")).to_have_attribute("data-lang", "code")
    blocks.nth(1).get_by_role("button", name="Copy code").click()
    assert chat.page.evaluate("navigator.clipboard.readText()") == SHELL

    # The bars' words are drawn, not text: the answer's text is the answer alone.
    assert "Copy" not in answer.locator(".content").inner_text()
    # Copying the whole answer keeps its Markdown: the fences and the language are there.
    answer.locator(".message-meta .copy").click()
    whole = chat.page.evaluate("navigator.clipboard.readText()")
    assert f"```python\n{PYTHON}```" in whole and f"```\n{SHELL}\n```" in whole
    chat.assert_clean()


def start_two_providers(start_server: StartServer, fakes: ThreadedFakes) -> Any:
    return start_server(
        {
            "SLUICE_LLM__PROVIDERS": "openai,gemini",
            "OPENAI_API_KEY": "sk-test-0123456789abcdef",
            "OPENAI_BASE_URL": fakes.openai.base_url,
            "GEMINI_API_KEY": "AIzaTEST0123456789abcdefghijklmno",
            "GEMINI_BASE_URL": fakes.gemini.url,
        }
    )


def test_the_model_picker_applies_to_the_next_turn_and_is_kept_per_conversation(
    start_server: StartServer, fakes: ThreadedFakes, chat_page: Any, artifacts: Path
) -> None:
    fakes.openai.script(*[Reply(text=["Answered by OpenAI."])] * 4)
    fakes.gemini.script(*[Reply(text=["Answered by Gemini."])] * 4)
    server = start_two_providers(start_server, fakes)
    chat = chat_page(server)
    sent: list[dict[str, Any]] = []
    chat.page.on(
        "request",
        lambda r: (
            sent.append(json.loads(r.post_data or "{}"))
            if "/api/conversation-stream/" in r.url
            else None
        ),
    )
    chat.open()
    picker = chat.page.get_by_role("combobox", name="Model")
    # What /v1/models lists, the fallback chain first.
    options = picker.locator("option")
    expect(options.first).to_have_text("Automatic (fallback chain)")
    values = options.evaluate_all("os => os.map(o => o.value)")
    assert values[0] == "sluice" and "openai" in values and "gemini" in values
    expect(picker).to_have_value("sluice")

    picker.select_option("gemini")
    chat.send("Which model are you?")
    chat.wait_for_answers(1)
    expect(chat.answers().last.locator(".content")).to_have_text("Answered by Gemini.")
    expect(chat.answers().last.locator(".meta-text")).to_contain_text("gemini")
    assert sent[-1]["model"] == "gemini"
    chat.page.screenshot(path=str(artifacts / "model-picker.png"))

    # A second conversation on the fallback chain: the turn names no model.
    chat.page.click("#new-chat")
    expect(picker).to_have_value("gemini")  # a new chat starts with the last choice
    picker.select_option("sluice")
    chat.send("And now?")
    chat.wait_for_answers(1)
    expect(chat.answers().last.locator(".content")).to_have_text("Answered by OpenAI.")
    assert "model" not in sent[-1]

    # Each conversation keeps its own choice, across a reload too.
    # Opened by title: the list is newest first, and it reorders when a turn's refresh of
    # it lands, which under load can come after the next click.
    sessions = chat.page.locator("#session-list .session-open")
    expect(sessions).to_have_count(2)
    sessions.filter(has_text="Which model are you?").click()
    expect(chat.page.locator(".message.user .content")).to_have_text(["Which model are you?"])
    expect(picker).to_have_value("gemini")
    chat.page.reload()
    chat.page.wait_for_selector("#app[data-ready='true']")
    expect(picker).to_have_value("gemini")
    chat.send("Still you?")
    chat.wait_for_answers(2)
    expect(chat.answers().last.locator(".content")).to_have_text("Answered by Gemini.")
    assert sent[-1]["model"] == "gemini"
    sessions.filter(has_text="And now?").click()
    expect(chat.page.locator(".message.user .content")).to_have_text(["And now?"])
    expect(picker).to_have_value("sluice")
    chat.assert_clean()


def test_rename_and_search_the_history(
    demo_server: RunningServer, chat_page: Any, artifacts: Path
) -> None:
    server = demo_server
    chat = chat_page(server)
    chat.open()
    chat.send("Find me a restaurant in Tokyo")
    chat.wait_for_answers(1)
    chat.page.click("#new-chat")
    chat.send("Museums in Kyoto with gardens")
    chat.wait_for_answers(1)
    rows = chat.page.locator("#session-list .session")
    expect(rows).to_have_count(2)

    # Rename: the pencil opens the title for editing; Enter keeps it, on the server too.
    tokyo = rows.filter(has_text="Find me a restaurant in Tokyo")
    tokyo.get_by_role("button", name="Rename “Find me a restaurant in Tokyo”").click()
    title = chat.page.get_by_role("textbox", name="Conversation title")
    expect(title).to_be_focused()
    expect(title).to_have_value("Find me a restaurant in Tokyo")
    chat.page.keyboard.press("Control+A")
    chat.page.keyboard.type("Ramen crawl")
    chat.page.keyboard.press("Enter")
    expect(rows.locator(".session-title")).to_have_text(["Museums in Kyoto with gardens",
                                                         "Ramen crawl"])  # fmt: skip
    # Escape gives the title back unchanged, and closes nothing else.
    rows.filter(has_text="Ramen crawl").get_by_role("button", name="Rename “Ramen crawl”").click()
    chat.page.keyboard.type("Never kept")
    chat.page.keyboard.press("Escape")
    expect(rows.locator(".session-title")).to_have_text(["Museums in Kyoto with gardens",
                                                         "Ramen crawl"])  # fmt: skip
    chat.page.reload()
    chat.page.wait_for_selector("#app[data-ready='true']")
    expect(rows.locator(".session-title")).to_contain_text(["Ramen crawl"])

    # Search: words of a message find its conversation, with the words around them.
    box = chat.page.get_by_role("searchbox", name="Search conversations")
    box.fill("tokyo")
    expect(rows).to_have_count(1)
    expect(rows.locator(".session-title")).to_have_text("Ramen crawl")
    expect(rows.locator(".session-snippet")).to_contain_text("Tokyo")
    chat.page.screenshot(path=str(artifacts / "history-search.png"))
    box.fill("garden muse")  # beginnings of words, in any order
    expect(rows.locator(".session-title")).to_have_text("Museums in Kyoto with gardens")
    box.fill("ramen")  # the new title
    expect(rows.locator(".session-title")).to_have_text("Ramen crawl")
    box.fill("pizza")
    expect(rows).to_have_count(0)
    expect(chat.page.locator("#session-empty")).to_have_text("No conversation matches.")
    # Escape empties the box and the whole list is back.
    box.press("Escape")
    expect(box).to_have_value("")
    expect(rows).to_have_count(2)
    # A found conversation opens like any other.
    box.fill("kyoto")
    rows.first.locator(".session-open").click()
    expect(chat.page.locator(".message.user .content")).to_have_text(
        ["Museums in Kyoto with gardens"]
    )
    chat.assert_clean()


def background(chat: ChatPage) -> str:
    return str(chat.page.evaluate("getComputedStyle(document.body).backgroundColor"))


LIGHT, DARK = "rgb(255, 255, 255)", "rgb(22, 24, 29)"


def test_the_theme_toggle_beside_the_systems_choice(
    demo_server: RunningServer, chat_page: Any, artifacts: Path
) -> None:
    server = demo_server
    chat = chat_page(server, color_scheme="light")
    chat.open()
    system = chat.page.get_by_role("radio", name="System")
    dark = chat.page.get_by_role("radio", name="Dark")
    light = chat.page.get_by_role("radio", name="Light")
    expect(system).to_be_checked()
    assert background(chat) == LIGHT

    dark.check()
    assert background(chat) == DARK
    chat.send("Show me code:\n\n```js\nconst x = 1;\n```")
    chat.wait_for_answers(1)
    chat.page.screenshot(path=str(artifacts / "theme-dark-chosen.png"), full_page=True)
    # Remembered: a reload opens dark, before and after the page's script runs.
    chat.page.reload()
    chat.page.wait_for_selector("#app[data-ready='true']")
    expect(dark).to_be_checked()
    assert background(chat) == DARK

    # The system's choice again: it follows the system, both ways.
    system.check()
    assert background(chat) == LIGHT
    chat.page.emulate_media(color_scheme="dark")
    assert background(chat) == DARK
    # Light chosen under a dark system stays light.
    light.check()
    assert background(chat) == LIGHT
    chat.page.reload()
    chat.page.wait_for_selector("#app[data-ready='true']")
    expect(light).to_be_checked()
    assert background(chat) == LIGHT
    chat.assert_clean()


def test_a_stopped_answer_gets_its_controls_once_the_server_has_stored_it(
    start_server: StartServer, chat_page: Any
) -> None:
    """The page reads the conversation back when a turn ends, to give its messages Edit and
    Regenerate; a stopped answer may not be stored yet at that instant. Here the first reads
    answer as if it were not (the answer left out): the controls still come, from a later
    read, instead of never."""
    server = start_server({"SLUICE_LLM__DEMO__WORDS_PER_SECOND": "4"})
    chat = chat_page(server)
    chat.open()
    page = chat.page
    reads: list[int] = []

    def without_the_answer_at_first(route: Any) -> None:
        response = route.fetch()
        session = response.json()
        reads.append(len(session["messages"]))
        if len(reads) <= 2:
            session["messages"] = session["messages"][:-1]
        route.fulfill(response=response, json=session)

    page.route("**/api/sessions/*/*", without_the_answer_at_first)
    type_message(chat, "a long answer, stopped")
    # Stopped once it is being written: the server has the turn (stopped before the request
    # left, it would have nothing to store). Its first words, not a later one: at 4 words a
    # second, "You said" came after expect's 5 s on a loaded machine.
    expect(chat.answers().last).to_contain_text("Demo mode")
    page.keyboard.press("Escape")
    chat.wait_for_answers(1)
    expect(chat.answers().last).to_have_attribute("data-status", "stopped")
    expect(page.locator(".message.user .branch-controls .edit")).to_have_count(1)
    expect(page.locator(".message.user .branch-controls .edit")).to_have_count(1)
    expect(page.locator(".message.assistant .branch-controls .regenerate")).to_have_count(1)
    assert len(reads) >= 3 and reads[-1] == 2  # two held back, then the stored answer
    chat.assert_clean()


def test_keys_enter_shift_enter_escape_and_up(start_server: StartServer, chat_page: Any) -> None:
    server = start_server({"SLUICE_LLM__DEMO__WORDS_PER_SECOND": "4"})
    chat = chat_page(server)
    chat.open()
    page = chat.page
    box = page.locator("#input")
    expect(box).to_be_focused()
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    expect(box).to_have_value("first line\nsecond line")
    expect(page.locator(".message")).to_have_count(0)
    page.keyboard.press("Enter")
    expect(page.locator(".message.user .content")).to_have_text(["first line\nsecond line"])
    expect(box).to_have_value("")
    # Escape stops the answer being written; what arrived stays.
    expect(page.locator("#stop")).to_be_visible()
    expect(chat.answers().last).to_contain_text("Demo mode")  # its first words
    page.keyboard.press("Escape")
    chat.wait_for_answers(1)
    expect(chat.answers().last).to_have_attribute("data-status", "stopped")

    # ↑ in the empty box edits the last message sent: its editor opens with its text.
    editor = page.locator(".message.user .branch-editor-input")
    expect(page.locator(".message.user .branch-controls .edit")).to_have_count(1)
    box.focus()
    page.keyboard.press("ArrowUp")
    expect(editor).to_be_focused()
    expect(editor).to_have_value("first line\nsecond line")
    page.keyboard.press("Escape")  # closes the editor, changes nothing
    expect(editor).to_have_count(0)
    # In a box with text, ↑ only moves the caret: nothing is replaced, no editor opens.
    box.focus()
    page.keyboard.type("draft")
    page.keyboard.press("ArrowUp")
    expect(box).to_have_value("draft")
    expect(editor).to_have_count(0)
    box.fill("")
    # After a reload, ↑ still edits the conversation's last question.
    page.reload()
    page.wait_for_selector("#app[data-ready='true']")
    expect(page.locator(".message.user .content")).to_have_text(["first line\nsecond line"])
    box.focus()
    page.keyboard.press("ArrowUp")
    expect(editor).to_have_value("first line\nsecond line")
    chat.assert_clean()
