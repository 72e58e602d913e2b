"""Pictures on the chat page, in headless Chromium against the real server and a fake
OpenAI: attached by the button's file chooser, by paste and by drop; shown as thumbnails
that can be removed; a file of the wrong type or too large refused with the limits said;
sent with the message as image parts; shown in the sent message and again after a reload,
served by the server to their owner.

Every wait is on a condition in the page; the test ends with ``assert_clean()``.
"""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.test_accessibility import audit, axe_source
from tests.conftest import StartServer
from tests.fakes.llm_upstreams import Reply
from tests.fakes.threaded import ThreadedFakes

pytestmark = pytest.mark.browser

__all__ = ["axe_source"]  # the fixture, used here by name

LIMITS = "PNG, JPEG, WebP or GIF up to 5 MB, 4 at most."
# A 1x1 GIF: what the page pastes and drops, made in the page from these bytes.
GIF = bytes.fromhex("47494638396101000100800000ff00000000002c00000000010001000002024401003b")


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG of one colour, so that the browser draws it (its size can be checked)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


# Put files on the page the way a paste or a drop does: a DataTransfer holding them.
CARRY = """
([kind, b64, name, type]) => {
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, {type}));
  if (kind === 'paste') {
    document.getElementById('input').dispatchEvent(
      new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));
  } else {
    const form = document.getElementById('composer');
    for (const t of ['dragover', 'drop']) {
      form.dispatchEvent(new DragEvent(t, {dataTransfer: data, bubbles: true, cancelable: true}));
    }
  }
}
"""


def test_pictures_attached_three_ways_are_sent_shown_and_kept(
    start_server: StartServer,
    fakes: ThreadedFakes,
    chat_page: Any,
    axe_source: str,
    artifacts: Path,
) -> None:
    fakes.openai.script(Reply(text=["A red square and a blue one."]))
    server = start_server(
        {
            "SLUICE_LLM__PROVIDERS": "openai",
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": fakes.openai.base_url,
        }
    )
    chat = chat_page(server)
    chat.open()
    page = chat.page
    attach = page.get_by_role("button", name="Attach pictures")
    # The limits are said before anything is chosen: the button's description and tooltip.
    expect(attach).to_have_accessible_description(LIMITS)
    expect(attach).to_have_attribute("title", f"Attach pictures: {LIMITS}")

    red, blue = png(8, 6, (220, 30, 30)), png(6, 8, (30, 30, 220))
    with page.expect_file_chooser() as chosen:
        attach.click()
    chooser = chosen.value
    assert chooser.is_multiple()
    chooser.set_files(
        [
            {"name": "red.png", "mimeType": "image/png", "buffer": red},
            {"name": "blue.png", "mimeType": "image/png", "buffer": blue},
        ]
    )
    tray = page.get_by_role("list", name="Pictures to send")
    expect(tray.get_by_role("img")).to_have_count(2)
    expect(tray.get_by_role("img", name="red.png")).to_be_visible()
    expect(page.locator("#attach-note")).to_have_text(LIMITS)

    page.evaluate(CARRY, ["paste", base64.b64encode(GIF).decode(), "pasted.gif", "image/gif"])
    expect(tray.get_by_role("img", name="pasted.gif")).to_be_visible()
    page.evaluate(CARRY, ["drop", base64.b64encode(GIF).decode(), "dropped.gif", "image/gif"])
    expect(tray.get_by_role("img", name="dropped.gif")).to_be_visible()
    expect(tray.get_by_role("img")).to_have_count(4)
    assert audit(page, axe_source) == []
    page.screenshot(path=str(artifacts / "pictures-previews.png"))

    # A fifth is one too many; a text file and a picture over 5 MB are refused outright.
    page.evaluate(CARRY, ["drop", base64.b64encode(GIF).decode(), "fifth.gif", "image/gif"])
    note = page.locator("#attach-note")
    expect(note).to_have_text(f"fifth.gif not added: {LIMITS}")
    expect(note).to_have_attribute("data-refused", "true")
    tray.get_by_role("button", name="Remove dropped.gif").click()
    tray.get_by_role("button", name="Remove pasted.gif").click()
    expect(tray.get_by_role("img")).to_have_count(2)
    page.locator("#attach-input").set_input_files(
        [
            {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a picture"},
            {"name": "huge.png", "mimeType": "image/png", "buffer": red + bytes(5 * 1024 * 1024)},
        ]
    )
    expect(note).to_have_text(f"notes.txt, huge.png not added: {LIMITS}")
    expect(tray.get_by_role("img")).to_have_count(2)
    page.screenshot(path=str(artifacts / "pictures-refused.png"))

    chat.send("What are these?")
    chat.wait_for_answers(1)
    expect(tray).to_be_hidden()
    sent = page.locator(".message.user").last
    expect(sent.get_by_role("img")).to_have_count(2)
    expect(sent).to_contain_text("What are these?")
    # The fake OpenAI was given both pictures as image parts, with the text.
    (asked,) = [m for m in fakes.openai.requests[-1].body["messages"] if m["role"] == "user"]
    assert asked["content"] == [
        {"type": "text", "text": "What are these?"},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64," + base64.b64encode(red).decode()},
        },
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64," + base64.b64encode(blue).decode()},
        },
    ]
    page.screenshot(path=str(artifacts / "pictures-sent.png"))

    page.reload()
    page.wait_for_selector("#app[data-ready='true']")
    kept = page.locator(".message.user").last.get_by_role("img")
    expect(kept).to_have_count(2)
    # Drawn from the server's copy, at their own sizes: the bytes came back whole.
    page.wait_for_function(
        "() => [...document.querySelectorAll('.message.user img')].every(i => i.complete)"
    )
    sizes = kept.evaluate_all("imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
    assert sizes == [[8, 6], [6, 8]]
    assert all("/images/" in src for src in kept.evaluate_all("imgs => imgs.map(i => i.src)"))
    page.screenshot(path=str(artifacts / "pictures-after-reload.png"))
    chat.assert_clean()
