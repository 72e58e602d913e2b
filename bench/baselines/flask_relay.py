"""Baseline: Flask on gunicorn (gthread), the sync openai client, a streamed generator.

Run by the bench runner as
``gunicorn -k gthread -w 1 --threads 100 bench.baselines.flask_relay:app``: one worker so that it
gets one core like the others; 100 threads is the number of streams it can serve at once
(each open stream holds a thread for its whole life), a common production setting.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import openai
from flask import Flask, Response, request

from bench.baselines.common import API_KEY, KEEPALIVE, MAX_CONNECTIONS, MODEL, UPSTREAM, sse

client = openai.OpenAI(
    base_url=UPSTREAM,
    api_key=API_KEY,
    max_retries=0,
    http_client=httpx2.Client(
        limits=httpx2.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=KEEPALIVE),
        timeout=httpx2.Timeout(600, connect=5.0),
    ),
)
app = Flask(__name__)


@app.post("/chat")
def chat() -> Response:
    message = request.get_json()["message"]

    def events() -> Iterator[str]:
        parts: list[str] = []
        try:
            stream = client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": message}], stream=True
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    text = chunk.choices[0].delta.content
                    parts.append(text)
                    yield sse("chunk", {"type": "chunk", "content": text})
            yield sse("complete", {"type": "complete", "message": "".join(parts)})
        except openai.OpenAIError as exc:
            yield sse("error", {"type": "error", "code": "upstream", "message": str(exc)})

    return Response(events(), mimetype="text/event-stream", headers={"Cache-Control": "no-cache"})


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
