"""A native EventSource on GET /api/streams/{id}: it works, and its own automatic reconnect
(with Last-Event-ID) continues the answer with no gap and no duplicate."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.cut_proxy import CuttableProxy

pytestmark = pytest.mark.browser

START_AND_LISTEN = """
async () => {
  const me = await (await fetch('/api/me')).json();
  const response = await fetch('/api/conversation-stream/' + me.user_id, {
    method: 'POST',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({message: 'Find me a restaurant in Tokyo'}),
  });
  const streamId = response.headers.get('X-Stream-Id');
  await response.body.cancel();  // leave the POST: the answer goes on (on_disconnect=continue)
  window.received = [];
  window.opens = 0;
  const source = new EventSource('/api/streams/' + streamId);
  window.source = source;
  source.onopen = () => { window.opens += 1; };
  for (const type of ['status', 'context', 'chunk', 'complete', 'error']) {
    source.addEventListener(type, (e) => {
      window.received.push({id: Number(e.lastEventId), type: e.type, data: JSON.parse(e.data)});
      if (type === 'complete' || type === 'error') source.close();
    });
  }
  return streamId;
}
"""


def test_eventsource_resumes_by_itself(start_server: Any, chat_page: Any) -> None:
    server = start_server(
        {"SLUICE_LLM__DEMO__WORDS_PER_SECOND": "15", "SLUICE_STREAM__RETRY_MS": "200"}
    )
    with CuttableProxy(server.port) as proxy:
        chat = chat_page(proxy)
        chat.page.goto(proxy.url + "/")  # the page's origin: its cookie and CSP apply
        stream_id = chat.page.evaluate(START_AND_LISTEN)
        chat.page.wait_for_function(
            "() => window.received.filter(e => e.type === 'chunk').length >= 3", timeout=20_000
        )
        proxy.cut()  # the network drops under the open EventSource
        chat.page.wait_for_function(
            "() => window.received.some(e => e.type === 'complete')", timeout=30_000
        )
        received: list[dict[str, Any]] = chat.page.evaluate("() => window.received")
        opens = chat.page.evaluate("() => window.opens")

    ids = [event["id"] for event in received]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # no gap, no duplicate
    assert ids[0] == 1 and received[-1]["type"] == "complete"
    text = "".join(e["data"]["content"] for e in received if e["type"] == "chunk")
    assert text == received[-1]["data"]["message"]
    assert opens >= 2  # it reconnected on its own
    resumes = [r for r in proxy.requests if r.startswith(f"GET /api/streams/{stream_id}".encode())]
    assert len(resumes) >= 2
    assert b"last-event-id: " in resumes[-1].lower()
