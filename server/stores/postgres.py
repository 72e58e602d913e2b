"""Sessions in PostgreSQL (``DATABASE_URL``): history that outlives the machine.

asyncpg, with its own pool, rather than psycopg 3 or SQLAlchemy's async engine: it is
asyncio-native (no thread per call), speaks the binary protocol with prepared statements
cached per connection, and is the fastest of the three per statement, which matters on the
path every turn takes (open the session, save the user's message, save the answer). It
reads ``DATABASE_URL`` as platforms give it, ``sslmode`` included. Alembic, for the schema,
drives the same driver through SQLAlchemy (``server.stores.schema``).

Every call is bounded by ``store.database_timeout_seconds`` (connecting, waiting for a pooled
connection, each statement): a slow or unreachable database raises
:class:`StoreUnavailable` in that time, never a hang. After a failure, calls fail at once for
a second instead of each waiting out the timeout again; then the next call tries the
database, and the pool replaces connections the outage closed. So the store recovers by
itself, and the server may start while the database is down (the schema is brought up to
date by the first call that reaches it).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import structlog
from sqlalchemy.exc import DBAPIError

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
from server.stores.rows import (
    FACT_COLUMNS,
    MESSAGE_COLUMNS,
    fact_values,
    messages_with_parts,
    parts_json,
)
from server.stores.schema import upgrade_postgres
from server.stores.search import ranked

__all__ = ["PostgresSessionStore", "describe_url"]

log = structlog.get_logger("sluice.stores")

# After a failure, calls fail at once for this long rather than each waiting for a timeout.
_QUIET_AFTER_FAILURE = 1.0

# Errors that mean "the database is not there or not answering", as opposed to a mistake
# in a statement (which is a bug, and raised as it is).
_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, no route, DNS
    TimeoutError,
    asyncpg.PostgresConnectionError,  # cannot connect now, too many connections, ...
    asyncpg.InterfaceError,  # the connection closed under us
    asyncpg.OperatorInterventionError,  # admin shutdown, crash recovery, query cancelled
    asyncpg.InsufficientResourcesError,  # disk full, out of memory, too many connections
    # Wrong credentials or database name (a platform rotated them, a typo in the URL): not
    # a bug here, and it reads the same to clients; the reason names it for the operator.
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
)

_SELECT_MESSAGES = f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM messages"
_INSERT_MESSAGE = (
    "INSERT INTO messages (user_id, session_id, role, content, status, created_at, reply_to, "
    + ", ".join(FACT_COLUMNS)
    + ", parts_json, parent_id)"
    + " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
)
# The same, with the parent read from the session's leaf when $18 says so: in one statement,
# which sees the leaf as it was before the UPDATE that moves it to the new message.
_ADD_MESSAGE = (
    _INSERT_MESSAGE.replace(
        "$17)",
        "CASE WHEN $18::boolean THEN (SELECT leaf_id FROM sessions"
        " WHERE user_id = $1 AND session_id = $2) ELSE $17::bigint END)",
    )
    + " RETURNING id"
)
_SET_PARTS = (
    "UPDATE messages SET parts_json = $4 WHERE id = $3 AND user_id = $1 AND session_id = $2"
)

# A part goes in only while its message exists (a deleted session takes no more text).
_APPEND_PART = (
    "INSERT INTO message_parts (user_id, session_id, message_id, seq, content)"
    " SELECT user_id, session_id, id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM message_parts"
    " WHERE user_id = $1 AND session_id = $2 AND message_id = $3), $4"
    " FROM messages WHERE id = $3 AND user_id = $1 AND session_id = $2"
)
_SELECT_PARTS = (
    "SELECT message_id, content FROM message_parts WHERE user_id = $1 AND session_id = $2"
    " ORDER BY message_id, seq"
)
_SET_STATUS_AND_FACTS = (
    "UPDATE messages SET status = $4, "
    + ", ".join(f"{column} = ${5 + i}" for i, column in enumerate(FACT_COLUMNS))
    + " WHERE id = $3 AND user_id = $1 AND session_id = $2"
)

_UPDATE_WITH_FACTS = (
    "UPDATE messages SET content = $4, status = $5, "
    + ", ".join(f"{column} = ${6 + i}" for i, column in enumerate(FACT_COLUMNS))
    + " WHERE id = $3 AND user_id = $1 AND session_id = $2"
)


def describe_url(url: str) -> str:
    """``host:port/dbname``: where the database is, without user or password (for logs)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path}"


def _reason(error: BaseException) -> str:
    """Why, in a few words that name no address: /readyz shows it to anyone who asks (the
    log line, for the operator, says where)."""
    if isinstance(error, TimeoutError):
        return "did not answer in time"
    if isinstance(error, OSError):  # its text carries the address it could not reach
        return os.strerror(error.errno) if error.errno else type(error).__name__
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The pool's reset on release. asyncpg's default resets session state with a statement
    each time (a round trip per call); nothing here sets session state, and the pool still
    rolls back a transaction left open."""


class PostgresSessionStore:
    backend = "PostgreSQL"

    def __init__(self, url: str, *, pool_size: int = 10, timeout: float = 5.0) -> None:
        # asyncpg knows postgres:// and postgresql:// alike; Heroku gives the former.
        self.url = url
        self.where = describe_url(url)
        self.timeout = timeout
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()
        self._failed_at = float("-inf")
        self._failure = ""
        self._down = False

    # -- connections ---------------------------------------------------------------------

    async def open(self) -> None:
        """Create the pool and bring the schema up to date; if the database cannot be
        reached, say so and leave the schema to the first call that reaches it."""
        try:
            await self._ready(start_up=True)
        except StoreUnavailable as error:
            log.warning("database_unavailable", database=self.where, reason=error.reason)

    async def _ready(self, *, start_up: bool = False) -> asyncpg.Pool:
        if self._pool is None:
            # min_size 0: creating the pool connects to nothing, so it cannot fail or hang.
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=0,
                max_size=self._pool_size,
                timeout=self.timeout,
                command_timeout=self.timeout,
                max_inactive_connection_lifetime=300,
                reset=_keep_session,
            )
        if not self._schema_ready:
            async with self._schema_lock:
                if not self._schema_ready:
                    await self._upgrade(start_up)
        return self._pool

    async def _upgrade(self, start_up: bool) -> None:
        try:
            if start_up:
                # At start-up another instance may hold the lock while it upgrades: wait.
                await upgrade_postgres(self.url, timeout=self.timeout)
            else:
                async with asyncio.timeout(self.timeout * 2):
                    await upgrade_postgres(self.url, timeout=self.timeout)
        except _UNREACHABLE as error:
            raise self._unavailable(error) from None
        except DBAPIError as error:  # the database went away during the upgrade
            raise self._unavailable(error.orig or error) from None
        self._schema_ready = True
        log.info("database_ready", database=self.where)

    def _unavailable(self, error: BaseException) -> StoreUnavailable:
        if not self._down:  # one line when it goes, not one per refused call
            log.warning(
                "database_unreachable",
                database=self.where,
                error=type(error).__name__,
                detail=str(error).splitlines()[0] if str(error) else "",
            )
        self._down = True
        self._failed_at = time.monotonic()
        self._failure = f"PostgreSQL unreachable ({_reason(error)})"
        return StoreUnavailable(self._failure, retry_after=max(1.0, _QUIET_AFTER_FAILURE))

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy]:
        """A pooled connection, with failures to reach the database as StoreUnavailable."""
        if time.monotonic() - self._failed_at < _QUIET_AFTER_FAILURE:
            raise StoreUnavailable(self._failure, retry_after=_QUIET_AFTER_FAILURE)
        try:
            pool = await self._ready()
            async with pool.acquire(timeout=self.timeout) as connection:
                yield connection
            if self._down:  # the work went through: it is back
                self._down = False
                log.info("database_reachable", database=self.where)
        except _UNREACHABLE as error:
            raise self._unavailable(error) from None

    def connection(self) -> AbstractAsyncContextManager[asyncpg.pool.PoolConnectionProxy]:
        """A pooled connection for another table of this database (the usage ledger), with
        the same handling of a database that is down."""
        return self._connection()

    # -- the store contract --------------------------------------------------------------

    async def open_session(self, user_id: str, session_id: str, title: str) -> SessionRecord:
        now = time.time()
        async with self._connection() as db:
            # One round trip: the new row when it was inserted, else the existing one.
            row = await db.fetchrow(
                "WITH created AS ("
                " INSERT INTO sessions (user_id, session_id, title, created_at, updated_at)"
                " VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING"
                " RETURNING session_id, title, updated_at, memory::text, leaf_id)"
                " SELECT * FROM created UNION ALL"
                " SELECT session_id, title, updated_at, memory::text, leaf_id FROM sessions"
                " WHERE user_id = $1 AND session_id = $2 LIMIT 1",
                user_id,
                session_id,
                title,
                now,
            )
        assert row is not None
        return SessionRecord(row[0], row[1], row[2], json.loads(row[3]), row[4])

    async def open_with_message(
        self, user_id: str, session_id: str, title: str, content: str, *, parts: Sequence[Part] = ()
    ) -> tuple[SessionRecord, MessageTree, int]:
        # The three calls a turn made before: each is one round trip, and the wait for the
        # network is the loop's, not the server's core.
        record = await self.open_session(user_id, session_id, title)
        tree = await self.message_tree(user_id, session_id)
        earlier = tree.branch()
        message_id = await self.add_message(
            user_id,
            session_id,
            "user",
            content,
            "complete",
            parts=parts,
            parent=earlier[-1].id if earlier else None,
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
        now = time.time()
        async with self._connection() as db:
            # One statement, so one round trip and atomic: the message and the session's
            # new updated_at.
            message_id = await db.fetchval(
                f"WITH added AS ({_ADD_MESSAGE}),"
                " touched AS (UPDATE sessions SET updated_at = $6,"
                " leaf_id = (SELECT id FROM added)"
                " WHERE user_id = $1 AND session_id = $2)"
                " SELECT id FROM added",
                user_id,
                session_id,
                role,
                content,
                status,
                now,
                reply_to,
                *fact_values(facts),
                parts_json(parts),
                None if isinstance(parent, Leaf) else parent,
                isinstance(parent, Leaf),
            )
        return int(message_id)

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
        # The session's updated_at is left alone: the message is not new.
        async with self._connection() as db, db.transaction():
            await db.execute(
                "DELETE FROM message_parts"
                " WHERE user_id = $1 AND session_id = $2 AND message_id = $3",
                user_id,
                session_id,
                message_id,
            )
            if parts is not None:
                await db.execute(_SET_PARTS, user_id, session_id, message_id, parts_json(parts))
            if facts is None:
                await db.execute(
                    "UPDATE messages SET content = $4, status = $5"
                    " WHERE id = $3 AND user_id = $1 AND session_id = $2",
                    user_id,
                    session_id,
                    message_id,
                    content,
                    status,
                )
                return
            await db.execute(
                _UPDATE_WITH_FACTS,
                user_id,
                session_id,
                message_id,
                content,
                status,
                *fact_values(facts),
            )

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
        # A row of its own for the new text, as in SQLite: an UPDATE of ``content`` would
        # write a new version of the whole text (and its TOAST) at every save.
        async with self._connection() as db, db.transaction():
            if text:
                await db.execute(_APPEND_PART, user_id, session_id, message_id, text)
            if facts is None:
                await db.execute(
                    "UPDATE messages SET status = $4 WHERE id = $3 AND user_id = $1"
                    " AND session_id = $2 AND status <> $4",
                    user_id,
                    session_id,
                    message_id,
                    status,
                )
            else:
                await db.execute(
                    _SET_STATUS_AND_FACTS,
                    user_id,
                    session_id,
                    message_id,
                    status,
                    *fact_values(facts),
                )
            if parts is not None:
                await db.execute(_SET_PARTS, user_id, session_id, message_id, parts_json(parts))

    async def merge_memory(
        self,
        user_id: str,
        session_id: str,
        changed: Mapping[str, Any],
        removed: Iterable[str] = (),
    ) -> dict[str, Any]:
        # One statement: the row is locked while the new memory is computed from the stored
        # one, so a concurrent merge waits and then merges into this one's result.
        async with self._connection() as db:
            row = await db.fetchval(
                "UPDATE sessions SET memory = (memory || $3::jsonb) - $4::text[]"
                " WHERE user_id = $1 AND session_id = $2 RETURNING memory::text",
                user_id,
                session_id,
                json.dumps(dict(changed), ensure_ascii=False),
                list(removed),
            )
        return {} if row is None else dict(json.loads(row))

    async def save_memory(self, user_id: str, session_id: str, memory: dict[str, Any]) -> None:
        async with self._connection() as db:
            await db.execute(
                "UPDATE sessions SET memory = $3::jsonb WHERE user_id = $1 AND session_id = $2",
                user_id,
                session_id,
                json.dumps(memory, ensure_ascii=False),
            )

    async def messages(self, user_id: str, session_id: str) -> list[StoredMessage]:
        async with self._connection() as db, db.transaction(isolation="repeatable_read"):
            # One snapshot: a part added between the two reads would otherwise show twice
            # or not at all once the final save folds it in.
            return (await _tree(db, user_id, session_id)).branch()

    async def message_tree(self, user_id: str, session_id: str) -> MessageTree:
        async with self._connection() as db, db.transaction(isolation="repeatable_read"):
            return await _tree(db, user_id, session_id)

    async def set_leaf(self, user_id: str, session_id: str, message_id: int) -> bool:
        async with self._connection() as db:
            result = await db.execute(
                "UPDATE sessions SET leaf_id = $3 WHERE user_id = $1 AND session_id = $2"
                " AND EXISTS (SELECT 1 FROM messages WHERE id = $3 AND user_id = $1"
                " AND session_id = $2)",
                user_id,
                session_id,
                message_id,
            )
        return result != "UPDATE 0"

    async def get_session(self, user_id: str, session_id: str) -> SessionRecord | None:
        async with self._connection() as db:
            row = await db.fetchrow(
                "SELECT session_id, title, updated_at, memory::text, leaf_id FROM sessions"
                " WHERE user_id = $1 AND session_id = $2",
                user_id,
                session_id,
            )
        if row is None:
            return None
        return SessionRecord(row[0], row[1], row[2], json.loads(row[3]), row[4])

    async def list_sessions(self, user_id: str, limit: int = 100) -> list[SessionRecord]:
        async with self._connection() as db:
            rows = await db.fetch(
                "SELECT session_id, title, updated_at FROM sessions WHERE user_id = $1"
                " ORDER BY updated_at DESC, created_at DESC, session_id LIMIT $2",
                user_id,
                limit,
            )
        return [SessionRecord(row[0], row[1], row[2]) for row in rows]

    async def delete_session(self, user_id: str, session_id: str) -> bool:
        async with self._connection() as db, db.transaction():
            await db.execute(
                "DELETE FROM message_parts WHERE user_id = $1 AND session_id = $2",
                user_id,
                session_id,
            )
            await db.execute(
                "DELETE FROM messages WHERE user_id = $1 AND session_id = $2", user_id, session_id
            )
            result = await db.execute(
                "DELETE FROM sessions WHERE user_id = $1 AND session_id = $2", user_id, session_id
            )
        return result != "DELETE 0"

    async def rename_session(self, user_id: str, session_id: str, title: str) -> bool:
        async with self._connection() as db:
            result = await db.execute(
                "UPDATE sessions SET title = $3 WHERE user_id = $1 AND session_id = $2",
                user_id,
                session_id,
                title,
            )
        return result != "UPDATE 0"

    async def search_sessions(
        self, user_id: str, words: Sequence[str], limit: int = 50
    ) -> list[SessionMatch]:
        if not words:
            return []
        # Each word a prefix: the words are letters and digits only (server.stores.search),
        # so nothing in them is tsquery syntax.
        query = " & ".join(f"{word}:*" for word in words)
        async with self._connection() as db, db.transaction(isolation="repeatable_read"):
            # Newest message first: a session's snippet comes from its newest match.
            hits = await db.fetch(
                "SELECT DISTINCT ON (session_id) session_id, ts_headline('simple', body, q,"
                " 'MaxFragments=1, MaxWords=12, MinWords=4, FragmentDelimiter=…,"
                ' StartSel="", StopSel=""\')'
                " FROM message_search, to_tsquery('simple', $2) AS q"
                " WHERE user_id = $1 AND document @@ q ORDER BY session_id, message_id DESC",
                user_id,
                query,
            )
            sessions = await db.fetch(
                "SELECT session_id, title, updated_at FROM sessions WHERE user_id = $1"
                " ORDER BY updated_at DESC, created_at DESC, session_id",
                user_id,
            )
        return ranked(
            (SessionRecord(row[0], row[1], row[2]) for row in sessions),
            words,
            {row[0]: row[1] for row in hits},
            limit,
        )

    async def export_sessions(self, user_id: str | None = None) -> AsyncIterator[ArchivedSession]:
        async with self._connection() as db, db.transaction(isolation="repeatable_read"):
            # One snapshot for the whole export: a turn saved meanwhile is in it or not,
            # never half.
            sessions = await db.fetch(
                "SELECT user_id, session_id, title, memory::text, created_at, updated_at"
                " FROM sessions WHERE $1::text IS NULL OR user_id = $1"
                " ORDER BY created_at, user_id, session_id",
                user_id,
            )
            for row in sessions:
                tree = await _tree(db, row[0], row[1])
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

    async def import_sessions(
        self, sessions: Sequence[ArchivedSession], *, replace: bool = False
    ) -> None:
        users = [session.user_id for session in sessions]
        ids = [session.session_id for session in sessions]
        async with self._connection() as db, db.transaction():
            existing = await db.fetch(
                "SELECT user_id, session_id FROM sessions"
                " WHERE (user_id, session_id) IN"
                " (SELECT * FROM unnest($1::text[], $2::text[]))",
                users,
                ids,
            )
            if existing and not replace:
                raise SessionExists([(row[0], row[1]) for row in existing])
            for row in existing:
                await db.execute(
                    "DELETE FROM message_parts WHERE user_id = $1 AND session_id = $2",
                    row[0],
                    row[1],
                )
                await db.execute(
                    "DELETE FROM messages WHERE user_id = $1 AND session_id = $2", row[0], row[1]
                )
                await db.execute(
                    "DELETE FROM sessions WHERE user_id = $1 AND session_id = $2", row[0], row[1]
                )
            insert = await db.prepare(f"{_INSERT_MESSAGE} RETURNING id")
            for session in sessions:
                await db.execute(
                    "INSERT INTO sessions"
                    " (user_id, session_id, title, memory, created_at, updated_at)"
                    " VALUES ($1, $2, $3, $4::jsonb, $5, $6)",
                    session.user_id,
                    session.session_id,
                    session.title,
                    json.dumps(session.memory, ensure_ascii=False),
                    session.created_at,
                    session.updated_at,
                )
                new_ids: dict[int, int] = {}
                for message in session.messages:
                    new_ids[message.id] = await insert.fetchval(
                        session.user_id,
                        session.session_id,
                        message.role,
                        message.content,
                        message.status,
                        message.created_at,
                        new_ids.get(message.reply_to) if message.reply_to is not None else None,
                        *fact_values(message.facts),
                        parts_json(message.parts),
                        new_ids.get(message.parent_id) if message.parent_id is not None else None,
                    )
                if session.leaf_id is not None:
                    await db.execute(
                        "UPDATE sessions SET leaf_id = $3 WHERE user_id = $1 AND session_id = $2",
                        session.user_id,
                        session.session_id,
                        new_ids.get(session.leaf_id),
                    )

    async def ping(self) -> None:
        async with self._connection() as db:
            await db.fetchval("SELECT 1")

    async def close(self) -> None:
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), timeout=self.timeout)
            except TimeoutError:
                self._pool.terminate()
            self._pool = None


async def _tree(db: asyncpg.pool.PoolConnectionProxy, user_id: str, session_id: str) -> MessageTree:
    """A session's messages and its leaf; call inside a snapshot."""
    leaf = await db.fetchval(
        "SELECT leaf_id FROM sessions WHERE user_id = $1 AND session_id = $2",
        user_id,
        session_id,
    )
    return MessageTree(await _messages(db, user_id, session_id), leaf)


async def _messages(
    db: asyncpg.pool.PoolConnectionProxy, user_id: str, session_id: str
) -> list[StoredMessage]:
    """A session's messages with their appended parts; call inside a snapshot."""
    rows = await db.fetch(
        f"{_SELECT_MESSAGES} WHERE user_id = $1 AND session_id = $2 ORDER BY id",
        user_id,
        session_id,
    )
    parts = await db.fetch(_SELECT_PARTS, user_id, session_id)
    return messages_with_parts(rows, parts)
