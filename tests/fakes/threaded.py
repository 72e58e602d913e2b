"""Run a fake upstream on its own event loop in a thread, for tests that drive the real server
(a subprocess) with blocking HTTP calls."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from tests.fakes.llm_upstreams import FakeAnthropic, FakeGemini, FakeOpenAI, Reply

__all__ = ["ThreadedFakes", "openai_env", "threaded_fakes"]

T = TypeVar("T")


class ThreadedFakes:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.openai = FakeOpenAI()
        self.gemini = FakeGemini()
        self.anthropic = FakeAnthropic()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the fakes' loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def openai_env(fakes: ThreadedFakes, **env: str) -> dict[str, str]:
    """Server environment for answering from the fake OpenAI alone (no fallback)."""
    return {
        "SLUICE_LLM__PROVIDERS": "openai",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": fakes.openai.base_url,
        "SLUICE_LLM__IDLE_TIMEOUT_SECONDS": "30",
        **env,
    }


def openai_gemini_env(fakes: ThreadedFakes, **env: str) -> dict[str, str]:
    """Server environment for the fake OpenAI, then the fake Gemini: each answers alone when
    a /v1 request names it as its model."""
    return {
        "SLUICE_LLM__PROVIDERS": "openai,gemini",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": fakes.openai.base_url,
        "GEMINI_API_KEY": "gm-test",
        "GEMINI_BASE_URL": fakes.gemini.url,
        **env,
    }


def cleared(fakes: ThreadedFakes) -> ThreadedFakes:
    """The fakes with no scripted replies or recorded requests left over from a test before."""
    for fake in (fakes.openai, fakes.gemini):
        fake.replies.clear()
        fake.default = Reply()
        fake.requests.clear()
    return fakes


@contextmanager
def threaded_fakes() -> Iterator[ThreadedFakes]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-upstreams", daemon=True)
    thread.start()
    fakes = ThreadedFakes(loop)
    try:
        fakes.run(fakes.openai.start())
        fakes.run(fakes.gemini.start())
        fakes.run(fakes.anthropic.start())
        yield fakes
    finally:
        fakes.run(fakes.openai.stop())
        fakes.run(fakes.gemini.stop())
        fakes.run(fakes.anthropic.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
