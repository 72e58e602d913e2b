"""History as JSON Lines, for ``python -m server export`` and ``import``.

The format, one JSON object per line::

    {"type": "sluice.history", "version": 1}
    {"type": "session", "user_id", "session_id", "title", "memory", "created_at", "updated_at",
     "leaf_id"}
    {"type": "message", "user_id", "session_id", "id", "role", "content", "status",
     "created_at", "reply_to", "provider", "model", "mode", "fallback", "input_tokens",
     "output_tokens", "time_to_first_token_ms", "duration_ms", "parts", "parent_id"}

    {"type": "usage", "user_id", "session_id", "stream_id", "provider", "model",
     "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "cost_usd",
     "estimated", "created_at"}

``usage`` lines (the usage ledger, one per answer, after every session) come from a server
with the ledger; an import skips an entry whose ``stream_id`` is recorded already.

``parts`` is the message in order when it is more than its text (an answer whose model
called tools: text, ``tool_call`` and ``tool_result`` parts, as ``GET /api/sessions/...``
shows them), else ``[]``; a line without it (an export from before tool calls were kept)
reads as ``[]``.

``parent_id`` is the message a message follows (edits and regenerations make a tree) and the
session's ``leaf_id`` the last message of its current branch. A session whose lines have no
``parent_id`` (an export from before conversations were trees) reads as one line of
messages, each after the one before, its leaf the last.

Each session's line comes before its messages', messages in the order they were said. Ids
are the exporting store's: the importing store gives new ones and rewrites ``reply_to``.
Any store can read what any store wrote, so moving from SQLite to PostgreSQL is an export
with one configuration and an import with the other.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from server.contract.parts import Part, part_from_dict, part_to_dict
from server.contract.stores import AnswerFacts, ArchivedSession, SessionStore, StoredMessage
from server.stores.rows import FACT_COLUMNS
from server.usage.ledger import COLUMNS as USAGE_COLUMNS
from server.usage.ledger import Ledger, LedgerEntry

__all__ = [
    "ArchiveError",
    "Counts",
    "count",
    "export_history",
    "export_usage",
    "import_history",
    "read_archive",
    "read_archive_with_usage",
]

FORMAT = "sluice.history"
VERSION = 1


class ArchiveError(Exception):
    """The file is not a history this version can read; the message names the line."""


@dataclass
class Counts:
    """What a history holds, as export and import print it and import checks it."""

    sessions: int = 0
    users: int = 0
    messages: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    memories: int = 0  # sessions that remember something

    def __str__(self) -> str:
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(self.statuses.items()))
        return (
            f"{_many(self.sessions, 'session')} of {_many(self.users, 'user')},"
            f" {_many(self.messages, 'message')} ({statuses or 'none'}),"
            f" {_many(self.memories, 'memory', 'memories')}"
        )


def _many(number: int, one: str, more: str = "") -> str:
    return f"{number} {one if number == 1 else more or one + 's'}"


def count(sessions: Iterable[ArchivedSession]) -> Counts:
    counts = Counts()
    users: set[str] = set()
    for session in sessions:
        counts.sessions += 1
        users.add(session.user_id)
        counts.messages += len(session.messages)
        counts.statuses.update(message.status for message in session.messages)
        counts.memories += bool(session.memory)
    counts.users = len(users)
    return counts


def _session_line(session: ArchivedSession) -> dict[str, Any]:
    return {
        "type": "session",
        "user_id": session.user_id,
        "session_id": session.session_id,
        "title": session.title,
        "memory": session.memory,
        "created_at": session.created_at,
        "updated_at": session.updated_at,
        "leaf_id": session.leaf_id,
    }


def _message_line(session: ArchivedSession, message: StoredMessage) -> dict[str, Any]:
    line: dict[str, Any] = {
        "type": "message",
        "user_id": session.user_id,
        "session_id": session.session_id,
        "id": message.id,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "created_at": message.created_at,
        "reply_to": message.reply_to,
    }
    line.update((name, getattr(message.facts, name)) for name in FACT_COLUMNS)
    line["parts"] = [part_to_dict(part) for part in message.parts]
    line["parent_id"] = message.parent_id
    return line


def _dump(line: dict[str, Any]) -> str:
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"


async def export_history(store: SessionStore, out: TextIO, user_id: str | None = None) -> Counts:
    """Write the history of ``user_id`` (everyone's when None) to ``out``; what was written."""
    counts = Counts()
    users: set[str] = set()
    out.write(_dump({"type": FORMAT, "version": VERSION}))
    async for session in store.export_sessions(user_id):
        out.write(_dump(_session_line(session)))
        for message in session.messages:
            out.write(_dump(_message_line(session, message)))
        one = count([session])
        counts.sessions += 1
        users.add(session.user_id)
        counts.messages += one.messages
        counts.statuses.update(one.statuses)
        counts.memories += one.memories
    counts.users = len(users)
    return counts


async def export_usage(ledger: Ledger, out: TextIO, user_id: str | None = None) -> int:
    """Write the usage ledger's entries (of ``user_id``) after the sessions; how many."""
    written = 0
    async for entry in ledger.entries(user_id):
        out.write(_dump({"type": "usage", **entry.as_json()}))
        written += 1
    return written


def _usage_entry(line: dict[str, Any], number: int) -> LedgerEntry:
    values = {name: line.get(name) for name in USAGE_COLUMNS}
    try:
        entry = LedgerEntry(**values)  # type: ignore[arg-type]
    except TypeError:
        raise ArchiveError(f"line {number}: a usage entry that is not one") from None
    for name in ("user_id", "stream_id"):
        _need(line, name, str, number)
    for name in ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"):
        _need(line, name, int, number)
    _need(line, "created_at", (int, float), number)
    _need(line, "estimated", bool, number)
    return entry


def _need(line: dict[str, Any], key: str, kind: type | tuple[type, ...], number: int) -> Any:
    value = line.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
        raise ArchiveError(f"line {number}: {key!r} is missing or of the wrong type")
    return value


def _parts(line: dict[str, Any], number: int) -> tuple[Part, ...]:
    items = line.get("parts", [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ArchiveError(f"line {number}: 'parts' is not a list of objects")
    try:
        return tuple(part_from_dict(item) for item in items)
    except (KeyError, TypeError, ValueError) as error:
        raise ArchiveError(f"line {number}: a part that is not one ({error})") from None


def read_archive(lines: Iterable[str]) -> list[ArchivedSession]:
    """Parse an export's sessions; ArchiveError names the first line that is wrong."""
    return read_archive_with_usage(lines)[0]


def read_archive_with_usage(
    lines: Iterable[str],
) -> tuple[list[ArchivedSession], list[LedgerEntry]]:
    """Parse an export: its sessions and its usage entries."""
    sessions: dict[tuple[str, str], ArchivedSession] = {}
    usage: list[LedgerEntry] = []
    trees: set[tuple[str, str]] = set()  # sessions whose lines say each message's parent
    header_seen = False
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            raise ArchiveError(f"line {number}: not JSON") from None
        if not isinstance(line, dict):
            raise ArchiveError(f"line {number}: not a JSON object")
        kind = line.get("type")
        if not header_seen:
            if kind != FORMAT:
                raise ArchiveError(f"line {number}: not a sluice history export")
            if line.get("version") != VERSION:
                raise ArchiveError(
                    f"line {number}: version {line.get('version')!r}; this sluice reads"
                    f" version {VERSION}"
                )
            header_seen = True
            continue
        if kind == "usage":
            usage.append(_usage_entry(line, number))
            continue
        key = (_need(line, "user_id", str, number), _need(line, "session_id", str, number))
        if kind == "session":
            if key in sessions:
                raise ArchiveError(f"line {number}: session {key[1]!r} appears twice")
            sessions[key] = ArchivedSession(
                user_id=key[0],
                session_id=key[1],
                title=_need(line, "title", str, number),
                memory=_need(line, "memory", dict, number),
                created_at=float(_need(line, "created_at", (int, float), number)),
                updated_at=float(_need(line, "updated_at", (int, float), number)),
                leaf_id=_optional_id(line, "leaf_id", number),
            )
        elif kind == "message":
            session = sessions.get(key)
            if session is None:
                raise ArchiveError(f"line {number}: a message before its session's line")
            session.messages.append(
                StoredMessage(
                    id=_need(line, "id", int, number),
                    role=_need(line, "role", str, number),
                    content=_need(line, "content", str, number),
                    status=_need(line, "status", str, number),
                    created_at=float(_need(line, "created_at", (int, float), number)),
                    reply_to=line.get("reply_to"),
                    facts=AnswerFacts(**{name: line.get(name) for name in FACT_COLUMNS}),
                    parts=_parts(line, number),
                    parent_id=_optional_id(line, "parent_id", number),
                )
            )
            if "parent_id" in line:
                trees.add(key)
        else:
            raise ArchiveError(f"line {number}: unknown type {kind!r}")
    if not header_seen:
        raise ArchiveError("the file is empty")
    for key, session in sessions.items():
        if key not in trees:
            _as_one_line(session)
    return list(sessions.values()), usage


def _optional_id(line: dict[str, Any], key: str, number: int) -> int | None:
    value = line.get(key)
    if value is None:
        return None
    return int(_need(line, key, int, number))


def _as_one_line(session: ArchivedSession) -> None:
    """A session exported before conversations were trees: each message after the one
    before it, as the store's own upgrade reads such a history."""
    previous: int | None = None
    for message in session.messages:
        message.parent_id = previous
        previous = message.id
    if session.leaf_id is None:
        session.leaf_id = previous


def _fingerprint(session: ArchivedSession) -> tuple[Any, ...]:
    """What must survive a move, without the store-given ids."""
    positions = {message.id: i for i, message in enumerate(session.messages)}
    leaf = session.leaf_id
    return (
        session.title,
        None if leaf is None else positions.get(leaf),
        json.dumps(session.memory, sort_keys=True),
        session.created_at,
        session.updated_at,
        tuple(
            (
                m.role,
                m.content,
                m.status,
                m.created_at,
                None if m.reply_to is None else positions.get(m.reply_to),
                None if m.parent_id is None else positions.get(m.parent_id),
                m.facts,
                m.parts,
            )
            for m in session.messages
        ),
    )


async def import_history(
    store: SessionStore, sessions: list[ArchivedSession], *, replace: bool = False
) -> Counts:
    """Write ``sessions`` into ``store`` (one transaction), then read them back and check
    every session, message, status and memory arrived; the counts read back.

    Raises ArchiveError when what the store holds afterwards differs from the file.
    """
    await store.import_sessions(sessions, replace=replace)
    wanted = {(s.user_id, s.session_id): s for s in sessions}
    found: list[ArchivedSession] = []
    for user_id in sorted({s.user_id for s in sessions}):
        async for session in store.export_sessions(user_id):
            if (session.user_id, session.session_id) in wanted:
                found.append(session)
    stored = count(found)
    expected = count(sessions)
    if str(stored) != str(expected):
        raise ArchiveError(f"the database holds {stored}, the file {expected}")
    for session in found:
        if _fingerprint(session) != _fingerprint(wanted[(session.user_id, session.session_id)]):
            raise ArchiveError(f"session {session.session_id!r} differs after the import")
    return stored
