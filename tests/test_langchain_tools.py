"""An agent framework nobody here wrote: LangChain's ``ChatOpenAI`` with ``bind_tools``,
running its tool loop against sluice's /v1 (the real server, a fake OpenAI upstream).

The loop is LangChain's own: the model's call comes back as ``AIMessage.tool_calls`` (and,
streamed, as tool-call chunks LangChain merges), the test runs the tool as a LangChain
``@tool`` and answers with a ``ToolMessage``, until the model answers in text.
"""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from tests.fakes.llm_upstreams import Reply
from tests.fakes.threaded import ThreadedFakes, openai_env
from tests.support import upstream_server
from tests.support.server import RunningServer


@tool
def get_weather(city: str) -> str:
    """Today's weather in a city."""
    return f"Sunny in {city}"


# The fixtures of tests/support/upstream_server.py, named here so that pytest finds them.
upstreams = upstream_server.upstreams
server = upstream_server.server


@pytest.fixture(scope="module")
def server_env(upstreams: ThreadedFakes) -> dict[str, str]:
    return openai_env(upstreams)


def _agent(server: RunningServer, *, streaming: bool) -> list[BaseMessage]:
    """LangChain's tool loop: ask, run what the model calls, answer, until it says text."""
    model = ChatOpenAI(
        model="openai",
        base_url=server.url + "/v1",
        api_key="tok-alice",  # type: ignore[arg-type]
        max_retries=0,
        streaming=streaming,
    ).bind_tools([get_weather], tool_choice="auto")
    messages: list[BaseMessage] = [HumanMessage("Weather in Paris?")]
    for _ in range(4):
        answer = model.invoke(messages)
        assert isinstance(answer, AIMessage)
        messages.append(answer)
        if not answer.tool_calls:
            break
        for call in answer.tool_calls:
            result = get_weather.invoke(call["args"])
            messages.append(ToolMessage(result, tool_call_id=call["id"]))
    return messages


@pytest.mark.parametrize("streaming", [False, True])
def test_a_langchain_agent_runs_its_tool_loop_against_sluice(
    server: RunningServer, upstreams: ThreadedFakes, streaming: bool
) -> None:
    fake = upstreams.openai
    fake.requests.clear()
    fake.script(
        Reply(text=[], tool_calls=[("call_w", "get_weather", '{"city": "Paris"}')]),
        Reply(text=["Sunny ", "in Paris."]),
    )
    messages = _agent(server, streaming=streaming)
    assert [type(m).__name__ for m in messages] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]
    call = messages[1].tool_calls[0]  # type: ignore[attr-defined]
    assert (call["id"], call["name"], call["args"]) == ("call_w", "get_weather", {"city": "Paris"})
    assert messages[-1].content == "Sunny in Paris."
    first, second = (recorded.body for recorded in fake.requests)
    assert [t["function"]["name"] for t in first["tools"]] == ["current_time", "get_weather"]
    assert first["tool_choice"] == "auto"
    assert second["messages"][-2]["tool_calls"][0]["id"] == "call_w"
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_w",
        "content": "Sunny in Paris",
    }
