"""Sessions in one SQLite file under the data directory: the embedded default.

Calls are synchronous on purpose: each is a single indexed statement on a local file in WAL
mode (well under a millisecond), cheaper than a thread hop per call. A shared backend would
be a network store anyway.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from server.contract.stores import SessionRecord, StoredMessage

__all__ = ["SQLiteSessionStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    user_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    title TEXT NOT NULL,
    memory TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (user_id, session_id)
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id, updated_at DESC);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_session ON messages (user_id, session_id, id);
"""


class SQLiteSessionStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    async def open_session(self, user_id: str, session_id: str, title: str) -> SessionRecord:
        now = time.time()
        self._db.execute(
            "INSERT OR IGNORE INTO sessions (user_id, session_id, title, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (user_id, session_id, title, now, now),
        )
        record = await self.get_session(user_id, session_id)
        assert record is not None
        return record

    async def add_message(
        self, user_id: str, session_id: str, role: str, content: str, status: str
    ) -> int:
        now = time.time()
        with self._db:
            cursor = self._db.execute(
                "INSERT INTO messages (user_id, session_id, role, content, status, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (user_id, session_id, role, content, status, now),
            )
            self._db.execute(
                "UPDATE sessions SET updated_at = ? WHERE user_id = ? AND session_id = ?",
                (now, user_id, session_id),
            )
        return int(cursor.lastrowid or 0)

    async def save_memory(self, user_id: str, session_id: str, memory: dict[str, Any]) -> None:
        self._db.execute(
            "UPDATE sessions SET memory = ? WHERE user_id = ? AND session_id = ?",
            (json.dumps(memory, ensure_ascii=False), user_id, session_id),
        )

    async def messages(self, user_id: str, session_id: str) -> list[StoredMessage]:
        rows = self._db.execute(
            "SELECT id, role, content, status, created_at FROM messages"
            " WHERE user_id = ? AND session_id = ? ORDER BY id",
            (user_id, session_id),
        ).fetchall()
        return [StoredMessage(*row) for row in rows]

    async def get_session(self, user_id: str, session_id: str) -> SessionRecord | None:
        row = self._db.execute(
            "SELECT session_id, title, updated_at, memory FROM sessions"
            " WHERE user_id = ? AND session_id = ?",
            (user_id, session_id),
        ).fetchone()
        if row is None:
            return None
        return SessionRecord(row[0], row[1], row[2], json.loads(row[3]))

    async def list_sessions(self, user_id: str, limit: int = 100) -> list[SessionRecord]:
        rows = self._db.execute(
            "SELECT session_id, title, updated_at FROM sessions WHERE user_id = ?"
            " ORDER BY updated_at DESC, rowid DESC LIMIT ?",
            (user_id, limit),
        ).fetchall()
        return [SessionRecord(*row) for row in rows]

    async def delete_session(self, user_id: str, session_id: str) -> bool:
        with self._db:
            self._db.execute(
                "DELETE FROM messages WHERE user_id = ? AND session_id = ?", (user_id, session_id)
            )
            cursor = self._db.execute(
                "DELETE FROM sessions WHERE user_id = ? AND session_id = ?", (user_id, session_id)
            )
        return cursor.rowcount > 0

    async def ping(self) -> None:
        self._db.execute("SELECT 1").fetchone()

    async def close(self) -> None:
        self._db.close()
