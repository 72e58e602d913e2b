"""The store protocols: sessions (history, memory) and rate-limit buckets.

Stages see :class:`SessionStore` and :class:`RateLimiter`; a backend (SQLite, PostgreSQL,
memory, Redis) implements them in ``server/stores``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["RateLimitStore", "RateLimiter", "SessionRecord", "SessionStore", "StoredMessage"]


@dataclass(slots=True)
class StoredMessage:
    """One message of a conversation, as kept."""

    id: int
    role: str
    content: str
    status: str  # "complete" | "incomplete" | "error"
    created_at: float

    def as_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "content": self.content,
            "status": self.status,
            "created_at": self.created_at,
        }


@dataclass(slots=True)
class SessionRecord:
    """A conversation: its title, when it last changed, and what it remembers."""

    session_id: str
    title: str
    updated_at: float
    memory: dict[str, Any] = field(default_factory=dict)


class SessionStore(Protocol):
    """Conversations and their messages, per user."""

    async def open_session(self, user_id: str, session_id: str, title: str) -> SessionRecord:
        """Return the session, creating it (with ``title``) when it does not exist."""
        ...

    async def add_message(
        self, user_id: str, session_id: str, role: str, content: str, status: str
    ) -> int: ...

    async def save_memory(self, user_id: str, session_id: str, memory: dict[str, Any]) -> None: ...

    async def messages(self, user_id: str, session_id: str) -> list[StoredMessage]: ...

    async def get_session(self, user_id: str, session_id: str) -> SessionRecord | None: ...

    async def list_sessions(self, user_id: str, limit: int = 100) -> list[SessionRecord]: ...

    async def delete_session(self, user_id: str, session_id: str) -> bool: ...

    async def ping(self) -> None:
        """Raise when the store cannot be reached (readiness)."""
        ...

    async def close(self) -> None: ...


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
