"""Edit and regenerate in headless Chromium, against the real server and the demo provider:
what a person clicks (Edit, Save & send, ‹ ›, Regenerate) and what they then see, also after
a reload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_edit_switch_back_regenerate_and_reload(
    start_server: Any, chat_page: Any, artifacts: Path
) -> None:
    server = start_server()
    chat = chat_page(server)
    page = chat.page
    chat.open()
    chat.send("Find me a restaurant in Tokyo")
    chat.wait_for_answers(1)
    questions = page.locator(".message.user .content")
    answers = page.locator(".message.assistant .content")

    # Edit the question in place: the new question and its answer replace the old ones.
    page.get_by_role("button", name="Edit message").click()
    editor = page.get_by_role("textbox", name="Edit your message")
    expect(editor).to_have_value("Find me a restaurant in Tokyo")
    editor.fill("Find me a museum in Kyoto")
    page.get_by_role("button", name="Save & send").click()
    chat.wait_for_answers(1)
    expect(questions).to_have_text(["Find me a museum in Kyoto"])
    expect(answers).to_have_count(1)
    expect(answers.first).to_contain_text("Find me a museum in Kyoto")
    expect(page.get_by_role("group", name="Version 2 of 2")).to_be_visible()
    page.screenshot(path=str(artifacts / "branches-edited.png"))

    # ‹ back to the first version: its question and its answer again.
    page.get_by_role("button", name="Previous version").click()
    expect(questions).to_have_text(["Find me a restaurant in Tokyo"])
    expect(answers.first).to_contain_text("Find me a restaurant in Tokyo")
    expect(page.get_by_role("group", name="Version 1 of 2")).to_be_visible()
    expect(page.get_by_role("button", name="Previous version")).to_be_disabled()

    # Regenerate the answer: a second variant of it, the question unchanged.
    page.get_by_role("button", name="Regenerate the answer").click()
    chat.wait_for_answers(1)
    expect(questions).to_have_text(["Find me a restaurant in Tokyo"])
    expect(answers).to_have_count(1)
    answer_versions = page.locator(".message.assistant").get_by_role("group")
    expect(answer_versions).to_have_attribute("aria-label", "Version 2 of 2")

    # A reload shows the branch that was chosen, with its versions.
    page.reload()
    page.wait_for_selector("#app[data-ready='true']")
    expect(questions).to_have_text(["Find me a restaurant in Tokyo"])
    expect(page.locator(".message.user").get_by_role("group")).to_have_attribute(
        "aria-label", "Version 1 of 2"
    )
    expect(page.locator(".message.assistant").get_by_role("group")).to_have_attribute(
        "aria-label", "Version 2 of 2"
    )
    page.get_by_role("button", name="Next version").first.click()
    expect(questions).to_have_text(["Find me a museum in Kyoto"])
    page.screenshot(path=str(artifacts / "branches-after-reload.png"))
    chat.assert_clean()
