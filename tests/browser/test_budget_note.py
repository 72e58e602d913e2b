"""The page and the usage budget: quiet while there is plenty, what is left when it runs
low, and plainly gone — with when it comes back — once it is spent."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect


def test_the_page_says_what_is_left_then_that_it_is_gone(start_server: Any, chat_page: Any) -> None:
    # A demo answer to "first" takes about fifty tokens (estimated): one leaves under a
    # fifth of 60, two cross it.
    server = start_server({"SLUICE_BUDGETS__TOKENS_PER_USER": "60"})
    chat = chat_page(server)
    chat.open()
    note = chat.page.locator("#budget-note")
    expect(note).to_be_hidden()
    chat.send("first")
    chat.wait_for_answers(1)
    expect(note).to_have_text(re.compile(r"^About \d+ tokens left of this month's budget\.$"))
    expect(note).to_have_attribute("data-level", "low")
    chat.send("second")  # under the line when it starts: it runs, and crosses it
    chat.wait_for_answers(2)
    expect(chat.answers().last).to_have_attribute("data-status", "complete")
    gone = re.compile(r"used all of this month's budget\. It comes back on 1 \w+, 00:00 UTC")
    expect(note).to_have_text(gone)
    chat.send("third")
    chat.wait_for_answers(3)
    answer = chat.answers().last
    expect(answer).to_have_attribute("data-status", "error")
    expect(answer.locator(".message-note")).to_have_text(re.compile(r"budget .* is spent"))
    expect(answer.locator(".retry")).to_be_hidden()  # not retryable before the reset
    chat.page.reload()
    chat.page.wait_for_selector("#app[data-ready='true']")
    expect(chat.page.locator("#budget-note")).to_have_text(gone)
    chat.assert_clean()
