"""A reasoning model behind an OpenAI-compatible upstream, through the real server: its
reasoning reaches the client as ``reasoning`` events and never as answer text, history keeps
it apart from the answer (with how long it took), and it is never sent upstream again."""

from __future__ import annotations

from typing import Any

import jsonschema
import openai
import pytest

from tests.conftest import StartServer
from tests.fakes.llm_upstreams import Reply, ThinkingReply
from tests.fakes.threaded import ThreadedFakes, openai_env
from tests.test_openapi import SPEC
from tests.test_tool_history import ask
from tests.test_tool_history import messages as history

MESSAGE = SPEC["components"]["schemas"]["SessionDetail"]["properties"]["messages"]["items"]
THOUGHTS = ["The user asks ", "whether 7 is prime. ", "It has no divisors."]
ANSWER = ["Yes, ", "7 ", "is ", "a ", "prime ", "number."]
WHOLE = "Yes, 7 is a prime number."


def of(evs: list[dict[str, Any]], kind: str) -> list[str]:
    return [e["content"] for e in evs if e["type"] == kind]


# Every frame is paced 0.1 s apart. The reasoning lasts from its first piece to the first
# text: 0.2 s of reasoning_content frames, or 0.4 s from the first piece inside <think> to
# the text after the frame that closes it. Were it timed to the answer's end, it would take
# 0.5 s more (six answer frames): the bounds tell the two apart. The lower bounds leave half
# a frame for the first piece to arrive late on a loaded machine (the fake paces its sends,
# the server times what it receives), and still exclude timing to the last reasoning frame.
@pytest.mark.parametrize(
    ("reply", "least_ms", "most_ms"),
    [
        (
            ThinkingReply(text=ANSWER, reasoning=THOUGHTS, reasoning_tokens=21, interval=0.1),
            150,
            650,
        ),
        # The same model on a server that leaves its reasoning in the content, the tags cut.
        (
            Reply(
                text=[
                    *["<thi", "nk>The user asks ", "whether 7 is prime. "],
                    *["It has no divisors.</th", "ink>\n\n", *ANSWER],
                ],
                interval=0.1,
            ),
            350,
            850,
        ),
    ],
    ids=["reasoning_content", "think_tags"],
)
def test_reasoning_streams_and_is_kept_apart_from_the_answer(
    start_server: StartServer, fakes: ThreadedFakes, reply: Reply, least_ms: int, most_ms: int
) -> None:
    fakes.openai.script(reply, Reply(text=["You're welcome."]))
    server = start_server(openai_env(fakes))
    first = ask(server, "Is 7 prime?")

    assert "".join(of(first, "reasoning")) == "".join(THOUGHTS)
    assert "".join(of(first, "chunk")) == WHOLE
    kinds = [e["type"] for e in first if e["type"] in ("reasoning", "chunk")]
    assert kinds.index("chunk") > max(i for i, k in enumerate(kinds) if k == "reasoning")
    complete = first[-1]
    assert complete["message"] == WHOLE
    if isinstance(reply, ThinkingReply):
        assert complete["usage"]["reasoning_tokens"] == 21

    question, answer = history(server, complete["session_id"])
    for message in (question, answer):  # as /openapi.json describes a session's messages
        jsonschema.validate(message, {**MESSAGE, "components": SPEC["components"]})
    assert answer["content"] == WHOLE
    thought, text = answer["parts"]
    assert text == {"type": "text", "text": WHOLE}
    assert thought["type"] == "reasoning" and thought["text"] == "".join(THOUGHTS)
    assert least_ms <= thought["duration_ms"] < most_ms
    assert set(thought) == {"type", "text", "duration_ms"}

    ask(server, "Thanks!", session_id=complete["session_id"])
    later = fakes.openai.requests[-1].body["messages"]
    assert [m["role"] for m in later if m["role"] != "system"] == ["user", "assistant", "user"]
    said = next(m for m in later if m["role"] == "assistant")
    assert said == {"role": "assistant", "content": WHOLE}
    assert "divisors" not in str(later)


def test_reasoning_of_each_tool_round_is_kept_where_it_came(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.script(
        ThinkingReply(
            text=[],
            reasoning=["I need ", "the time."],
            tool_calls=[("call_t", "current_time", '{"timezone": "Asia/Tokyo"}')],
        ),
        ThinkingReply(text=["It is ", "late."], reasoning=["Now I know."]),
        Reply(text=["Bye."]),
    )
    server = start_server(openai_env(fakes))
    first = ask(server, "Tokyo time?")
    assert of(first, "reasoning") == ["I need ", "the time.", "Now I know."]
    assert first[-1]["message"] == "It is late."

    _, answer = history(server, first[-1]["session_id"])
    assert answer["content"] == "It is late."
    assert [(p["type"], p.get("text")) for p in answer["parts"]] == [
        ("reasoning", "I need the time."),
        ("tool_call", None),
        ("tool_result", None),
        ("reasoning", "Now I know."),
        ("text", "It is late."),
    ]

    ask(server, "Bye", session_id=first[-1]["session_id"])
    later = fakes.openai.requests[-1].body
    assert "I need" not in str(later) and "Now I know" not in str(later)
    assert [m["role"] for m in later["messages"] if m["role"] != "system"] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]


def test_the_openai_compatible_api_gives_the_reasoning_apart_from_the_answer(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    """A client of /v1 gets the answer alone as its content, the reasoning as
    ``reasoning_content`` (where DeepSeek's and vLLM's clients read it), and the reasoning
    tokens where OpenAI puts them."""
    fakes.openai.default = ThinkingReply(text=ANSWER, reasoning=THOUGHTS, reasoning_tokens=21)
    server = start_server(openai_env(fakes))
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="tok-alice", max_retries=0)
    try:
        plain = client.chat.completions.create(
            model="sluice", messages=[{"role": "user", "content": "Is 7 prime?"}]
        )
        streamed = client.chat.completions.create(
            model="sluice",
            messages=[{"role": "user", "content": "Is 7 prime?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(streamed)
    finally:
        client.close()
    assert plain.choices[0].message.content == WHOLE
    assert plain.usage is not None and plain.usage.completion_tokens_details is not None
    assert plain.usage.completion_tokens_details.reasoning_tokens == 21
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == WHOLE
    assert "divisors" not in text and "divisors" not in (plain.choices[0].message.content or "")
    thought = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
        for c in chunks
        if c.choices
    )
    assert thought == "".join(THOUGHTS)
    assert (plain.choices[0].message.model_extra or {}).get("reasoning_content") == thought
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 21
