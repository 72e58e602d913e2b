"""What the three baselines share: where the upstream is, and the wire format they emit.

Each baseline does the same job as sluice's core: POST /chat {"message"} -> call the upstream
through the openai SDK with stream=True -> re-emit every text delta as an SSE ``chunk`` event,
then one ``complete`` event (or ``error``). ``GET /healthz`` answers for readiness.
"""

from __future__ import annotations

import json
import os

UPSTREAM = os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:9000/v1")
API_KEY = os.environ.get("OPENAI_API_KEY", "bench")
MODEL = "bench-model"
PORT = int(os.environ.get("PORT", "8000"))
# The SDK's default pool caps connections at 1,000 and queues the rest; a relay that means to
# hold 10,000 open streams has to raise it. Keep-alive stays at the SDK default of 100.
MAX_CONNECTIONS = 20_000
KEEPALIVE = 100


def sse(event: str, data: dict[str, object]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
