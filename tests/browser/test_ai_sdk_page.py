"""The README's ``useChat`` example (examples/ai-sdk/chat.jsx), bundled with esbuild from npm
at test time, in headless Chromium against the real server: it sends, streams, shows a tool
step, resumes an answer after a reload, and stops one.

The page is served from sluice's origin, as a proxy or a Next.js rewrite of ``/api/*`` would
serve it (Playwright answers the page's own two files), so it is signed in by sluice's
identity cookie like sluice's own page. The upstream is the fake OpenAI, calling the test tool
package's ``echo``. Every wait is on a condition in the page.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Route, expect

from tests import test_tool_turns
from tests.browser.conftest import ChatPage
from tests.conftest import StartServer
from tests.fakes.llm_upstreams import Reply
from tests.fakes.threaded import ThreadedFakes
from tests.support.ai_sdk import ai_sdk_modules
from tests.support.server import ROOT, RunningServer
from tests.support.sse import json_request

pytestmark = pytest.mark.browser

EXAMPLE = ROOT / "examples" / "ai-sdk"
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- file: (?P<file>examples/ai-sdk/\S+) -->\n```\w*\n(?P<body>.*?)```", re.S)

tools_path = test_tool_turns.tools_path


def test_the_readme_shows_the_example_as_it_is() -> None:
    blocks = {m["file"]: m["body"] for m in BLOCK.finditer(README.read_text(encoding="utf-8"))}
    assert "examples/ai-sdk/chat.jsx" in blocks
    for file, body in blocks.items():
        assert (ROOT / file).read_text(encoding="utf-8") == body, f"{file} differs from README"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example bundled as the README says, with esbuild from npm."""
    modules = ai_sdk_modules()
    out = tmp_path_factory.mktemp("ai-sdk-page")
    subprocess.run(
        [
            str(modules / ".bin" / "esbuild"),
            str(EXAMPLE / "chat.jsx"),
            "--bundle",
            "--minify",
            "--format=esm",
            "--jsx=automatic",
            f"--outfile={out / 'chat.js'}",
            "--log-level=warning",
        ],
        env={**os.environ, "NODE_PATH": str(modules)},
        check=True,
        timeout=120,
    )
    (out / "index.html").write_bytes((EXAMPLE / "index.html").read_bytes())
    return out


def open_example(chat: ChatPage, bundle: Path) -> None:
    """Serve the bundle at ``/example/`` of sluice's origin, and open it."""

    def serve(route: Route) -> None:
        name = route.request.url.split("/example/")[1].split("?")[0] or "index.html"
        kind = "text/html" if name.endswith(".html") else "text/javascript"
        route.fulfill(body=(bundle / name).read_bytes(), content_type=kind)

    chat.page.context.route(f"{chat.base_url}/example/**", serve)
    chat.page.goto(f"{chat.base_url}/example/index.html")
    expect(chat.page.locator("#input")).to_be_enabled()


def send(chat: ChatPage, text: str) -> None:
    chat.page.locator("#input").fill(text)
    chat.page.locator("#send").click()


def assistant(chat: ChatPage) -> Any:
    return chat.page.locator(".message.assistant").last


def cookie(chat: ChatPage) -> dict[str, str]:
    """The page's identity, for requests made beside it."""
    cookies = {c["name"]: c["value"] for c in chat.page.context.cookies()}
    return {"Cookie": f"sluice_uid={cookies['sluice_uid']}"}


def saved(server: RunningServer, chat: ChatPage, chat_id: str) -> list[tuple[str, str, str]]:
    headers = cookie(chat)
    status, me, _ = json_request(server.url, "GET", "/api/me", headers=headers)
    assert status == 200 and me is not None
    status, body, _ = json_request(
        server.url, "GET", f"/api/sessions/{me['user_id']}/{chat_id}", headers=headers
    )
    assert status == 200 and body is not None
    return [(m["role"], m["content"], m["status"]) for m in body["messages"]]


def test_use_chat_sends_streams_shows_the_tool_step_and_resumes_after_a_reload(
    start_server: StartServer,
    fakes: ThreadedFakes,
    tools_path: str,
    chat_page: Any,
    bundle: Path,
    artifacts: Path,
) -> None:
    # Eight seconds of answer: a reload on a busy machine is back long before its end.
    words = [f"w{i} " for i in range(80)]
    fakes.openai.script(
        Reply(text=["Checking. "], tool_calls=[("c1", "echo", '{"text": "hi"}')]),
        Reply(text=words, interval=0.1),
    )
    server = test_tool_turns.start(start_server, fakes, tools_path)
    chat = chat_page(server)
    open_example(chat, bundle)
    chat_id = chat.page.url.split("chat=")[1]
    send(chat, "Echo hi, then tell a long story")

    tool = assistant(chat).locator(".tool[data-tool='echo']")
    expect(tool).to_have_attribute("data-state", "output-available")
    expect(tool.locator(".output")).to_have_text("echo: hi")
    expect(assistant(chat).locator(".text").last).to_contain_text("w3 ")
    expect(chat.page.locator("main")).to_have_attribute("data-status", "streaming")

    # Mid-answer: the page goes away and comes back to the same chat.
    chat.page.reload()
    expect(chat.page.locator(".message.user")).to_have_text("Echo hi, then tell a long story")
    answer = assistant(chat)
    # The whole answer, from its start: the tool step, and every word once. (The status is
    # "ready" for an instant after the reload too, before the resumed stream starts: the
    # text is the condition, bounded by the 8 s the rest of the answer takes.)
    expect(answer.locator(".text").last).to_have_text("".join(words).strip(), timeout=20_000)
    expect(chat.page.locator("main")).to_have_attribute("data-status", "ready")
    expect(answer.locator(".tool[data-tool='echo'] .output")).to_have_text("echo: hi")
    expect(answer.locator(".model")).to_have_text(re.compile(r"^openai · "))
    assert saved(server, chat, chat_id)[-1] == (
        "assistant",
        "Checking. " + "".join(words),
        "complete",
    )
    chat.page.screenshot(path=str(artifacts / "ai-sdk-use-chat.png"), full_page=True)
    chat.assert_clean()


def test_stop_stops_the_model_not_only_the_page(
    start_server: StartServer,
    fakes: ThreadedFakes,
    tools_path: str,
    chat_page: Any,
    bundle: Path,
) -> None:
    fakes.openai.script(Reply(text=["Once ", "upon ", "never"], hang_at=2))
    server = test_tool_turns.start(start_server, fakes, tools_path)
    chat = chat_page(server)
    open_example(chat, bundle)
    chat_id = chat.page.url.split("chat=")[1]
    send(chat, "Tell me a story")
    expect(assistant(chat).locator(".text")).to_have_text("Once upon")
    closed_before = fakes.openai.closed
    chat.page.locator("#stop").click()
    assert fakes.run(fakes.openai.wait_closed(closed_before + 1, within=2.0)) < 2.0
    expect(chat.page.locator("main")).to_have_attribute("data-status", "ready")
    expect(chat.page.locator("#send")).to_be_visible()
    assert saved(server, chat, chat_id) == [
        ("user", "Tell me a story", "complete"),
        ("assistant", "Once upon ", "incomplete"),
    ]
    # Nothing to resume: a reload shows the chat as saved.
    chat.page.reload()
    expect(chat.page.locator(".message.assistant")).to_have_text("Once upon")
    expect(chat.page.locator("main")).to_have_attribute("data-status", "ready")
    path = f"/api/chat/{chat_id}/stream"
    assert json_request(server.url, "GET", path, headers=cookie(chat))[0] == 204
    chat.assert_clean()


def test_a_tool_waiting_for_approval_runs_once_allowed_on_the_page(
    start_server: StartServer,
    fakes: ThreadedFakes,
    tools_path: str,
    chat_page: Any,
    bundle: Path,
) -> None:
    fakes.openai.script(
        Reply(text=[], tool_calls=[("c1", "guarded_echo", '{"text": "one"}')]),
        Reply(text=["Allowed and done."]),
    )
    server = test_tool_turns.start(start_server, fakes, tools_path)
    chat = chat_page(server)
    open_example(chat, bundle)
    send(chat, "Echo one, carefully")
    tool = assistant(chat).locator(".tool[data-tool='guarded_echo']")
    expect(tool).to_have_attribute("data-state", "approval-requested")
    # The model is not asked again until the owner decides.
    assert len(fakes.openai.requests) == 1
    tool.get_by_role("button", name="Allow").click()
    expect(tool).to_have_attribute("data-state", "output-available")
    expect(tool.locator(".output")).to_have_text("guarded: one")
    expect(assistant(chat).locator(".text")).to_have_text("Allowed and done.")
    expect(chat.page.locator("main")).to_have_attribute("data-status", "ready")
    chat.assert_clean()
