"""Rows <-> records, the same for both SQL backends (their schema is one: ``migrations/``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from server.contract.parts import Part, part_from_dict, part_to_dict
from server.contract.stores import AnswerFacts, StoredMessage

__all__ = [
    "FACT_COLUMNS",
    "MESSAGE_COLUMNS",
    "Row",
    "fact_values",
    "message_from_row",
    "messages_with_parts",
    "parts_from_json",
    "parts_json",
]

FACT_COLUMNS = (
    "provider",
    "model",
    "mode",
    "fallback",
    "input_tokens",
    "output_tokens",
    "time_to_first_token_ms",
    "duration_ms",
)
# What every read of messages selects, in this order (message_from_row reads it so).
MESSAGE_COLUMNS = (
    "id",
    "role",
    "content",
    "status",
    "created_at",
    "reply_to",
    *FACT_COLUMNS,
    "parts_json",
    "parent_id",
)


def fact_values(facts: AnswerFacts | None) -> tuple[Any, ...]:
    facts = facts or AnswerFacts()
    return tuple(getattr(facts, name) for name in FACT_COLUMNS)


def parts_json(parts: Sequence[Part]) -> str | None:
    """The ``parts_json`` column's value: the parts as a JSON list, or NULL for none (a
    message that is its text alone)."""
    if not parts:
        return None
    return json.dumps([part_to_dict(part) for part in parts], ensure_ascii=False)


def parts_from_json(value: str | None) -> tuple[Part, ...]:
    """The parts a ``parts_json`` value holds (none for NULL)."""
    if value is None:
        return ()
    return tuple(part_from_dict(item) for item in json.loads(value))


class Row(Protocol):
    """A row read by position: a tuple from sqlite3, a Record from asyncpg."""

    def __getitem__(self, index: int, /) -> Any: ...


def message_from_row(row: Row) -> StoredMessage:
    """A message from a row holding MESSAGE_COLUMNS in their order."""
    fallback = row[9]
    return StoredMessage(
        id=int(row[0]),
        role=row[1],
        content=row[2],
        status=row[3],
        created_at=row[4],
        reply_to=row[5],
        facts=AnswerFacts(
            provider=row[6],
            model=row[7],
            mode=row[8],
            # SQLite hands booleans back as 0 and 1.
            fallback=None if fallback is None else bool(fallback),
            input_tokens=row[10],
            output_tokens=row[11],
            time_to_first_token_ms=row[12],
            duration_ms=row[13],
        ),
        parts=parts_from_json(row[14]),
        parent_id=row[15],
    )


def messages_with_parts(rows: Iterable[Row], parts: Iterable[Row]) -> list[StoredMessage]:
    """Messages from rows holding MESSAGE_COLUMNS, each message's text followed by its
    ``message_parts`` (rows of ``(message_id, content)`` in ``message_id, seq`` order): the
    text an answer saved as it streamed has (``migrations/versions/0003_message_parts.py``).
    Each message's parts are joined once, so reading costs the text's length."""
    appended: dict[int, list[str]] = {}
    for part in parts:
        appended.setdefault(int(part[0]), []).append(part[1])
    messages = [message_from_row(row) for row in rows]
    if appended:
        for message in messages:
            texts = appended.get(message.id)
            if texts:
                message.content = "".join([message.content, *texts])
    return messages
