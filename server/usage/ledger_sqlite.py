"""The usage ledger in the SQLite history file (the table Alembic's revision 0005 made).

It writes through the sessions store's own connection (the store opened the file and brought
it to the newest schema). A second connection made every turn's first store call slower: a
connection that sees another one's commit in the file drops its whole page cache and reads
the pages again, and the ledger commits after every answer. Calls are synchronous, as the
sessions store's are (one indexed statement on a local file): none runs inside another's
transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence

from server.usage.ledger import COLUMNS, SUMS, LedgerEntry, ModelTotals, totals_from

__all__ = ["SQLiteLedger"]

_INSERT = (
    f"INSERT INTO usage_ledger ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    " ON CONFLICT (stream_id) DO NOTHING"
)


class SQLiteLedger:
    def __init__(self, db: sqlite3.Connection) -> None:
        # The sessions store's: WAL, and no fsync per commit (a power cut may lose the last
        # entries, never corrupt the file). FULL, the default of a new connection, made every
        # answer's entry wait on the disk: a quarter of the CPU of a short turn.
        self._db = db

    async def record(self, entry: LedgerEntry) -> bool:
        return self._db.execute(_INSERT, _values(entry)).rowcount == 1

    async def by_model(self, user_id: str | None, since: float, until: float) -> list[ModelTotals]:
        rows = self._db.execute(
            f"SELECT user_id, provider, model, {SUMS} FROM usage_ledger"
            " WHERE (?1 IS NULL OR user_id = ?1) AND created_at >= ?2 AND created_at < ?3"
            " GROUP BY user_id, provider, model ORDER BY user_id, provider, model",
            (user_id, since, until),
        ).fetchall()
        return [ModelTotals(row[0], row[1], row[2], totals_from(row[3:])) for row in rows]

    async def spent(self, user_id: str, since: float) -> tuple[int, float]:
        row = self._db.execute(
            "SELECT SUM(input_tokens + output_tokens), SUM(COALESCE(cost_usd, 0))"
            " FROM usage_ledger WHERE user_id = ? AND created_at >= ?",
            (user_id, since),
        ).fetchone()
        return int(row[0] or 0), float(row[1] or 0.0)

    async def entries(self, user_id: str | None = None) -> AsyncIterator[LedgerEntry]:
        rows = self._db.execute(
            f"SELECT {', '.join(COLUMNS)} FROM usage_ledger WHERE ?1 IS NULL OR user_id = ?1"
            " ORDER BY created_at, id",
            (user_id,),
        ).fetchall()
        for row in rows:
            yield _entry(row)

    async def import_entries(self, entries: Sequence[LedgerEntry]) -> int:
        before = self._db.total_changes
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(_INSERT, [_values(entry) for entry in entries])
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return self._db.total_changes - before

    async def close(self) -> None:
        """Nothing: the connection is the sessions store's, which closes it."""


def _values(entry: LedgerEntry) -> tuple[object, ...]:
    return tuple(getattr(entry, name) for name in COLUMNS)


def _entry(row: Sequence[object]) -> LedgerEntry:
    values = dict(zip(COLUMNS, row, strict=True))
    values["estimated"] = bool(values["estimated"])
    return LedgerEntry(**values)  # type: ignore[arg-type]
