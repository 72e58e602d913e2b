"""sluice's messages as the Anthropic Messages API takes them, with prompt-cache breakpoints.

The Messages API has no ``system`` role in ``messages``: system messages become the
top-level ``system`` (one text block each, the server's own prompt first). User and
assistant turns must alternate, so consecutive messages of one role are merged into one
message of several blocks; a ``"tool"`` message is the user's turn (its results are
``tool_result`` blocks). Content is always a list of blocks, never the string shorthand: a
breakpoint is set on a block, and tool calls, tool results, images and thinking are blocks
beside the text.

Parts become blocks: an assistant's :class:`ToolCall` a ``tool_use`` block (sluice's call id
is the block's id), a :class:`ToolResult` a ``tool_result`` block (``is_error`` when it is
not ok), an :class:`ImagePart` a base64 ``image`` block, and a :class:`ReasoningPart` made by
Anthropic (``source == "anthropic"``: another API's signature means nothing here) a signed
``thinking`` or a ``redacted_thinking`` block, first in its message as the API requires.
Reasoning from other providers, and unsigned reasoning, is left out.

Prompt caching: Anthropic caches the prompt up to a block marked with ``cache_control``, at
most four marks a request, and only a prefix of at least the model's minimum length (1,024
tokens on most models, more on some); a shorter one is simply not cached. The marks go, in
the order the prompt is read (tools, system, messages), on

* the last tool (shared by every conversation once tools exist),
* the last system block (shared by every turn of a conversation),
* the last block of the previous user message (a question or a round's tool results),
  where the previous request put its own last mark: that prefix was written to the cache
  then, and is read back now,
* the last block of the whole prompt, so that the next request can read all of this one.

So as a conversation grows, its two conversation marks move forward two messages a turn
(or a tool round). Thinking blocks cannot carry a mark; they are never a message's last
block.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from typing import Any

from server import ImagePart, Message, ReasoningPart, Tool, ToolCall, ToolResult

__all__ = [
    "CHARS_PER_TOKEN",
    "MAX_BREAKPOINTS",
    "SOURCE",
    "cache_breakpoints",
    "in_tool_loop_without_thinking",
    "mark_cache_breakpoints",
    "to_anthropic",
    "tools_to_anthropic",
]

# Anthropic's limit on cache_control marks in one request.
MAX_BREAKPOINTS = 4

# The provider type that signs the reasoning parts this module sends back.
SOURCE = "anthropic"

# Tokens are estimated from characters, erring towards more tokens: English averages about
# four characters a token. A mark on a prefix below the minimum is only ignored by the
# API, while one left out where the prefix was long enough is a cache missed.
CHARS_PER_TOKEN = 3

Block = dict[str, Any]
_THINKING = ("thinking", "redacted_thinking")
# The characters Anthropic allows in a tool_use id. Calls another provider made keep their
# ids, which some OpenAI-compatible servers build from others ("functions.search:0").
_NOT_IN_ID = re.compile(r"[^A-Za-z0-9_-]")


def _wire_id(call_id: str) -> str:
    return _NOT_IN_ID.sub("_", call_id) or "call"


def _reasoning_block(part: ReasoningPart) -> Block | None:
    if part.source != SOURCE:
        return None
    if part.redacted is not None:
        return {"type": "redacted_thinking", "data": part.redacted}
    if part.signature:
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    return None  # a thinking block is refused without its signature


def _blocks(message: Message, known_calls: set[str]) -> list[Block]:
    """A message's blocks: thinking first, then text, images, tool calls and results.

    A result whose call is not in the prompt (history cut between them) is left out: the
    API refuses a ``tool_result`` without its ``tool_use``."""
    thinking: list[Block] = []
    blocks: list[Block] = []
    if message.content.strip():
        blocks.append({"type": "text", "text": message.content})
    for part in message.parts:
        if isinstance(part, ReasoningPart):
            block = _reasoning_block(part)
            if block is not None and message.role == "assistant":
                thinking.append(block)
        elif isinstance(part, ToolCall) and message.role == "assistant":
            known_calls.add(part.call_id)
            blocks.append(
                {
                    "type": "tool_use",
                    "id": _wire_id(part.call_id),
                    "name": part.name,
                    "input": dict(part.arguments),
                }
            )
        elif isinstance(part, ToolResult) and part.call_id in known_calls:
            result: Block = {
                "type": "tool_result",
                "tool_use_id": _wire_id(part.call_id),
                "content": part.content,
            }
            if not part.ok:
                result["is_error"] = True
            blocks.append(result)
        elif isinstance(part, ImagePart) and message.role == "user":
            data = base64.b64encode(part.data).decode("ascii")
            source = {"type": "base64", "media_type": part.media_type, "data": data}
            blocks.append({"type": "image", "source": source})
    if message.role != "assistant":
        # The API wants a user turn's tool results before anything else in it.
        blocks.sort(key=lambda block: block["type"] != "tool_result")
    return thinking + blocks if blocks else []


def _merge(into: list[Block], blocks: list[Block]) -> None:
    """Append a same-role message's blocks: its thinking after the thinking already there
    (an assistant turn starts with its thinking), its tool results after those already
    there (a user turn starts with them)."""
    for block in blocks:
        kind = block["type"]
        if kind in _THINKING or kind == "tool_result":
            lead = _THINKING if kind in _THINKING else ("tool_result",)
            at = 0
            while at < len(into) and into[at]["type"] in lead:
                at += 1
            into.insert(at, block)
        else:
            into.append(block)


def to_anthropic(messages: Sequence[Message]) -> tuple[list[Block], list[dict[str, Any]]]:
    """(system blocks, messages) in the Messages API's shape.

    Messages with nothing to send are left out: the API refuses an empty text block, and an
    answer that failed before its first word is stored empty. So are assistant messages
    before the first user message (history cut to fit its budget can start with one):
    several deployments of the API refuse a conversation that does not start with the user.
    """
    system: list[Block] = []
    turns: list[dict[str, Any]] = []
    known_calls: set[str] = set()
    for message in messages:
        if message.role == "system":
            if message.content.strip():
                system.append({"type": "text", "text": message.content})
            continue
        role = "assistant" if message.role == "assistant" else "user"
        if not turns and role == "assistant":
            continue
        blocks = _blocks(message, known_calls)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            _merge(turns[-1]["content"], blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def tools_to_anthropic(tools: Sequence[Tool]) -> list[Block]:
    """Tools as the Messages API's ``tools`` (custom tools: name, description, schema)."""
    return [
        {
            "name": item.name,
            "description": item.description,
            "input_schema": dict(item.input_schema),
        }
        for item in tools
    ]


def _only_results(turn: dict[str, Any]) -> bool:
    return turn["role"] == "user" and all(b["type"] == "tool_result" for b in turn["content"])


def in_tool_loop_without_thinking(turns: Sequence[dict[str, Any]]) -> bool:
    """Whether the prompt ends inside a tool loop whose first assistant message does not
    start with thinking.

    A tool loop is one assistant turn (from the user's last own message on, through every
    round's calls and results), and the API wants one thinking setting per turn: with
    thinking on, the turn must start with a thinking block. A loop that began without one
    (thinking was off, or another provider made the calls) must go on without thinking,
    or the API refuses the request. Later rounds of a loop begun with thinking need none
    of their own."""
    if not turns or not _only_results(turns[-1]):
        return False
    first: dict[str, Any] | None = None
    for turn in reversed(turns):
        if turn["role"] == "user" and not _only_results(turn):
            break
        if turn["role"] == "assistant":
            first = turn
    return first is None or first["content"][0]["type"] not in _THINKING


def _chars(blocks: Sequence[Block]) -> int:
    total = 0
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            total += len(block["text"])
        elif kind == "tool_result":
            total += len(str(block.get("content", ""))) + 40
        elif kind == "tool_use":
            total += len(json.dumps(block.get("input", {}), ensure_ascii=False)) + 40
        elif kind == "image":
            # An image is billed by its size in pixels, not its bytes: count it as the
            # ~1,600 tokens of a large one, so that it rather sets a mark than misses one.
            total += 1600 * CHARS_PER_TOKEN
        else:
            total += len(str(block.get("thinking", block.get("data", ""))))
    return total


def _tool_chars(tools: Sequence[Block]) -> int:
    return sum(len(json.dumps(tool, ensure_ascii=False)) for tool in tools)


def cache_breakpoints(
    system: Sequence[Block],
    turns: Sequence[dict[str, Any]],
    *,
    tools: Sequence[Block] = (),
    min_tokens: int,
) -> list[Block]:
    """The blocks to mark with ``cache_control`` (see the module docstring), in prompt order,
    at most :data:`MAX_BREAKPOINTS`: each where the prompt up to it reaches ``min_tokens``."""
    min_chars = min_tokens * CHARS_PER_TOKEN
    candidates: list[tuple[int, Block]] = []  # (characters up to and with it, block)
    length = 0
    if tools:
        length += _tool_chars(tools)
        candidates.append((length, tools[-1]))
    if system:
        length += _chars(system)
        candidates.append((length, system[-1]))
    users = [i for i, turn in enumerate(turns) if turn["role"] == "user"]
    # The previous request ended with the user message before the last one.
    previous = users[-2] if len(users) > 1 else None
    for index, turn in enumerate(turns):
        length += _chars(turn["content"])
        if index == previous or index == len(turns) - 1:
            candidates.append((length, turn["content"][-1]))
    marked = [block for reached, block in candidates if reached >= min_chars]
    # Four candidates at most today; should more come, the latest win: the prefix each
    # caches holds everything before it.
    return marked[-MAX_BREAKPOINTS:]


def mark_cache_breakpoints(
    system: list[Block],
    turns: list[dict[str, Any]],
    *,
    tools: Sequence[Block] = (),
    min_tokens: int,
) -> int:
    """Set ``cache_control`` on the blocks :func:`cache_breakpoints` picks; returns how many.

    The blocks are changed in place: they are this request's own, built by
    :func:`to_anthropic`."""
    marked = cache_breakpoints(system, turns, tools=tools, min_tokens=min_tokens)
    for block in marked:
        block["cache_control"] = {"type": "ephemeral"}
    return len(marked)
