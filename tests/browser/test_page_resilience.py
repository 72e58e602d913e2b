"""The page against what really happens: reloads, second tabs, lost networks, stalled links,
a phone, a refused API key, a proxy in the way.

Long answers come from the fake OpenAI upstream at a known pace, made of words ``w000 w001 …
end.`` with no Markdown in them, so the rendered answer's text must equal ``complete.message``
exactly: a duplicate or a gap shows. Every wait is on a condition in the page or on a request.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ChatPage
from tests.fakes.llm_upstreams import Reply
from tests.fakes.threaded import ThreadedFakes, openai_env
from tests.support.cut_proxy import CuttableProxy
from tests.support.nginx import BUFFERING, nginx_in_front
from tests.support.server import RunningServer
from tests.support.sse import bearer, request

pytestmark = pytest.mark.browser


def long_answer(words: int) -> tuple[list[str], str]:
    pieces = [f"w{i:03d} " for i in range(words)] + ["end."]
    return pieces, "".join(pieces)


def shown(chat: ChatPage, index: int = -1) -> str:
    answers = chat.answers()
    # marked ends a paragraph with a newline: the text itself must match exactly
    return str(answers.nth(index % answers.count()).locator(".content").text_content()).strip()


def wait_words(chat: ChatPage, count: int) -> None:
    """Until the newest answer shows at least ``count`` of the answer's words."""
    chat.page.wait_for_function(
        """n => {
            const all = document.querySelectorAll('.message.assistant .content');
            const last = all[all.length - 1];
            return ((last?.textContent ?? '').match(/w\\d{3}/g) ?? []).length >= n;
        }""",
        arg=count,
    )


def upstream_asked(fakes: ThreadedFakes, question: str, within: float = 30) -> None:
    """Until the fake OpenAI has been sent a request whose last message is ``question``."""

    def last_message(body: dict[str, Any]) -> str:
        content = body["messages"][-1].get("content")
        return content if isinstance(content, str) else json.dumps(content)

    deadline = time.monotonic() + within
    while not any(question in last_message(r.body) for r in list(fakes.openai.requests)):
        assert time.monotonic() < deadline, f"the model was never asked {question!r}"
        time.sleep(0.02)  # a polling interval: the fake records from its own thread


def wait_idle(chat: ChatPage) -> None:
    """Until the page has ended its turn: an answer shows complete a moment before its stream
    closes, and a busy page does not send (Enter keeps the message in the box)."""
    expect(chat.page.locator("#app")).to_have_attribute("data-busy", "false")


def questions(chat: ChatPage) -> list[str]:
    return [str(t) for t in chat.page.locator(".message.user .content").all_text_contents()]


def roles(chat: ChatPage) -> list[str]:
    return [
        str(r)
        for r in chat.page.locator(".message").evaluate_all("ms => ms.map(m => m.dataset.role)")
    ]


def stream_gets(chat: ChatPage) -> list[dict[str, str]]:
    return [h for m, u, h in chat.requests if m == "GET" and "/api/streams/" in u]


def test_reload_mid_answer_resumes_it_at_several_points(
    start_server: Any, chat_page: Any, fakes: ThreadedFakes
) -> None:
    pieces, message = long_answer(120)
    fakes.openai.default = Reply(text=pieces, interval=0.04)
    server = start_server(openai_env(fakes))
    chat = chat_page(server)
    chat.open()
    chat.send("Tell me a long story")
    for point in (5, 45, 85):
        wait_words(chat, point)
        chat.page.reload()
        chat.page.wait_for_selector("#app[data-ready='true']")
        if point < 85:  # time enough left to see the page busy with it, not "Ready"
            expect(chat.page.locator("#stop")).to_be_visible()
            expect(chat.page.locator("#input")).to_be_enabled()
            expect(chat.page.locator("#status-line")).to_be_visible()
    chat.wait_for_answers(1)
    expect(chat.answers().last).to_have_attribute("data-status", "complete")
    assert shown(chat) == message  # no gap, no duplicate
    assert roles(chat) == ["user", "assistant"]
    # Each reload followed the answer from its first event, like a resume from nothing.
    follows = [h for h in stream_gets(chat) if "last-event-id" not in h]
    assert len(follows) >= 2, stream_gets(chat)
    # And history agrees once it is over.
    chat.page.reload()
    chat.page.wait_for_selector("#app[data-ready='true']")
    expect(chat.answers()).to_have_count(1)
    assert shown(chat) == message
    chat.assert_clean()


def test_second_tabs_follow_the_answer_and_a_second_message_waits_its_turn(
    start_server: Any, chat_page: Any, fakes: ThreadedFakes
) -> None:
    pieces, message = long_answer(80)
    fakes.openai.default = Reply(text=pieces, interval=0.04)
    fakes.openai.script(Reply(text=["A short one."]))
    server = start_server(openai_env(fakes))
    first = chat_page(server)
    first.open()
    first.send("Hello")
    first.wait_for_answers(1)
    session_hash = first.page.url.split("#", 1)[1]

    # A second tab on the conversation, opened while an answer is being written.
    first.send("The long one, please")
    wait_words(first, 5)
    second = first.sibling()
    second.open("/#" + session_hash)
    expect(second.answers()).to_have_count(2)
    expect(second.page.locator("#stop")).to_be_visible()
    second.wait_for_answers(2)
    first.wait_for_answers(2)
    assert shown(second) == shown(first) == message
    assert questions(second) == ["Hello", "The long one, please"]

    # The first tab starts another answer; the second, idle and hidden meanwhile, comes
    # back into view and picks it up.
    wait_idle(first)
    first.send("Another long one")
    wait_words(first, 3)
    second.page.evaluate(
        """() => {
            Object.defineProperty(document, 'visibilityState', {value: 'visible',
                                                                configurable: true});
            document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    expect(second.answers()).to_have_count(3)
    wait_words(second, 10)
    second.wait_for_answers(3)
    assert shown(second) == message

    # A third from the first tab; the second sends its own message without looking: the
    # server refuses it (409 turn_in_progress) and the page follows the running answer,
    # with its question, and gives the message back to send afterwards. The answer waits
    # halfway until the second tab has been refused, so that it is still being written.
    third = Reply(text=pieces, interval=0.04, pause_at=len(pieces) // 2)
    fakes.openai.script(third)
    first.wait_for_answers(3)
    wait_idle(first)
    first.send("And a third")
    # The model has been asked for the third answer: the server runs that turn before the
    # second tab sends. (Words on the page alone were not enough: until the first tab drew
    # its new answer, the newest answer on the page was the last one, already whole, and
    # under load the second tab's message could reach the server first and be the one run.)
    upstream_asked(fakes, "And a third")
    wait_words(first, 3)
    # The second tab has ended its own following of the answer before: busy, it would not
    # send.
    wait_idle(second)
    second.send("My own question")
    expect(second.page.locator("#toast")).to_contain_text("still being written")
    expect(second.answers()).to_have_count(4)
    fakes.loop.call_soon_threadsafe(third.resume.set)
    second.wait_for_answers(4)
    assert shown(second) == message
    assert questions(second) == ["Hello", "The long one, please", "Another long one", "And a third"]
    expect(second.page.locator("#input")).to_have_value("My own question")
    assert second.page.locator(".message-note[data-kind='error']").count() == 0
    refused = [u for m, u, _ in second.requests if m == "POST" and "conversation-stream" in u]
    assert len(refused) == 1

    # Sent when the answer is done, it comes after it: each question before its answer.
    second.page.locator("#input").press("Enter")
    second.wait_for_answers(5)
    first.page.reload()
    first.page.wait_for_selector("#app[data-ready='true']")
    expect(first.answers()).to_have_count(5)
    assert roles(first) == ["user", "assistant"] * 5
    assert questions(first)[-1] == "My own question"
    # The browser logs the refused POST (409) as a failed resource load: expected here.
    assert all("409" in e for e in second.console_errors), second.console_errors
    second.console_errors.clear()
    first.assert_clean()
    second.assert_clean()


def test_a_network_cut_mid_answer_resumes_when_it_returns(
    start_server: Any, chat_page: Any, fakes: ThreadedFakes
) -> None:
    """The network goes (the browser offline, its connection reset), comes back, and the
    first try after that fails too: the answer still ends whole."""
    pieces, message = long_answer(100)
    fakes.openai.default = Reply(text=pieces, interval=0.04)
    server = start_server(openai_env(fakes, SLUICE_STREAM__RETRY_MS="200"))
    with CuttableProxy(server.port) as proxy:
        chat = chat_page(proxy)
        chat.open()
        failed_once: list[str] = []

        def abort_first_resume(route: Any) -> None:
            if not failed_once:
                failed_once.append(route.request.url)
                route.abort("connectionreset")
            else:
                route.continue_()

        chat.page.route("**/api/streams/**", abort_first_resume)
        chat.send("Tell me a long story")
        wait_words(chat, 10)
        # Emulated offline leaves open responses alone; the proxy cuts this one for real.
        chat.page.context.set_offline(True)
        proxy.cut()
        expect(chat.page.locator("#connection")).to_have_attribute("data-state", "offline")
        expect(chat.page.locator("#connection-text")).to_have_text(re.compile("Offline"))
        before = len(re.findall(r"w\d{3}", shown(chat)))
        assert not stream_gets(chat)  # nothing is tried while offline
        chat.page.context.set_offline(False)
        chat.wait_for_answers(1)
        expect(chat.answers().last).to_have_attribute("data-status", "complete")
        assert shown(chat) == message
        assert failed_once, "the resume was never tried"
        resumed = [h for h in stream_gets(chat) if int(h.get("last-event-id", "0")) >= before]
        assert len(resumed) >= 2, stream_gets(chat)  # the aborted try, then the good one
        # The browser reports the cut and the aborted request as console errors: expected.
        assert all(
            re.search(
                r"ERR_(INTERNET_DISCONNECTED|CONNECTION_RESET|INCOMPLETE_CHUNKED_ENCODING)", e
            )
            for e in chat.console_errors
        ), chat.console_errors
        chat.console_errors.clear()
        chat.assert_clean()


def test_a_stalled_connection_is_replaced_by_the_watchdog(
    start_server: Any, chat_page: Any
) -> None:
    """Nothing fails, nothing arrives: no event and no heartbeat for twice the heartbeat
    interval, and the page reconnects on its own."""
    server = start_server(
        {"SLUICE_LLM__DEMO__WORDS_PER_SECOND": "8", "SLUICE_STREAM__HEARTBEAT_SECONDS": "0.5"}
    )
    with CuttableProxy(server.port) as proxy:
        chat = chat_page(proxy)
        chat.open()
        chat.send("Find me a restaurant in Tokyo")
        chat.page.wait_for_function(
            "() => (document.querySelector('.message.assistant .content')"
            "?.textContent.length ?? 0) > 20"
        )
        proxy.freeze(b"/api/conversation-stream/")
        chat.wait_for_answers(1)
        expect(chat.answers().last).to_have_attribute("data-status", "complete")
        resumed = [h for h in stream_gets(chat) if "last-event-id" in h]
        assert resumed, "the page never reconnected"
        text = shown(chat)
        assert text.count("You said: Find me a restaurant in Tokyo") == 1
        assert text.count("Demo mode") == 1
        chat.assert_clean()


def test_phone_nothing_hides_under_the_composer_or_suggestions(
    demo_server: RunningServer, chat_page: Any, artifacts: Path
) -> None:
    server = demo_server
    for name, viewport in (
        ("phone", {"width": 390, "height": 844}),
        ("desktop", {"width": 1280, "height": 800}),
    ):
        chat = chat_page(server, viewport=viewport, is_mobile=name == "phone")
        chat.open()
        chat.send("Find me a restaurant in Tokyo")
        chat.wait_for_answers(1)
        chat.page.locator("#suggestions .suggestion").first.click()
        chat.wait_for_answers(2)
        expect(chat.page.locator("#suggestions .suggestion").first).to_be_visible()
        last = chat.answers().last
        expect(last.locator(".copy")).to_be_visible()
        # Boxes, once the page has settled (the suggestions are in and follow() has run).
        chat.page.wait_for_function(
            """() => {
                const s = document.getElementById('messages');
                return s.scrollHeight - s.scrollTop - s.clientHeight < 2;
            }""",
            timeout=5_000,  # the end of the conversation stays in view: no reason to wait long
        )
        boxes = chat.page.evaluate(
            """() => {
                const box = (el) => el.getBoundingClientRect().toJSON();
                const last = [...document.querySelectorAll('.message.assistant')].pop();
                return {
                    scroller: box(document.getElementById('messages')),
                    content: box(last.querySelector('.content')),
                    copy: box(last.querySelector('.copy')),
                    suggestions: box(document.getElementById('suggestions')),
                    composer: box(document.getElementById('composer')),
                    viewport: {width: innerWidth, height: innerHeight},
                };
            }"""
        )
        scroller, copy = boxes["scroller"], boxes["copy"]
        for part in ("content", "copy"):
            assert boxes[part]["bottom"] <= scroller["bottom"] + 0.5, (name, part, boxes)
            assert boxes[part]["bottom"] <= boxes["suggestions"]["top"] + 0.5, (name, boxes)
            assert boxes[part]["bottom"] <= boxes["composer"]["top"] + 0.5, (name, boxes)
        assert copy["top"] >= scroller["top"], boxes
        assert boxes["composer"]["bottom"] <= boxes["viewport"]["height"] + 0.5, boxes
        assert chat.page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        chat.page.screenshot(path=str(artifacts / f"two-turns-{name}.png"))
        chat.assert_clean()


def test_a_refused_key_shows_the_servers_words_and_no_useless_retry(
    start_server: Any, chat_page: Any, fakes: ThreadedFakes
) -> None:
    fakes.openai.default = Reply(status=401, message="Incorrect API key provided: sk-test")
    server = start_server(openai_env(fakes))
    chat = chat_page(server)
    chat.open()
    chat.send("Hello")
    chat.wait_for_answers(1)
    note = chat.answers().last.locator(".message-note")
    expect(note).to_contain_text("refused the API key")
    expect(note).to_contain_text("operator")
    text = str(note.text_content())
    assert "unavailable right now" not in text  # not the page's own guess
    assert "127.0.0.1" not in text and str(fakes.openai.port) not in text
    assert "sk-test" not in text
    expect(chat.answers().last.locator(".retry")).to_be_hidden()
    # The operator's log names the provider and where it was called.
    line = next(
        line for line in server.output().splitlines() if "refused" in line or "auth" in line
    )
    assert "openai" in line and fakes.openai.base_url in line, line
    chat.assert_clean()


def test_a_failing_answer_is_never_reported_done_before_its_error(
    start_server: Any, fakes: ThreadedFakes
) -> None:
    """The page shows "Writing the answer ✓" on nothing: on the wire, an error comes without
    a preceding ``status llm done``."""
    fakes.openai.default = Reply(status=401, message="bad key")
    server = start_server(openai_env(fakes))
    stream = request(
        server.url,
        "POST",
        "/api/conversation-stream/alice",
        body={"message": "hi"},
        headers=bearer("tok-alice"),
    )
    frames = [f.data for f in stream.read_all() if f.data]
    assert frames[-1]["type"] == "error"
    llm_done = [f for f in frames if f["type"] == "status" and f["stage"] == "llm"]
    assert [f["state"] for f in llm_done] == ["start"], frames


def test_small_truths(start_server: Any, chat_page: Any) -> None:
    """Progress moves while the answer is written; a half-closed *emphasis* shows no stray
    asterisk; remembered context in words, not identifiers; suggestions other than the one
    just sent and in the conversation's script; the answer's label stays on reopening."""
    server = start_server({"SLUICE_LLM__DEMO__WORDS_PER_SECOND": "25"})
    chat = chat_page(server)
    chat.open()
    chat.page.evaluate(
        """() => {
            window.__progress = [];
            window.__texts = [];
            const line = document.getElementById('status-line');
            new MutationObserver(() => {
                if (!line.hidden) window.__progress.push(Number(line.dataset.progress));
            }).observe(line, {attributes: true, attributeFilter: ['data-progress']});
            const tick = () => {
                const c = document.querySelector('.message.assistant .content');
                const a = document.querySelector('.message.assistant');
                if (c && a.dataset.status === 'streaming') window.__texts.push(c.textContent);
                if (!a || !['complete', 'error'].includes(a.dataset.status)) {
                    requestAnimationFrame(tick);
                }
            };
            requestAnimationFrame(tick);
        }"""
    )
    chat.send("Find me a restaurant in Tokyo")
    chat.wait_for_answers(1)
    progress = chat.page.evaluate("window.__progress")
    writing = [p for p in progress if 80 < p < 100]
    assert len(set(writing)) >= 5, progress  # it moves while the answer is written
    assert progress == sorted(progress), progress  # and never goes back
    texts = chat.page.evaluate("window.__texts")
    assert len(texts) >= 5
    assert not [t for t in texts if "*" in t], [t for t in texts if "*" in t][:3]
    expect(chat.answers().last.locator(".content em").first).to_contain_text("Demo mode")

    chips = chat.page.locator("#context-items")
    expect(chips).to_contain_text("topic: restaurants")
    expect(chips).not_to_contain_text("find_restaurant")
    expect(chips).not_to_contain_text("last intent")
    # Nor in the demo's account of what the pipeline understood.
    answer = shown(chat)
    assert "topic: find restaurant" in answer
    assert "last_intent" not in answer and "find_restaurant" not in answer

    expect(chat.answers().last.locator(".meta-text")).to_have_text("demo answer")
    suggestions = chat.page.locator("#suggestions .suggestion")
    picked = str(suggestions.first.text_content())
    suggestions.first.click()
    chat.wait_for_answers(2)
    expect(suggestions.first).to_be_visible()
    assert picked not in suggestions.all_text_contents()  # not the one just used

    # Reopened from history, the answers keep their label.
    chat.page.reload()
    chat.page.wait_for_selector("#app[data-ready='true']")
    expect(chat.answers()).to_have_count(2)
    expect(chat.answers().locator(".meta-text")).to_have_text(["demo answer", "demo answer"])

    # An Arabic conversation is not offered English follow-ups.
    chat.page.click("#new-chat")
    chat.send("أريد مطعم في طوكيو")
    chat.wait_for_answers(1)
    expect(chat.page.locator("#suggestions")).to_be_hidden()
    chat.assert_clean()


def test_deleting_a_conversation_can_be_undone(demo_server: RunningServer, chat_page: Any) -> None:
    server = demo_server
    chat = chat_page(server)
    # The page's clock, not the wall's, decides when the undo notice expires: on a loaded
    # machine the six seconds could pass between the click on Delete and the one on Undo.
    chat.page.clock.install()
    chat.open()
    chat.send("Keep me")
    chat.wait_for_answers(1)
    sessions = chat.page.locator("#session-list .session")
    expect(sessions).to_have_count(1)

    chat.page.clock.pause_at(chat.page.evaluate("Date.now()") + 1_000)
    sessions.first.locator(".session-delete").click()
    expect(sessions).to_have_count(0)
    expect(chat.page.locator(".message")).to_have_count(0)
    toast = chat.page.locator("#toast")
    expect(toast).to_contain_text("Conversation deleted.")
    chat.page.locator("#toast-action").click()
    expect(toast).to_be_hidden()
    expect(sessions).to_have_count(1)
    expect(chat.page.locator(".message.user .content")).to_have_text(["Keep me"])
    assert not [u for m, u, _ in chat.requests if m == "DELETE"]

    # Not undone: the DELETE goes once the notice has gone, and not before.
    sessions.first.locator(".session-delete").click()
    expect(toast).to_contain_text("Conversation deleted.")
    chat.page.clock.run_for(5_900)
    expect(toast).to_be_visible()
    assert not [u for m, u, _ in chat.requests if m == "DELETE"]
    with chat.page.expect_request(lambda r: r.method == "DELETE"):
        chat.page.clock.run_for(200)
    expect(toast).to_be_hidden()
    chat.page.clock.resume()
    chat.page.reload()
    chat.page.wait_for_selector("#app[data-ready='true']")
    expect(chat.page.locator("#session-empty")).to_be_visible()
    chat.assert_clean()


def test_the_connection_check_in_the_menu(
    demo_server: RunningServer, chat_page: Any, artifacts: Path
) -> None:
    server = demo_server
    chat = chat_page(server, viewport={"width": 390, "height": 844})
    chat.open()
    chat.page.click("#sidebar-toggle")
    chat.page.click("#check-open")
    dialog = chat.page.locator("#check-dialog")
    expect(dialog).to_be_visible()
    chat.page.click("#check-run")
    result = chat.page.locator("#check-result")
    expect(result).to_be_visible(timeout=20_000)
    expect(result).to_have_attribute("data-verdict", "streaming")
    expect(chat.page.locator("#check-verdict")).to_have_text("Streaming works.")
    expect(chat.page.locator("#check-lines")).to_contain_text("Events arrive at once")
    expect(chat.page.locator("#check-lines")).to_contain_text("Heartbeats pass")
    chat.page.screenshot(path=str(artifacts / "connection-check-phone.png"))
    chat.page.click("#check-close")
    expect(dialog).to_be_hidden()
    chat.assert_clean()


@pytest.mark.nginx
def test_the_connection_check_in_the_page_finds_a_buffering_proxy(
    start_server: Any, chat_page: Any, tmp_path: Path, artifacts: Path
) -> None:
    """The page served through real nginx that buffers: the check says so, with the delay."""
    with nginx_in_front(start_server, tmp_path, BUFFERING) as (_, url):
        chat = chat_page(SimpleNamespace(url=url))
        chat.open()
        chat.page.click("#check-open")
        chat.page.click("#check-run")
        result = chat.page.locator("#check-result")
        expect(result).to_be_visible(timeout=20_000)
        expect(result).to_have_attribute("data-verdict", "buffered")
        expect(chat.page.locator("#check-verdict")).to_have_text("Something buffers the stream.")
        expect(chat.page.locator("#check-lines")).to_contain_text(
            re.compile(r"The latest event was \d\.\d s behind")
        )
        expect(chat.page.locator("#check-lines")).to_contain_text("docs/deploy.md")
        chat.page.screenshot(path=str(artifacts / "connection-check-buffered-desktop.png"))
        chat.assert_clean()
