"""Tool steps on the chat page in headless Chromium, against the real server.

The demo provider calls the built-in ``current_time`` tool (no approval); a fake OpenAI
upstream calls ``guarded_echo`` (a test tool package's ``@tool(requires_approval=True)``) and
``echo``, the same package and fake that tests/test_tool_turns.py drives over HTTP. Every
wait is on a condition in the page.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests import test_tool_turns
from tests.browser.conftest import ChatPage
from tests.conftest import StartServer
from tests.fakes.llm_upstreams import Reply, ThinkingReply
from tests.fakes.threaded import ThreadedFakes, openai_env

pytestmark = pytest.mark.browser

# The test tool package of the HTTP tool tests, as a fixture of this module too.
tools_path = test_tool_turns.tools_path
start_with_tools = test_tool_turns.start

GUARDED = Reply(text=[], tool_calls=[("c1", "guarded_echo", '{"text": "one"}')])


def step(chat: ChatPage, name: str) -> Any:
    return chat.page.locator(f".message.assistant .step.tool[data-tool='{name}']")


def answer_content(chat: ChatPage) -> Any:
    return chat.page.locator(".message.assistant .content").last


def ask_guarded(
    start_server: StartServer,
    fakes: ThreadedFakes,
    tools_path: str,
    chat_page: Any,
    then: str,
    **context: Any,
) -> tuple[ChatPage, Any]:
    """A page whose question makes the model call guarded_echo, then answer ``then``."""
    fakes.openai.script(GUARDED, Reply(text=[then]))
    server = start_with_tools(start_server, fakes, tools_path)
    chat = chat_page(server, **context)
    chat.open()
    chat.send("Echo one, carefully")
    return chat, step(chat, "guarded_echo")


def test_the_demo_time_tool_is_a_collapsed_step_that_opens_on_its_arguments_and_result(
    start_server: StartServer, chat_page: Any, artifacts: Path
) -> None:
    server = start_server({})
    chat = chat_page(server)
    chat.open()
    chat.send("What time is it in Tokyo?")
    chat.wait_for_answers(1)

    tool = step(chat, "current_time")
    expect(tool).to_have_count(1)
    expect(tool).to_have_attribute("data-phase", "done")
    expect(tool.locator("summary")).to_contain_text("current_time")
    expect(tool.locator("summary")).to_contain_text("Done in")
    details = tool.locator("details")
    assert details.get_attribute("open") is None
    expect(tool.locator(".step-arguments")).to_be_hidden()
    # No Allow/Deny on a call that needs none.
    expect(tool.get_by_role("button")).to_have_count(0)

    tool.locator("summary").click()
    expect(tool.locator(".step-arguments")).to_be_visible()
    args = tool.locator(".step-arguments").inner_text()
    assert '"timezone": "Asia/Tokyo"' in args
    result = tool.locator(".step-result").inner_text()
    assert result.endswith("+09:00"), result
    # The step is beside the answer, not in it.
    text = answer_content(chat).inner_text()
    assert "in Asia/Tokyo" in text
    assert answer_content(chat).locator(".step").count() == 0
    chat.page.screenshot(path=str(artifacts / "tool-step-light.png"), full_page=True)
    chat.assert_clean()


def test_allow_runs_the_waiting_call_and_the_answer_completes(
    start_server: StartServer,
    fakes: ThreadedFakes,
    tools_path: str,
    chat_page: Any,
    artifacts: Path,
) -> None:
    chat, tool = ask_guarded(
        start_server, fakes, tools_path, chat_page, "Allowed and done.", color_scheme="dark"
    )
    allow = tool.get_by_role("button", name="Allow guarded_echo")
    expect(allow).to_be_visible()
    expect(tool.get_by_role("button", name="Deny guarded_echo")).to_be_visible()
    expect(tool).to_have_attribute("data-phase", "awaiting")
    expect(tool.locator("summary")).to_contain_text("Waiting for your approval")
    # What is asked is in view before anyone allows it.
    expect(tool.locator(".step-arguments")).to_contain_text('"text": "one"')
    # The answer has not gone on without the decision.
    assert chat.answers().last.get_attribute("data-status") == "pending"
    chat.page.screenshot(path=str(artifacts / "tool-approval-dark.png"), full_page=True)

    allow.click()
    chat.wait_for_answers(1)
    expect(chat.answers().last).to_have_attribute("data-status", "complete")
    expect(tool).to_have_attribute("data-phase", "done")
    expect(tool.locator(".step-result")).to_have_text("guarded: one")
    expect(tool.get_by_role("button")).to_have_count(0)
    expect(answer_content(chat)).to_have_text("Allowed and done.")
    chat.assert_clean()


def test_deny_gives_a_denied_result_and_the_answer_goes_on(
    start_server: StartServer,
    fakes: ThreadedFakes,
    tools_path: str,
    chat_page: Any,
) -> None:
    chat, tool = ask_guarded(start_server, fakes, tools_path, chat_page, "Not run.")
    tool.get_by_role("button", name="Deny guarded_echo").click()
    chat.wait_for_answers(1)
    expect(tool).to_have_attribute("data-phase", "denied")
    expect(tool.locator("summary")).to_contain_text("Denied")
    expect(tool.get_by_role("button")).to_have_count(0)
    expect(answer_content(chat)).to_have_text("Not run.")
    # The model was told the call was denied; guarded_echo never ran.
    tool.locator("summary").click()
    assert "guarded:" not in tool.locator(".step-result").inner_text()
    chat.assert_clean()


def test_a_reload_keeps_the_waiting_call_and_its_allow_still_works(
    start_server: StartServer,
    fakes: ThreadedFakes,
    tools_path: str,
    chat_page: Any,
) -> None:
    chat, tool = ask_guarded(start_server, fakes, tools_path, chat_page, "Done after reload.")
    expect(tool.get_by_role("button", name="Allow guarded_echo")).to_be_visible()
    # The URL names the session once its context event arrived.
    chat.page.wait_for_function("location.hash.startsWith('#session=')")

    chat.page.reload()
    chat.page.wait_for_selector("#app[data-ready='true']")
    expect(chat.page.locator(".message.user .content")).to_have_text("Echo one, carefully")
    expect(tool).to_have_count(1)
    expect(tool).to_have_attribute("data-phase", "awaiting")
    tool.get_by_role("button", name="Allow guarded_echo").click()

    chat.wait_for_answers(1)
    expect(tool.locator(".step-result")).to_have_text("guarded: one")
    expect(tool).to_have_attribute("data-phase", "done")
    expect(answer_content(chat)).to_have_text("Done after reload.")
    chat.assert_clean()


def test_markup_in_arguments_and_results_stays_text(
    start_server: StartServer,
    fakes: ThreadedFakes,
    tools_path: str,
    chat_page: Any,
) -> None:
    payload = '<img src=x onerror="window.__pwned = 1"><b>bold</b>'
    fakes.openai.script(
        Reply(text=[], tool_calls=[("c1", "echo", json.dumps({"text": payload}))]),
        Reply(text=["Echoed."]),
    )
    server = start_with_tools(start_server, fakes, tools_path)
    chat = chat_page(server)
    chat.open()
    chat.send("Echo some markup")
    chat.wait_for_answers(1)

    tool = step(chat, "echo")
    tool.locator("summary").click()
    expect(tool.locator(".step-result")).to_have_text("echo: " + payload)
    expect(tool.locator(".step-arguments")).to_contain_text("<img src=x")
    steps = chat.page.locator(".message.assistant .steps")
    assert steps.locator("img").count() == 0
    assert steps.locator("b").count() == 0
    assert chat.page.evaluate("window.__pwned") is None
    chat.assert_clean()


def test_reasoning_shows_thinking_then_how_long_collapsed_and_comes_back_after_a_reload(
    start_server: StartServer, fakes: ThreadedFakes, chat_page: Any
) -> None:
    """A reasoning model behind the OpenAI-compatible fake, its reasoning paced 0.5 s apart:
    "Thinking…" while it streams, then "Thought for N s", collapsed, apart from the answer;
    after a reload, the same from history."""
    thought = ['First <img src=x onerror="window.__pwned = 1"> the question, ', "then ", "more."]
    fakes.openai.script(ThinkingReply(text=["The ", "answer."], reasoning=thought, interval=0.5))
    server = start_server(openai_env(fakes))
    chat = chat_page(server)
    chat.open()
    chat.send("Think first")

    reasoning = chat.page.locator(".message.assistant .step.reasoning")
    toggle = reasoning.get_by_role("button")
    expect(toggle).to_have_text("Thinking…")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    chat.wait_for_answers(1)
    expect(toggle).to_have_text(re.compile(r"^Thought for \d+ s$"))  # about 1 s: not "<1"
    expect(reasoning.locator(".step-reasoning")).to_be_hidden()
    expect(answer_content(chat)).to_have_text("The answer.")

    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(reasoning.locator(".step-reasoning")).to_have_text("".join(thought))
    assert reasoning.locator("img").count() == 0

    chat.page.wait_for_function("location.hash.startsWith('#session=')")
    chat.page.reload()
    chat.page.wait_for_selector("#app[data-ready='true']")
    expect(answer_content(chat)).to_have_text("The answer.")
    expect(reasoning).to_have_count(1)
    expect(toggle).to_have_text(re.compile(r"^Thought for \d+ s$"))  # the duration was kept
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(reasoning.locator(".step-reasoning")).to_have_text("".join(thought))
    assert chat.page.evaluate("window.__pwned") is None
    chat.assert_clean()
