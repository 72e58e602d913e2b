"""The store protocols: sessions (history, memory) and rate-limit buckets.

Stages see :class:`SessionStore` and :class:`RateLimiter`; a backend (SQLite, PostgreSQL,
memory, Redis) implements them in ``server/stores``. The two history backends, SQLite in the
data directory and PostgreSQL when ``DATABASE_URL`` is set, keep one schema and pass one
test suite.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from server.contract.parts import Part, part_to_dict

__all__ = [
    "AnswerFacts",
    "ArchivedSession",
    "Leaf",
    "MessageTree",
    "RateLimitStore",
    "RateLimiter",
    "SessionExists",
    "SessionMatch",
    "SessionRecord",
    "SessionStore",
    "StoreUnavailable",
    "StoredMessage",
]


class StoreUnavailable(Exception):
    """The store cannot be reached or did not answer in time.

    ``str(error)`` is one line for an operator (no credentials); clients get a 503
    ``unavailable`` with ``retry_after`` instead, and a turn is not started.
    """

    def __init__(self, reason: str, *, retry_after: float = 5.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(slots=True, frozen=True)
class AnswerFacts:
    """How an answer came to be: who wrote it, how, and how long it took.

    Known fields only: an answer that ended before any provider replied has no provider or
    model, and one with no text has no time to first token.
    """

    provider: str | None = None
    model: str | None = None
    mode: str | None = None  # "stream" | "non-stream"
    fallback: bool | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    time_to_first_token_ms: float | None = None
    duration_ms: float | None = None

    def usage_json(self) -> dict[str, int | None] | None:
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}


@dataclass(slots=True)
class StoredMessage:
    """One message of a conversation, as kept."""

    id: int
    role: str
    content: str
    status: str  # "complete" | "incomplete" | "error"
    created_at: float
    # The id of the user message an answer replies to (None for user messages, and for
    # answers saved before answers recorded it).
    reply_to: int | None = None
    facts: AnswerFacts = field(default_factory=AnswerFacts)
    # The message in order when it is more than its text: an answer whose model called
    # tools holds each round's text (:class:`TextPart`, joined they are ``content``), its
    # :class:`ToolCall` parts, then their :class:`ToolResult` parts. Empty: ``content`` is
    # the whole message.
    parts: tuple[Part, ...] = ()
    # The message this one follows in the conversation's tree (None for a first message):
    # an edited message and the one it replaces share a parent, as do an answer's variants.
    parent_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "parent_id": self.parent_id,
            "role": self.role,
            "content": self.content,
            "status": self.status,
            "created_at": self.created_at,
            "parts": [part_to_dict(part) for part in self.parts],
        }
        if self.role == "assistant":
            facts = self.facts
            data.update(
                reply_to=self.reply_to,
                provider=facts.provider,
                model=facts.model,
                mode=facts.mode,
                fallback=facts.fallback,
                usage=facts.usage_json(),
                time_to_first_token_ms=facts.time_to_first_token_ms,
                duration_ms=facts.duration_ms,
            )
        return data


@dataclass(slots=True)
class SessionRecord:
    """A conversation: its title, when it last changed, and what it remembers."""

    session_id: str
    title: str
    updated_at: float
    memory: dict[str, Any] = field(default_factory=dict)
    # The last message of the branch the user is on (None: the newest message).
    leaf_id: int | None = None


@dataclass(slots=True, frozen=True)
class SessionMatch:
    """A conversation found by a search: ``snippet`` is a few words around the match in its
    newest matching message, or None when only the title matched."""

    session_id: str
    title: str
    updated_at: float
    snippet: str | None = None


@dataclass(slots=True)
class ArchivedSession:
    """One session with everything in it, as export and import move it between stores.

    Message ids are the source store's: an importing store gives new ones and rewrites
    ``reply_to``, ``parent_id`` and ``leaf_id`` to match. ``messages`` is the whole tree in
    id order (a parent before its children).
    """

    user_id: str
    session_id: str
    title: str
    memory: dict[str, Any]
    created_at: float
    updated_at: float
    messages: list[StoredMessage] = field(default_factory=list)
    leaf_id: int | None = None


class Leaf(enum.Enum):
    """Where :meth:`SessionStore.add_message` puts a message when no parent is named."""

    CURRENT = "current"  # after the session's current leaf: the conversation carries on


@dataclass(slots=True)
class MessageTree:
    """A session's messages as a tree: every message (id order, so a parent comes before
    its children) and the leaf of the branch the user is on.

    Edits and regenerations make siblings (messages with one parent); the conversation as
    it stands, the one the model is given, is :meth:`branch`."""

    messages: list[StoredMessage]
    leaf_id: int | None = None
    _by_id: dict[int, StoredMessage] = field(init=False, repr=False)
    _children: dict[int | None, list[StoredMessage]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {message.id: message for message in self.messages}
        self._children = {}
        for message in self.messages:
            self._children.setdefault(message.parent_id, []).append(message)

    def get(self, message_id: int) -> StoredMessage | None:
        return self._by_id.get(message_id)

    def path_to(self, message_id: int | None) -> list[StoredMessage]:
        """The messages from the first to ``message_id``, oldest first ([] for None or an
        id not in the tree)."""
        path: list[StoredMessage] = []
        seen: set[int] = set()
        message = None if message_id is None else self._by_id.get(message_id)
        while message is not None and message.id not in seen:  # a loop could only be a bug
            seen.add(message.id)
            path.append(message)
            message = None if message.parent_id is None else self._by_id.get(message.parent_id)
        path.reverse()
        return path

    def branch(self) -> list[StoredMessage]:
        """The current branch: the path to the leaf, or to the newest message when the leaf
        is unknown (a session imported without one)."""
        leaf = self.leaf_id if self.leaf_id in self._by_id else None
        if leaf is None and self.messages:
            leaf = self.messages[-1].id
        return self.path_to(leaf)

    def siblings(self, message: StoredMessage) -> list[StoredMessage]:
        """``message`` and the alternatives to it (the same parent), oldest first."""
        return self._children.get(message.parent_id, [message])

    def latest_leaf(self, message_id: int) -> int:
        """The newest message at or under ``message_id``: switching to a message carries
        on to where that branch was last written."""
        newest = message_id
        below = [*self._children.get(message_id, ())]
        while below:
            message = below.pop()
            newest = max(newest, message.id)
            below.extend(self._children.get(message.id, ()))
        return newest


class SessionStore(Protocol):
    """Conversations and their messages, per user."""

    async def open(self) -> None:
        """Called once at start-up: create or upgrade the schema. A shared database that is
        down leaves this for later (each call retries) rather than stopping the server."""
        ...

    async def open_session(self, user_id: str, session_id: str, title: str) -> SessionRecord:
        """Return the session, creating it (with ``title``) when it does not exist."""
        ...

    async def open_with_message(
        self, user_id: str, session_id: str, title: str, content: str, *, parts: Sequence[Part] = ()
    ) -> tuple[SessionRecord, MessageTree, int]:
        """What a turn does first, in one step: :meth:`open_session`, then
        :meth:`message_tree`, then the user's message (``content``, status ``complete``, its
        ``parts``) added after the last message of the tree's :meth:`MessageTree.branch`.
        The session, the tree as it was before the message, and the message's id. A store
        that can does it in one transaction: the message is saved before any model is
        called, and this is on the path to a turn's first chunk."""
        ...

    async def add_message(
        self,
        user_id: str,
        session_id: str,
        role: str,
        content: str,
        status: str,
        *,
        reply_to: int | None = None,
        facts: AnswerFacts | None = None,
        parts: Sequence[Part] = (),
        parent: int | Leaf | None = Leaf.CURRENT,
    ) -> int:
        """Add a message (with its ``parts``, see :attr:`StoredMessage.parts`) after
        ``parent`` (a message of the session, None for a first message, by default the
        current leaf) and make it the session's leaf; its id, which rises with every
        message of the store."""
        ...

    async def update_message(
        self,
        user_id: str,
        session_id: str,
        message_id: int,
        content: str,
        status: str,
        *,
        facts: AnswerFacts | None = None,
        parts: Sequence[Part] | None = None,
    ) -> None:
        """Replace the content and status (and, when given, the facts and the parts) of
        message ``message_id`` of that session: an answer saved as it streams, then
        finished. Nothing happens when it is gone (the session was deleted)."""
        ...

    async def append_to_message(
        self,
        user_id: str,
        session_id: str,
        message_id: int,
        text: str,
        status: str,
        *,
        facts: AnswerFacts | None = None,
        parts: Sequence[Part] | None = None,
    ) -> None:
        """Add ``text`` to the end of message ``message_id``'s content and set its status
        (and, when given, its facts and its parts, replacing any it had): an answer saved
        as it streams, a piece at a time, then finished. Its
        cost follows the length of ``text``, never of the message, so that a long answer
        costs its length and not its square. Nothing happens when the message is gone."""
        ...

    async def save_memory(self, user_id: str, session_id: str, memory: dict[str, Any]) -> None:
        """Replace the session's memory as a whole."""
        ...

    async def merge_memory(
        self,
        user_id: str,
        session_id: str,
        changed: Mapping[str, Any],
        removed: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Set the ``changed`` keys and drop the ``removed`` ones in one atomic step, leaving
        every other key as it is now in the store (two turns of one session, say in two tabs,
        each keep what they learnt); returns the memory after the merge."""
        ...

    async def messages(self, user_id: str, session_id: str) -> list[StoredMessage]:
        """The conversation as it stands: the current branch, oldest first."""
        ...

    async def message_tree(self, user_id: str, session_id: str) -> MessageTree:
        """Every message of the session, alternatives included, and the current leaf."""
        ...

    async def set_leaf(self, user_id: str, session_id: str, message_id: int) -> bool:
        """Make ``message_id`` the session's current leaf (switching branch); False when
        the session has no such message."""
        ...

    async def get_session(self, user_id: str, session_id: str) -> SessionRecord | None: ...

    async def list_sessions(self, user_id: str, limit: int = 100) -> list[SessionRecord]: ...

    async def delete_session(self, user_id: str, session_id: str) -> bool: ...

    async def rename_session(self, user_id: str, session_id: str, title: str) -> bool:
        """Set the session's title (its ``updated_at`` unchanged: renaming is not a new
        message); False when there is no such session."""
        ...

    async def search_sessions(
        self, user_id: str, words: Sequence[str], limit: int = 50
    ) -> list[SessionMatch]:
        """The user's sessions whose title, or one of whose messages, holds every one of
        ``words`` (each as a word's beginning, case and accents aside), newest first."""
        ...

    def export_sessions(self, user_id: str | None = None) -> AsyncIterator[ArchivedSession]:
        """Every session of ``user_id`` (everyone's when None) with its messages, oldest
        session first."""
        ...

    async def import_sessions(
        self, sessions: Sequence[ArchivedSession], *, replace: bool = False
    ) -> None:
        """Write ``sessions`` in one transaction. A session that exists already stops the
        import (:class:`SessionExists`) unless ``replace``, which deletes it first."""
        ...

    async def ping(self) -> None:
        """Raise (:class:`StoreUnavailable`) when the store cannot be reached (readiness)."""
        ...

    @property
    def backend(self) -> str:
        """What it is, for readiness and logs: ``"SQLite"``, ``"PostgreSQL"``."""
        ...

    async def close(self) -> None: ...


class SessionExists(Exception):
    """An import met sessions the store already holds (``keys``: user and session ids)."""

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__(f"{len(keys)} of these sessions exist already")
        self.keys = keys


class RateLimitStore(Protocol):
    """Token buckets by key: the backend behind a :class:`RateLimiter`."""

    async def take(self, key: str, rate_per_second: float, burst: int) -> float:
        """Take one token from ``key``'s bucket: 0 when allowed, else seconds to wait."""
        ...

    async def ping(self) -> None: ...


class RateLimiter(Protocol):
    """Token buckets with the configured rate and burst (``[rate_limit]``)."""

    async def take(self, key: str) -> float:
        """Take one token from ``key``'s bucket: 0 when allowed, else seconds to wait."""
        ...
