"""Sessions in one SQLite file under the data directory: the embedded default.

Calls are synchronous on purpose: each is a single indexed statement on a local file in WAL
mode (well under a millisecond), cheaper than a thread hop per call. A shared backend is a
network store anyway (``server.stores.postgres``).

The schema is Alembic's (``server.stores.schema``), brought up to date when the store is
created, before the server takes requests; a file written before schema versions existed is
upgraded in place. A file at the newest revision already (every start but the first after an
upgrade) is opened without importing Alembic and SQLAlchemy at all: imported, they are
~30 MiB the server would keep for its whole life.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from server.contract.parts import Part
from server.contract.stores import (
    AnswerFacts,
    ArchivedSession,
    Leaf,
    MessageTree,
    SessionExists,
    SessionMatch,
    SessionRecord,
    StoredMessage,
    StoreUnavailable,
)
from server.stores.migrations import HEAD_REVISION
from server.stores.rows import (
    FACT_COLUMNS,
    MESSAGE_COLUMNS,
    fact_values,
    messages_with_parts,
    parts_json,
)
from server.stores.search import ranked

__all__ = ["SQLiteSessionStore", "sqlite_revision"]

_SELECT_MESSAGES = f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM messages"
_INSERT_MESSAGE = (
    "INSERT INTO messages (user_id, session_id, role, content, status, created_at, reply_to, "
    + ", ".join(FACT_COLUMNS)
    + ", parts_json, parent_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_LEAF = "SELECT leaf_id FROM sessions WHERE user_id = ? AND session_id = ?"
_CREATE_SESSION = (
    "INSERT OR IGNORE INTO sessions (user_id, session_id, title, created_at, updated_at)"
    " VALUES (?1, ?2, ?3, ?4, ?4)"
)
_SELECT_SESSION = (
    "SELECT session_id, title, updated_at, memory, leaf_id FROM sessions"
    " WHERE user_id = ? AND session_id = ?"
)
_TOUCH_SESSION = (
    "UPDATE sessions SET updated_at = ?, leaf_id = ? WHERE user_id = ? AND session_id = ?"
)
_SET_PARTS = "UPDATE messages SET parts_json = ? WHERE id = ? AND user_id = ? AND session_id = ?"

# A part goes in only while its message exists (a deleted session takes no more text).
_APPEND_PART = (
    "INSERT INTO message_parts (user_id, session_id, message_id, seq, content)"
    " SELECT user_id, session_id, id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM message_parts"
    " WHERE user_id = ?1 AND session_id = ?2 AND message_id = ?3), ?4"
    " FROM messages WHERE id = ?3 AND user_id = ?1 AND session_id = ?2"
)
_SELECT_PARTS = (
    "SELECT message_id, content FROM message_parts WHERE user_id = ? AND session_id = ?"
    " ORDER BY message_id, seq"
)
_SET_STATUS_AND_FACTS = (
    "UPDATE messages SET status = ?, "
    + ", ".join(f"{column} = ?" for column in FACT_COLUMNS)
    + " WHERE id = ? AND user_id = ? AND session_id = ?"
)

_UPDATE_WITH_FACTS = (
    "UPDATE messages SET content = ?, status = ?, "
    + ", ".join(f"{column} = ?" for column in FACT_COLUMNS)
    + " WHERE id = ? AND user_id = ? AND session_id = ?"
)


def sqlite_revision(path: Path) -> str | None:
    """The schema revision of the file at ``path``, read with ``sqlite3`` alone; None when
    there is no file, or no revision in it (new, or written before versions existed)."""
    if not path.exists():
        return None
    db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:  # no such table
        return None
    finally:
        db.close()
    return None if row is None else str(row[0])


class SQLiteSessionStore:
    backend = "SQLite"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        if sqlite_revision(path) != HEAD_REVISION:
            from server.stores.schema import upgrade_sqlite  # Alembic: only when needed

            upgrade_sqlite(path)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # Another process (an import, a second server refused at start-up) may hold the
        # write lock for a moment: wait for it rather than fail at once.
        self._db.execute("PRAGMA busy_timeout=5000")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """Statements that stand or fall together (the connection is in autocommit mode,
        where ``with connection:`` would not begin a transaction)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    async def open(self) -> None:
        """Nothing left to do: the schema was brought up to date in the constructor."""

    async def open_session(self, user_id: str, session_id: str, title: str) -> SessionRecord:
        self._db.execute(_CREATE_SESSION, (user_id, session_id, title, time.time()))
        record = self._session(user_id, session_id)
        assert record is not None
        return record

    async def open_with_message(
        self, user_id: str, session_id: str, title: str, content: str, *, parts: Sequence[Part] = ()
    ) -> tuple[SessionRecord, MessageTree, int]:
        # One transaction, so one commit before the model is called where opening the
        # session and saving the message took two: each commit is a dozen system calls
        # (locks, the log's frames), on the path to the turn's first chunk.
        with self._transaction():
            self._db.execute(_CREATE_SESSION, (user_id, session_id, title, time.time()))
            record = self._session(user_id, session_id)
            assert record is not None
            tree = self._tree(user_id, session_id)
            earlier = tree.branch()
            message_id = self._insert_message(
                user_id,
                session_id,
                "user",
                content,
                "complete",
                None,
                None,
                parts,
                earlier[-1].id if earlier else None,
            )
        return record, tree, message_id

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
        # One transaction: the leaf read, the message after it, and the new leaf.
        with self._transaction():
            if isinstance(parent, Leaf):
                row = self._db.execute(_LEAF, (user_id, session_id)).fetchone()
                parent = None if row is None else row[0]
            return self._insert_message(
                user_id, session_id, role, content, status, reply_to, facts, parts, parent
            )

    def _insert_message(
        self,
        user_id: str,
        session_id: str,
        role: str,
        content: str,
        status: str,
        reply_to: int | None,
        facts: AnswerFacts | None,
        parts: Sequence[Part],
        parent: int | None,
    ) -> int:
        """The message, made the session's leaf; inside the caller's transaction."""
        now = time.time()
        cursor = self._db.execute(
            _INSERT_MESSAGE,
            (
                *(user_id, session_id, role, content, status, now, reply_to),
                *fact_values(facts),
                parts_json(parts),
                parent,
            ),
        )
        message_id = int(cursor.lastrowid or 0)
        self._db.execute(_TOUCH_SESSION, (now, message_id, user_id, session_id))
        return message_id

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
        # The session's updated_at is left alone (the message is not new), so a
        # conversation does not jump up the list at every save.
        with self._transaction():
            # The old parts go first: the search index (revision 0006) reads the message's
            # parts when its content changes, and they are no longer its text.
            self._db.execute(
                "DELETE FROM message_parts WHERE user_id = ? AND session_id = ? AND message_id = ?",
                (user_id, session_id, message_id),
            )
            if facts is None:
                self._db.execute(
                    "UPDATE messages SET content = ?, status = ?"
                    " WHERE id = ? AND user_id = ? AND session_id = ?",
                    (content, status, message_id, user_id, session_id),
                )
            else:
                self._db.execute(
                    _UPDATE_WITH_FACTS,
                    (content, status, *fact_values(facts), message_id, user_id, session_id),
                )
            if parts is not None:
                self._set_parts(user_id, session_id, message_id, parts)

    def _set_parts(
        self, user_id: str, session_id: str, message_id: int, parts: Sequence[Part]
    ) -> None:
        self._db.execute(_SET_PARTS, (parts_json(parts), message_id, user_id, session_id))

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
        # A row of its own for the new text: SQLite rewrites a whole row (overflow pages
        # and all) to change any of it, so even ``content = content || ?`` would cost the
        # answer so far at every save. The message's row is written only when its status
        # or facts change (at the end), never to add text.
        with self._transaction():
            if text:
                self._db.execute(_APPEND_PART, (user_id, session_id, message_id, text))
            if facts is None:
                self._db.execute(
                    "UPDATE messages SET status = ?1"
                    " WHERE id = ?2 AND user_id = ?3 AND session_id = ?4 AND status <> ?1",
                    (status, message_id, user_id, session_id),
                )
            else:
                self._db.execute(
                    _SET_STATUS_AND_FACTS,
                    (status, *fact_values(facts), message_id, user_id, session_id),
                )
            if parts is not None:
                self._set_parts(user_id, session_id, message_id, parts)

    async def save_memory(self, user_id: str, session_id: str, memory: dict[str, Any]) -> None:
        self._db.execute(
            "UPDATE sessions SET memory = ? WHERE user_id = ? AND session_id = ?",
            (json.dumps(memory, ensure_ascii=False), user_id, session_id),
        )

    async def merge_memory(
        self,
        user_id: str,
        session_id: str,
        changed: Mapping[str, Any],
        removed: Iterable[str] = (),
    ) -> dict[str, Any]:
        # BEGIN IMMEDIATE takes the write lock before reading: another process's merge
        # waits for this one instead of both reading the same memory and one losing.
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT memory FROM sessions WHERE user_id = ? AND session_id = ?",
                (user_id, session_id),
            ).fetchone()
            memory: dict[str, Any] = json.loads(row[0]) if row is not None else {}
            memory.update(changed)
            for key in removed:
                memory.pop(key, None)
            db.execute(
                "UPDATE sessions SET memory = ? WHERE user_id = ? AND session_id = ?",
                (json.dumps(memory, ensure_ascii=False), user_id, session_id),
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return memory

    async def messages(self, user_id: str, session_id: str) -> list[StoredMessage]:
        # One snapshot for both reads: another process's final save, landing between them,
        # would otherwise leave text out or show it twice.
        self._db.execute("BEGIN")
        try:
            return self._tree(user_id, session_id).branch()
        finally:
            self._db.execute("COMMIT")

    async def message_tree(self, user_id: str, session_id: str) -> MessageTree:
        self._db.execute("BEGIN")
        try:
            return self._tree(user_id, session_id)
        finally:
            self._db.execute("COMMIT")

    def _tree(self, user_id: str, session_id: str) -> MessageTree:
        row = self._db.execute(_LEAF, (user_id, session_id)).fetchone()
        return MessageTree(self._messages(user_id, session_id), None if row is None else row[0])

    async def set_leaf(self, user_id: str, session_id: str, message_id: int) -> bool:
        cursor = self._db.execute(
            "UPDATE sessions SET leaf_id = ?1 WHERE user_id = ?2 AND session_id = ?3"
            " AND EXISTS (SELECT 1 FROM messages WHERE id = ?1 AND user_id = ?2"
            " AND session_id = ?3)",
            (message_id, user_id, session_id),
        )
        return cursor.rowcount > 0

    def _messages(self, user_id: str, session_id: str) -> list[StoredMessage]:
        rows = self._db.execute(
            f"{_SELECT_MESSAGES} WHERE user_id = ? AND session_id = ? ORDER BY id",
            (user_id, session_id),
        ).fetchall()
        parts = self._db.execute(_SELECT_PARTS, (user_id, session_id)).fetchall()
        return messages_with_parts(rows, parts)

    async def get_session(self, user_id: str, session_id: str) -> SessionRecord | None:
        return self._session(user_id, session_id)

    def _session(self, user_id: str, session_id: str) -> SessionRecord | None:
        row = self._db.execute(_SELECT_SESSION, (user_id, session_id)).fetchone()
        if row is None:
            return None
        return SessionRecord(row[0], row[1], row[2], json.loads(row[3]), row[4])

    async def list_sessions(self, user_id: str, limit: int = 100) -> list[SessionRecord]:
        rows = self._db.execute(
            "SELECT session_id, title, updated_at FROM sessions WHERE user_id = ?"
            " ORDER BY updated_at DESC, created_at DESC, session_id LIMIT ?",
            (user_id, limit),
        ).fetchall()
        return [SessionRecord(*row) for row in rows]

    async def delete_session(self, user_id: str, session_id: str) -> bool:
        with self._db:
            self._db.execute(
                "DELETE FROM message_parts WHERE user_id = ? AND session_id = ?",
                (user_id, session_id),
            )
            self._db.execute(
                "DELETE FROM messages WHERE user_id = ? AND session_id = ?", (user_id, session_id)
            )
            cursor = self._db.execute(
                "DELETE FROM sessions WHERE user_id = ? AND session_id = ?", (user_id, session_id)
            )
        return cursor.rowcount > 0

    async def rename_session(self, user_id: str, session_id: str, title: str) -> bool:
        cursor = self._db.execute(
            "UPDATE sessions SET title = ? WHERE user_id = ? AND session_id = ?",
            (title, user_id, session_id),
        )
        return cursor.rowcount > 0

    async def search_sessions(
        self, user_id: str, words: Sequence[str], limit: int = 50
    ) -> list[SessionMatch]:
        if not words:
            return []
        # Each word a quoted prefix: the words are letters and digits only
        # (server.stores.search), so nothing in them is FTS5 syntax.
        match = " AND ".join(f'"{word}"*' for word in words)
        snippets: dict[str, str] = {}
        self._db.execute("BEGIN")
        try:
            # Newest message first: a session's snippet comes from its newest match.
            for session_id, snippet in self._db.execute(
                "SELECT session_id, snippet(message_search, 0, '', '', '…', 12)"
                " FROM message_search WHERE message_search MATCH ? AND user_id = ?"
                " ORDER BY rowid DESC",
                (match, user_id),
            ):
                snippets.setdefault(session_id, snippet)
            sessions = await self.list_sessions(user_id, limit=-1)
        finally:
            self._db.execute("COMMIT")
        return ranked(sessions, words, snippets, limit)

    async def export_sessions(self, user_id: str | None = None) -> AsyncIterator[ArchivedSession]:
        # A read transaction: one snapshot for the whole export, even while the server runs.
        self._db.execute("BEGIN")
        try:
            sessions = self._db.execute(
                "SELECT user_id, session_id, title, memory, created_at, updated_at"
                " FROM sessions WHERE ? IS NULL OR user_id = ?"
                " ORDER BY created_at, user_id, session_id",
                (user_id, user_id),
            ).fetchall()
            for row in sessions:
                tree = self._tree(row[0], row[1])
                yield ArchivedSession(
                    user_id=row[0],
                    session_id=row[1],
                    title=row[2],
                    memory=json.loads(row[3]),
                    created_at=row[4],
                    updated_at=row[5],
                    messages=tree.messages,
                    leaf_id=tree.leaf_id,
                )
        finally:
            self._db.execute("COMMIT")

    async def import_sessions(
        self, sessions: Sequence[ArchivedSession], *, replace: bool = False
    ) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            existing = [
                (session.user_id, session.session_id)
                for session in sessions
                if self._db.execute(
                    "SELECT 1 FROM sessions WHERE user_id = ? AND session_id = ?",
                    (session.user_id, session.session_id),
                ).fetchone()
            ]
            if existing and not replace:
                raise SessionExists(existing)
            for key in existing:
                self._db.execute(
                    "DELETE FROM message_parts WHERE user_id = ? AND session_id = ?", key
                )
                self._db.execute("DELETE FROM messages WHERE user_id = ? AND session_id = ?", key)
                self._db.execute("DELETE FROM sessions WHERE user_id = ? AND session_id = ?", key)
            for session in sessions:
                self._db.execute(
                    "INSERT INTO sessions"
                    " (user_id, session_id, title, memory, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        session.user_id,
                        session.session_id,
                        session.title,
                        json.dumps(session.memory, ensure_ascii=False),
                        session.created_at,
                        session.updated_at,
                    ),
                )
                new_ids: dict[int, int] = {}
                for message in session.messages:
                    reply_to = new_ids.get(message.reply_to) if message.reply_to else None
                    parent = new_ids.get(message.parent_id) if message.parent_id else None
                    cursor = self._db.execute(
                        _INSERT_MESSAGE,
                        (
                            session.user_id,
                            session.session_id,
                            message.role,
                            message.content,
                            message.status,
                            message.created_at,
                            reply_to,
                            *fact_values(message.facts),
                            parts_json(message.parts),
                            parent,
                        ),
                    )
                    new_ids[message.id] = int(cursor.lastrowid or 0)
                if session.leaf_id is not None:
                    self._db.execute(
                        "UPDATE sessions SET leaf_id = ? WHERE user_id = ? AND session_id = ?",
                        (new_ids.get(session.leaf_id), session.user_id, session.session_id),
                    )

    async def ping(self) -> None:
        try:
            self._db.execute("SELECT 1").fetchone()
        except sqlite3.Error as error:
            raise StoreUnavailable(f"SQLite at {self.path} unusable ({error})") from None

    def connection(self) -> sqlite3.Connection:
        """The store's connection, for another table of this file (the usage ledger): one
        connection keeps its page cache, where a second one's commits would make this one
        drop it and read the file again in the next turn."""
        return self._db

    async def close(self) -> None:
        self._db.close()
