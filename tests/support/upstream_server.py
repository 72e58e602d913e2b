"""One real server per test module, in front of fake upstreams (OpenAI, Gemini, Anthropic
on their own loop in a thread): the set-up of the modules that drive sluice with a client
library (an SDK, an npm package, an agent framework).

Both start once per module, the costly part; each test gets the fakes cleared (``fakes``).
A module names the fixtures it uses (``server = upstream_server.server``: pytest finds
fixtures among a module's names) and gives the server's environment as its own
module-scoped ``server_env`` fixture, which may ask for ``upstreams`` to point the server at
the fakes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import openai
import pytest

from tests.fakes.threaded import ThreadedFakes, cleared, threaded_fakes
from tests.support.server import RunningServer, launch

__all__ = ["fakes", "sdk", "server", "upstreams"]


@pytest.fixture(scope="module")
def upstreams() -> Iterator[ThreadedFakes]:
    """The module's fake upstreams."""
    with threaded_fakes() as running:
        yield running


@pytest.fixture(scope="module")
def server(
    server_env: Mapping[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """The module's server, started with the module's ``server_env``."""
    running = launch(tmp_path_factory.mktemp("data"), server_env)
    yield running
    running.stop()


@pytest.fixture
def fakes(upstreams: ThreadedFakes) -> ThreadedFakes:
    """The module's fakes, with no scripted replies or recorded requests left over."""
    return cleared(upstreams)


@pytest.fixture
def sdk(server: RunningServer) -> Iterator[openai.OpenAI]:
    """OpenAI's Python SDK on the server's /v1, as alice, with the SDK's retries off."""
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="tok-alice", max_retries=0)
    yield client
    client.close()
