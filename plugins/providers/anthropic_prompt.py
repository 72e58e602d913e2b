"""sluice's messages as the Anthropic Messages API takes them, with prompt-cache breakpoints.

The Messages API has no ``system`` role in ``messages``: system messages become the
top-level ``system`` (one text block each, the server's own prompt first). User and
assistant turns must alternate, so consecutive messages of one role are merged into one
message of several text blocks. Content is always a list of blocks, never the string
shorthand: a breakpoint is set on a block, and tool calls, tool results and images will be
blocks beside the text.

Prompt caching: Anthropic caches the prompt up to a block marked with ``cache_control``, at
most four marks a request, and only a prefix of at least the model's minimum length (1,024
tokens on most models, more on some); a shorter one is simply not cached. The marks go, in
the order the prompt is read, on

* the last tool (shared by every conversation once tools exist),
* the last system block (shared by every turn of a conversation),
* the last block of the previous turn's user message, where the previous request put its
  own last mark: that prefix was written to the cache then, and is read back now,
* the last block of the whole prompt, so that the next turn can read all of this one.

So as a conversation grows, its two conversation marks move forward two messages a turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from server import Message

__all__ = [
    "CHARS_PER_TOKEN",
    "MAX_BREAKPOINTS",
    "cache_breakpoints",
    "mark_cache_breakpoints",
    "to_anthropic",
]

# Anthropic's limit on cache_control marks in one request.
MAX_BREAKPOINTS = 4

# Tokens are estimated from characters, erring towards more tokens: English averages about
# four characters a token. A mark on a prefix below the minimum is only ignored by the
# API, while one left out where the prefix was long enough is a cache missed.
CHARS_PER_TOKEN = 3

Block = dict[str, Any]


def to_anthropic(messages: Sequence[Message]) -> tuple[list[Block], list[dict[str, Any]]]:
    """(system blocks, messages) in the Messages API's shape.

    Messages with no text but whitespace are left out: the API refuses an empty text block,
    and an answer that failed before its first word is stored empty. So are assistant
    messages before the first user message (history cut to fit its budget can start with
    one): several deployments of the API refuse a conversation that does not start with
    the user.
    """
    system: list[Block] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if not message.content.strip():
            continue
        block: Block = {"type": "text", "text": message.content}
        if message.role == "system":
            system.append(block)
        elif turns and turns[-1]["role"] == message.role:
            turns[-1]["content"].append(block)
        elif turns or message.role == "user":
            turns.append({"role": message.role, "content": [block]})
    return system, turns


def _chars(blocks: Sequence[Block]) -> int:
    return sum(len(str(block.get("text", ""))) for block in blocks)


def _tool_chars(tools: Sequence[Block]) -> int:
    return sum(len(str(tool)) for tool in tools)


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
