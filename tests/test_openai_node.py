"""The /v1 API driven by OpenAI's npm package from Node (tests/clients/openai_node.cjs),
against the real server and the fake upstreams.

The package comes from the npm registry at a pinned version, installed once into a cache
directory (the newest release that still runs on the Node this project tests with).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fakes.llm_upstreams import ARABIC_EMOJI, Reply
from tests.fakes.threaded import ThreadedFakes
from tests.support import upstream_server
from tests.support.node import run_node_script
from tests.support.packages import cached_npm_package
from tests.support.server import ROOT, RunningServer

OPENAI_NPM_VERSION = "6.30.1"
SCRIPT = ROOT / "tests" / "clients" / "openai_node.cjs"


@pytest.fixture(scope="session")
def openai_package() -> Path:
    """The npm ``openai`` package's directory, installed from the registry once."""
    return cached_npm_package("openai", OPENAI_NPM_VERSION)


# The fixtures of tests/support/upstream_server.py, named here so that pytest finds them.
upstreams = upstream_server.upstreams
server = upstream_server.server
fakes = upstream_server.fakes


@pytest.fixture(scope="module")
def server_env(upstreams: ThreadedFakes) -> dict[str, str]:
    return {
        "SLUICE_LLM__PROVIDERS": "openai",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": upstreams.openai.base_url,
    }


def node(package: Path, server: RunningServer, scenario: str) -> Any:
    env = {"OPENAI_PACKAGE": str(package), "BASE_URL": server.url + "/v1", "TOKEN": "tok-alice"}
    return run_node_script(SCRIPT, scenario, env)


def test_node_streams(openai_package: Path, server: RunningServer, fakes: ThreadedFakes) -> None:
    fakes.openai.default = Reply(text=ARABIC_EMOJI, split_utf8=True)
    seen = node(openai_package, server, "stream")
    assert seen["ids"] == ["chatcmpl-" + seen["streamId"]]
    assert seen["role"] == "assistant"
    assert seen["text"] == "".join(ARABIC_EMOJI)
    assert seen["finishReason"] == "stop"
    assert seen["usage"] == {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}


def test_node_completes(openai_package: Path, server: RunningServer, fakes: ThreadedFakes) -> None:
    seen = node(openai_package, server, "complete")
    assert seen == {
        "object": "chat.completion",
        "text": "Hello, world!",
        "finishReason": "stop",
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }


def test_node_error_classes(
    openai_package: Path, server: RunningServer, fakes: ThreadedFakes
) -> None:
    seen = node(openai_package, server, "errors")
    assert "AuthenticationError" in seen["unauthenticated"]["classes"]
    assert seen["unauthenticated"]["status"] == 401
    assert "NotFoundError" in seen["unknownModel"]["classes"]
    assert seen["unknownModel"]["code"] == "model_not_found"
    assert "BadRequestError" in seen["tools"]["classes"]
    assert seen["tools"]["param"] == "tools" and "current_time" in seen["tools"]["message"]
    assert not fakes.openai.requests


def test_node_error_mid_stream(
    openai_package: Path, server: RunningServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.script(Reply(text=["one ", "two ", "three"], cut_at=2))
    seen = node(openai_package, server, "interrupted")
    assert seen["text"] == "one two "
    assert seen["error"] is not None and "APIError" in seen["error"]["classes"]
    assert "interrupted" in seen["error"]["message"]


def test_node_abort_closes_the_upstream(
    openai_package: Path, server: RunningServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.script(Reply(text=["first ", "never"], hang_at=1))
    assert node(openai_package, server, "abort") == {"first": "first "}
    assert fakes.run(fakes.openai.wait_closed(1, within=1.0)) < 1.0


def test_node_run_tools_loop(
    openai_package: Path, server: RunningServer, fakes: ThreadedFakes
) -> None:
    """The npm package's ``runTools`` helper runs its own tool on the call sluice hands
    back, sends the result, and reads the model's answer: plain, then streaming."""
    for _ in range(2):
        fakes.openai.script(
            Reply(text=[], tool_calls=[("call_w", "get_weather", '{"city": "Paris"}')]),
            Reply(text=["It is sunny ", "in Paris."]),
        )
    seen = node(openai_package, server, "runTools")
    for mode in ("plain", "stream"):
        assert seen[mode]["ran"] == ["Paris"]
        assert seen[mode]["content"] == "It is sunny in Paris."
        assert seen[mode]["roles"] == ["user", "assistant", "tool", "assistant"]
    # Each loop: the call's round, then the answer from the client's result.
    assert len(fakes.openai.requests) == 4
    for asked in (fakes.openai.requests[1], fakes.openai.requests[3]):
        assert asked.body["messages"][-1] == {
            "role": "tool",
            "tool_call_id": "call_w",
            "content": "Sunny in Paris",
        }
