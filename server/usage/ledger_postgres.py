"""The usage ledger in PostgreSQL, through the sessions store's pool (and its handling of a
database that is down: :class:`StoreUnavailable`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from server.stores.postgres import PostgresSessionStore
from server.usage.ledger import COLUMNS, SUMS, LedgerEntry, ModelTotals, totals_from

__all__ = ["PostgresLedger"]

_INSERT = (
    f"INSERT INTO usage_ledger ({', '.join(COLUMNS)})"
    f" VALUES ({', '.join(f'${n}' for n in range(1, len(COLUMNS) + 1))})"
    " ON CONFLICT (stream_id) DO NOTHING"
)


class PostgresLedger:
    def __init__(self, store: PostgresSessionStore) -> None:
        self._store = store

    async def record(self, entry: LedgerEntry) -> bool:
        async with self._store.connection() as db:
            status = await db.execute(_INSERT, *_values(entry))
        return bool(status.endswith(" 1"))  # "INSERT 0 1", or "INSERT 0 0" when kept already

    async def by_model(self, user_id: str | None, since: float, until: float) -> list[ModelTotals]:
        async with self._store.connection() as db:
            rows = await db.fetch(
                f"SELECT user_id, provider, model, {SUMS} FROM usage_ledger"
                " WHERE ($1::text IS NULL OR user_id = $1) AND created_at >= $2"
                " AND created_at < $3"
                " GROUP BY user_id, provider, model ORDER BY user_id, provider, model",
                user_id,
                since,
                until,
            )
        return [ModelTotals(row[0], row[1], row[2], totals_from(list(row)[3:])) for row in rows]

    async def spent(self, user_id: str, since: float) -> tuple[int, float]:
        async with self._store.connection() as db:
            row = await db.fetchrow(
                "SELECT SUM(input_tokens + output_tokens), SUM(COALESCE(cost_usd, 0))"
                " FROM usage_ledger WHERE user_id = $1 AND created_at >= $2",
                user_id,
                since,
            )
        assert row is not None
        return int(row[0] or 0), float(row[1] or 0.0)

    async def entries(self, user_id: str | None = None) -> AsyncIterator[LedgerEntry]:
        async with self._store.connection() as db:
            rows = await db.fetch(
                f"SELECT {', '.join(COLUMNS)} FROM usage_ledger"
                " WHERE $1::text IS NULL OR user_id = $1 ORDER BY created_at, id",
                user_id,
            )
        for row in rows:
            yield LedgerEntry(**dict(row))

    async def import_entries(self, entries: Sequence[LedgerEntry]) -> int:
        async with self._store.connection() as db, db.transaction():
            before = await db.fetchval("SELECT COUNT(*) FROM usage_ledger")
            await db.executemany(_INSERT, [_values(entry) for entry in entries])
            after = await db.fetchval("SELECT COUNT(*) FROM usage_ledger")
        return int(after) - int(before)

    async def close(self) -> None:
        return None  # the pool is the sessions store's


def _values(entry: LedgerEntry) -> tuple[object, ...]:
    return tuple(getattr(entry, name) for name in COLUMNS)
