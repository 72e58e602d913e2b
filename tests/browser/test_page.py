"""The chat page in headless Chromium against the real server and the demo provider.

Every wait is on a condition in the page; nothing sleeps. Each test ends with
``assert_clean()``: no page error, no console error (a CSP violation is one) and no dialog.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Route, expect

from tests.browser.conftest import ChatPage
from tests.fakes.llm_upstreams import Reply
from tests.fakes.threaded import ThreadedFakes, openai_env
from tests.support.server import RunningServer

pytestmark = pytest.mark.browser

# Records, from inside the page, how the newest answer's text grows and when the page
# received the terminal event (the answer's data-received attribute), plus the connection
# indicator's states. Installed by the test, not the page.
OBSERVE_ANSWER = """
() => {
  window.__paints = [];
  window.__receivedAt = null;
  window.__connStates = [];
  const conn = document.getElementById('connection');
  new MutationObserver(() => window.__connStates.push(conn.dataset.state))
    .observe(conn, {attributes: true, attributeFilter: ['data-state']});
  const tick = () => {
    const answers = document.querySelectorAll('.message.assistant');
    const last = answers[answers.length - 1];
    if (last) {
      const len = last.querySelector('.content').textContent.length;
      const prev = window.__paints[window.__paints.length - 1];
      if (!prev || prev.len !== len) window.__paints.push({t: performance.now(), len});
      if (last.dataset.received && window.__receivedAt === null) {
        window.__receivedAt = performance.now();
      }
    }
    if (!last || !['complete', 'error', 'stopped'].includes(last.dataset.status)) {
      requestAnimationFrame(tick);
    }
  };
  requestAnimationFrame(tick);
}
"""


def answer_text(chat: ChatPage, index: int = -1) -> str:
    answers = chat.answers()
    count = answers.count()
    return str(answers.nth(index % count).locator(".content").inner_text())


def test_streams_with_several_paints_then_suggestions_and_context(
    start_server: Any, chat_page: Any, artifacts: Path
) -> None:
    server = start_server({"SLUICE_LLM__DEMO__WORDS_PER_SECOND": "30"})
    chat = chat_page(server)
    chat.open()
    chat.page.evaluate(OBSERVE_ANSWER)

    chat.send("Find me a restaurant in Tokyo")
    # While stages run, the status line names the stage.
    expect(chat.page.locator("#status-line")).to_be_visible()
    chat.wait_for_answers(1)

    paints = chat.page.evaluate("window.__paints")
    received_at = chat.page.evaluate("window.__receivedAt")
    assert received_at is not None
    growing_before_complete = [p["len"] for p in paints if p["t"] < received_at and p["len"] > 0]
    # Several paints, growing, before the complete event arrived. (Not strictly monotonic:
    # a closing "*" turns "*Demo" into <em>Demo</em>, one character shorter.)
    grew = sum(b > a for a, b in itertools.pairwise(growing_before_complete))
    assert grew >= 5, paints
    assert growing_before_complete[-1] > 4 * growing_before_complete[0], paints
    assert "open" in chat.page.evaluate("window.__connStates")

    text = answer_text(chat)
    assert "You said: Find me a restaurant in Tokyo" in text
    assert "Demo mode" in text
    # The user's message is in the list, the answer is rendered Markdown (a list, code).
    expect(chat.page.locator(".message.user .content")).to_have_text(
        "Find me a restaurant in Tokyo"
    )
    assert chat.page.locator(".message.assistant .content li").count() >= 1
    assert chat.page.locator(".message.assistant .content code").count() >= 1

    expect(chat.page.locator("#context-items")).to_contain_text("location: Tokyo")
    suggestions = chat.page.locator("#suggestions .suggestion")
    expect(suggestions.first).to_be_visible()
    expect(chat.page.locator("#status-line")).to_be_hidden()
    expect(chat.page.locator("#connection-text")).to_have_text("Ready")
    chat.page.screenshot(path=str(artifacts / "chat-desktop-light.png"), full_page=True)

    # A click on a suggestion sends it, in the same conversation.
    first = suggestions.first.inner_text()
    suggestions.first.click()
    chat.wait_for_answers(2)
    expect(chat.page.locator(".message.user .content").nth(1)).to_have_text(first)
    assert f"You said: {first}" in answer_text(chat)
    expect(chat.page.locator("#session-list .session")).to_have_count(1)
    chat.assert_clean()


def test_reload_restores_the_conversation_and_history_opens_it(
    demo_server: RunningServer, chat_page: Any
) -> None:
    server = demo_server
    chat = chat_page(server)
    chat.open()
    chat.send("Find me a restaurant in Tokyo")
    chat.wait_for_answers(1)
    chat.send("And a museum in Kyoto?")
    chat.wait_for_answers(2)
    expect(chat.page.locator("#session-list .session")).to_have_count(1)
    assert re.search(r"#session=.+", chat.page.url)

    # A reload keeps the conversation (the URL names the session).
    chat.page.reload()
    chat.page.wait_for_selector("#app[data-ready='true']")
    expect(chat.page.locator(".message.user .content")).to_have_text(
        ["Find me a restaurant in Tokyo", "And a museum in Kyoto?"]
    )
    expect(chat.page.locator(".message.assistant")).to_have_count(2)
    assert "You said: And a museum in Kyoto?" in answer_text(chat, 1)

    # "New chat" empties the page; the history list brings the conversation back.
    chat.page.click("#new-chat")
    expect(chat.page.locator(".message")).to_have_count(0)
    expect(chat.page.locator("#empty-state")).to_be_visible()
    chat.page.locator("#session-list .session-open").first.click()
    expect(chat.page.locator(".message.user .content")).to_have_text(
        ["Find me a restaurant in Tokyo", "And a museum in Kyoto?"]
    )
    expect(chat.page.locator("#context-items")).to_contain_text("Tokyo")

    # And a new conversation after "new chat" is a second session.
    chat.page.click("#new-chat")
    chat.send("Hello again")
    chat.wait_for_answers(1)
    expect(chat.page.locator("#session-list .session")).to_have_count(2)
    chat.assert_clean()


def test_arabic_reads_right_to_left_and_code_stays_left_to_right(
    demo_server: RunningServer, chat_page: Any, artifacts: Path
) -> None:
    server = demo_server
    chat = chat_page(server)
    chat.open()
    arabic = "مرحبا بك في سلوس. كيف حالك اليوم؟"
    box = chat.page.locator("#input")
    box.focus()
    # Shift+Enter adds lines; only Enter sends.
    chat.page.keyboard.type("Hello")
    chat.page.keyboard.press("Shift+Enter")
    chat.page.keyboard.press("Shift+Enter")
    chat.page.keyboard.insert_text(arabic)
    chat.page.keyboard.press("Shift+Enter")
    chat.page.keyboard.press("Shift+Enter")
    chat.page.keyboard.insert_text("```\nprint('سلام')\n```")
    assert chat.page.locator(".message").count() == 0
    chat.page.keyboard.press("Enter")
    chat.wait_for_answers(1)

    answer = chat.answers().last.locator(".content")
    rtl = answer.locator("p", has_text=arabic)
    expect(rtl).to_have_count(1)
    assert rtl.evaluate("p => getComputedStyle(p).direction") == "rtl"
    assert rtl.inner_text() == arabic  # multi-byte text intact
    english = answer.locator("p", has_text="You said: Hello")
    assert english.evaluate("p => getComputedStyle(p).direction") == "ltr"
    code = answer.locator("pre")
    expect(code).to_have_count(1)
    assert code.evaluate("p => getComputedStyle(p).direction") == "ltr"
    assert "print('سلام')" in code.inner_text()

    # A message written in Arabic is shown right to left in its own bubble.
    chat.send(arabic)
    chat.wait_for_answers(2)
    bubble = chat.page.locator(".message.user .content").last
    assert bubble.evaluate("e => getComputedStyle(e).direction") == "rtl"
    chat.page.screenshot(path=str(artifacts / "chat-arabic.png"), full_page=True)
    chat.assert_clean()


XSS_PAYLOADS = [
    "<script>window.__xss = 'script'; alert('script')</script>",
    "<img src=x onerror=\"window.__xss = 'img'; alert('img')\">",
    '<svg onload="window.__xss = \'svg\'"><circle r="5"/></svg>',
    "[click me](javascript:window.__xss='link';alert('link'))",
    '<a href="javascript:alert(1)" id="raw-link">raw link</a>',
    "<iframe src=\"javascript:alert('iframe')\"></iframe>",
    "![pic](javascript:alert('img-md'))",
    "<details open ontoggle=\"alert('toggle')\">x</details>",
    "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
]


def test_xss_payloads_in_an_answer_render_inert(demo_server: RunningServer, chat_page: Any) -> None:
    server = demo_server
    chat = chat_page(server)
    chat.open()
    message = "\n\n".join(XSS_PAYLOADS)
    chat.send(message)
    chat.wait_for_answers(1)
    content = chat.answers().last.locator(".content")
    # The payload really came back in the answer (the demo echoes it), as text.
    text = content.inner_text()
    assert "<script>window.__xss = 'script'" in text
    assert "onerror=" in text

    report = content.evaluate(
        """el => ({
            dangerous: el.querySelectorAll('script, img, svg, iframe, object, embed, details,'
                                           + ' style, form, input, math').length,
            handlers: [...el.querySelectorAll('*')].flatMap(n =>
                [...n.attributes].map(a => a.name).filter(a => a.startsWith('on'))),
            hrefs: [...el.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
            styles: el.querySelectorAll('[style]').length,
        })"""
    )
    assert report["dangerous"] == 0, report
    assert report["handlers"] == [], report
    assert report["styles"] == 0, report
    assert all(re.match(r"^(https?:|mailto:)", h) for h in report["hrefs"]), report

    # Clicking every link in the answer runs nothing either.
    for link in content.locator("a").all():
        link.click(modifiers=["Alt"], no_wait_after=True)
    assert chat.page.evaluate("window.__xss") is None
    chat.assert_clean()  # no dialog, no page error, no CSP report


def test_streaming_off_uses_the_json_endpoint(demo_server: RunningServer, chat_page: Any) -> None:
    server = demo_server
    chat = chat_page(server)
    chat.open()
    toggle = chat.page.locator("#streaming-toggle")
    expect(toggle).to_be_checked()
    toggle.uncheck()
    chat.send("Find me a restaurant in Tokyo")
    chat.wait_for_answers(1)
    assert "You said: Find me a restaurant in Tokyo" in answer_text(chat)
    posts = [url for method, url, _ in chat.requests if method == "POST"]
    assert any("/api/conversation/" in u for u in posts), posts
    assert not any("/api/conversation-stream/" in u for u in posts), posts
    expect(chat.page.locator("#suggestions .suggestion").first).to_be_visible()
    expect(chat.page.locator("#context-items")).to_contain_text("location: Tokyo")

    # The setting is remembered across a reload.
    chat.page.reload()
    chat.page.wait_for_selector("#app[data-ready='true']")
    expect(chat.page.locator("#streaming-toggle")).not_to_be_checked()
    chat.assert_clean()


def test_a_dropped_stream_resumes_without_gap_or_duplicate(
    start_server: Any, chat_page: Any
) -> None:
    """The POST response is cut after a few chunks (as a network drop would): the page
    reconnects to GET /api/streams/{id} with Last-Event-ID and the answer continues."""
    server = start_server({"SLUICE_STREAM__RETRY_MS": "200"})
    chat = chat_page(server)
    cut: dict[str, Any] = {}

    def truncate(route: Route) -> None:
        response = route.fetch()
        frames = response.text().split("\n\n")
        chunk_frames = [i for i, f in enumerate(frames) if "event: chunk" in f]
        keep = frames[: chunk_frames[3] + 1]  # up to and including the 4th chunk
        ids = [int(m) for f in keep for m in re.findall(r"^id: (\d+)$", f, re.M)]
        cut["last_id"] = max(ids)
        cut["full"] = response.text()
        route.fulfill(
            status=response.status,
            headers=response.headers,
            body="\n\n".join(keep) + "\n\n",
        )

    chat.page.route("**/api/conversation-stream/**", truncate)
    chat.open()
    chat.page.evaluate(OBSERVE_ANSWER)
    chat.send("Find me a restaurant in Tokyo")
    chat.wait_for_answers(1)
    expect(chat.answers().last).to_have_attribute("data-status", "complete")

    resumes = [(u, h) for m, u, h in chat.requests if m == "GET" and "/api/streams/" in u]
    assert len(resumes) == 1, resumes
    assert resumes[0][1].get("last-event-id") == str(cut["last_id"])

    complete = next(
        json.loads(f.split("data: ", 1)[1])
        for f in cut["full"].split("\n\n")
        if "event: complete" in f
    )
    text = answer_text(chat)
    said = "You said: Find me a restaurant in Tokyo"
    assert text.count(said) == 1
    assert text.count("Demo mode") == 1
    rendered_expected = chat.page.evaluate(
        """async (md) => {
            const m = await import('/static/js/markdown.js');
            const div = document.createElement('div');
            div.append(m.renderMarkdown(md));
            return div.textContent;
        }""",
        complete["message"],
    )
    shown = chat.answers().last.locator(".content").evaluate("e => e.textContent")
    assert shown == rendered_expected
    states = chat.page.evaluate("window.__connStates")
    assert "waiting" in states or "reconnecting" in states, states
    chat.assert_clean()


def test_stop_keeps_the_partial_answer(start_server: Any, chat_page: Any) -> None:
    server = start_server({"SLUICE_LLM__DEMO__WORDS_PER_SECOND": "5"})
    chat = chat_page(server)
    chat.open()
    chat.send("Tell me a long story about Tokyo")
    stop = chat.page.locator("#stop")
    expect(stop).to_be_visible()
    chat.page.wait_for_function(
        "() => (document.querySelector('.message.assistant .content')"
        "?.textContent.length ?? 0) > 10"
    )
    stop.click()
    chat.wait_for_answers(1)
    answer = chat.answers().last
    expect(answer).to_have_attribute("data-status", "stopped")
    expect(answer.locator(".message-note")).to_have_text("Stopped.")
    assert len(answer.locator(".content").inner_text()) > 10
    assert any(m == "POST" and u.endswith("/cancel") for m, u, _ in chat.requests)
    expect(chat.page.locator("#send")).to_be_visible()
    chat.assert_clean()


def test_rate_limited_reads_as_a_person_would_want(start_server: Any, chat_page: Any) -> None:
    server = start_server(
        {"SLUICE_RATE_LIMIT__BURST": "1", "SLUICE_RATE_LIMIT__REQUESTS_PER_MINUTE": "1"}
    )
    chat = chat_page(server)
    chat.open()
    chat.send("first")
    chat.wait_for_answers(1)
    chat.send("second")
    chat.wait_for_answers(2)
    answer = chat.answers().last
    expect(answer).to_have_attribute("data-status", "error")
    expect(answer.locator(".message-note")).to_have_text(re.compile(r"try again in \d+ s", re.I))
    retry = answer.locator(".retry")
    expect(retry).to_be_visible()
    expect(retry).to_be_disabled()  # counts down until the limit lifts
    expect(retry).to_have_text(re.compile(r"Retry in \d+"))
    chat.assert_clean()


@pytest.mark.parametrize(
    ("name", "viewport", "scheme"),
    [
        ("phone-light", {"width": 390, "height": 844}, "light"),
        ("phone-dark", {"width": 390, "height": 844}, "dark"),
        ("desktop-dark", {"width": 1280, "height": 800}, "dark"),
    ],
)
def test_layout_on_phone_and_desktop_light_and_dark(
    demo_server: RunningServer,
    chat_page: Any,
    artifacts: Path,
    name: str,
    viewport: dict[str, int],
    scheme: str,
) -> None:
    server = demo_server
    chat = chat_page(server, viewport=viewport, color_scheme=scheme)
    chat.open()
    chat.send("Find me a restaurant in Tokyo")
    chat.wait_for_answers(1)
    page = chat.page
    # Nothing overflows sideways.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    if scheme == "dark":
        assert background == "rgb(22, 24, 29)"
    else:
        assert background == "rgb(255, 255, 255)"
    menu = page.locator("#sidebar-toggle")
    sidebar = page.locator("#sidebar")
    if viewport["width"] < 800:
        # The history is a drawer: closed (and out of the Tab order), opened by the menu
        # button, closed by Escape.
        assert not sidebar.evaluate("e => e.getBoundingClientRect().right > 0")
        expect(sidebar).to_be_hidden()
        menu.click()
        expect(menu).to_have_attribute("aria-expanded", "true")
        page.wait_for_function(
            "() => document.getElementById('sidebar').getBoundingClientRect().left >= 0"
        )
        page.screenshot(path=str(artifacts / f"chat-{name}-drawer.png"))
        expect(page.locator("#new-chat")).to_be_focused()
        page.keyboard.press("Escape")
        expect(menu).to_have_attribute("aria-expanded", "false")
        expect(menu).to_be_focused()
        expect(sidebar).to_be_hidden()
    else:
        expect(menu).to_be_hidden()
        expect(sidebar).to_be_visible()
    page.screenshot(path=str(artifacts / f"chat-{name}.png"))
    chat.assert_clean()


def test_keyboard_only_and_live_region(demo_server: RunningServer, chat_page: Any) -> None:
    server = demo_server
    chat = chat_page(server)
    chat.open()
    page = chat.page
    # The message box has focus on load: type and press Enter, no mouse.
    expect(page.locator("#input")).to_be_focused()
    page.keyboard.type("Find me a restaurant in Tokyo")
    page.keyboard.press("Enter")
    chat.wait_for_answers(1)
    live = page.locator("#answer-live")
    assert live.get_attribute("aria-live") == "polite"
    expect(live).to_contain_text("You said: Find me a restaurant in Tokyo")
    # Tab reaches the suggestions and Enter on one sends it.
    page.locator("#suggestions .suggestion").first.focus()
    label = page.evaluate("document.activeElement.textContent")
    page.keyboard.press("Enter")
    chat.wait_for_answers(2)
    expect(page.locator(".message.user .content").last).to_have_text(label)
    chat.assert_clean()


@pytest.mark.parametrize("motion", ["no-preference", "reduce"])
def test_a_burst_is_typed_out_unless_the_reader_prefers_reduced_motion(
    motion: str, start_server: Any, chat_page: Any, fakes: ThreadedFakes
) -> None:
    """The typewriter reveals a burst of text over several frames. A reader who asked the
    system for reduced motion gets no typing effect: the first paint holds the whole burst.
    (The other browser tests ask for reduced motion: they check what arrives, not its pace.)"""
    burst = "word " * 200
    fakes.openai.default = Reply(text=[burst])
    chat = chat_page(start_server(openai_env(fakes)), reduced_motion=motion)
    chat.open()
    chat.page.evaluate(OBSERVE_ANSWER)
    chat.send("All at once, please")
    chat.wait_for_answers(1)
    paints = [p["len"] for p in chat.page.evaluate("window.__paints") if p["len"] > 0]
    whole = paints[-1]  # the rendered paragraph: the burst's words and marked's newlines
    assert whole >= len(burst.strip()), paints
    if motion == "reduce":
        assert paints == [whole], paints
    else:
        assert len(paints) >= 5 and paints[0] < whole // 4, paints
    chat.assert_clean()


def test_long_answers_render_incrementally(demo_server: RunningServer, chat_page: Any) -> None:
    """Settled blocks are rendered once and kept; only the tail is redone per frame."""
    server = demo_server
    chat = chat_page(server)
    chat.open()
    result = chat.page.evaluate(
        """async () => {
            const { IncrementalMarkdown } = await import('/static/js/markdown.js');
            const div = document.createElement('div');
            const md = new IncrementalMarkdown(div);
            let text = '';
            md.update(text += 'First paragraph.\\n\\n');
            md.update(text += 'Second para');
            const first = div.querySelector('p');
            const rendered = [];
            const realAppend = div.append.bind(div);
            div.append = (...nodes) => { rendered.push(nodes); realAppend(...nodes); };
            for (let i = 0; i < 200; i++) md.update(text += ' word');
            md.update(text += '.\\n\\n```\\nx = 1\\n```\\n\\nEnd\\n');
            md.finish(text);
            return {
                sameFirst: div.querySelector('p') === first,
                settledText: text.slice(0, md.settled).length,
                paragraphs: div.querySelectorAll('p').length,
                pre: div.querySelectorAll('pre').length,
                calls: rendered.length,
                wholeText: div.textContent,
            };
        }"""
    )
    assert result["sameFirst"], "the first paragraph was re-rendered"
    assert result["paragraphs"] == 3 and result["pre"] == 1, result
    words = " ".join(result["wholeText"].split())
    assert words == "First paragraph. Second para" + " word" * 200 + ". x = 1 End", words
    chat.assert_clean()


def test_copy_puts_the_answer_markdown_on_the_clipboard(
    demo_server: RunningServer, chat_page: Any
) -> None:
    server = demo_server
    chat = chat_page(server, permissions=["clipboard-read", "clipboard-write"])
    chat.open()
    chat.send("Find me a restaurant in Tokyo")
    chat.wait_for_answers(1)
    copy = chat.answers().last.locator(".copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    copied = chat.page.evaluate("navigator.clipboard.readText()")
    assert "You said: Find me a restaurant in Tokyo" in copied
    assert "`OPENAI_API_KEY`" in copied  # the Markdown source, not the rendered text
    chat.assert_clean()


def test_a_failed_send_offers_retry_which_resends(
    demo_server: RunningServer, chat_page: Any
) -> None:
    """No response at all (the network failed): a retryable error, and Retry sends again."""
    server = demo_server
    chat = chat_page(server)
    chat.open()
    chat.page.route("**/api/conversation-stream/**", lambda route: route.abort("failed"))
    chat.send("Find me a restaurant in Tokyo")
    chat.wait_for_answers(1)
    answer = chat.answers().last
    expect(answer).to_have_attribute("data-status", "error")
    expect(answer.locator(".message-note")).to_have_text(re.compile("connection was lost", re.I))
    # The browser reports the aborted request as a console error: expected here.
    assert all("ERR_FAILED" in e for e in chat.console_errors), chat.console_errors
    chat.console_errors.clear()

    chat.page.unroute("**/api/conversation-stream/**")
    answer.locator(".retry").click()
    chat.wait_for_answers(1)
    expect(chat.answers()).to_have_count(1)  # the failed answer was replaced
    expect(chat.answers().last).to_have_attribute("data-status", "complete")
    expect(chat.page.locator(".message.user")).to_have_count(1)  # not sent twice
    assert "You said: Find me a restaurant in Tokyo" in answer_text(chat)
    chat.assert_clean()
