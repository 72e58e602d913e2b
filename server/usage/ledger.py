"""The usage ledger's rows and what is asked of it, the same for SQLite and PostgreSQL.

One :class:`LedgerEntry` per answer, keyed by its stream id: recording one twice (two
instances both finding a dead producer's turn, an import run again) keeps the first.
Sums are the database's: a user's month is one indexed range scan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

__all__ = ["COLUMNS", "Ledger", "LedgerEntry", "ModelTotals", "Totals"]


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    user_id: str
    session_id: str | None
    stream_id: str
    provider: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: float | None
    estimated: bool
    created_at: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


COLUMNS = tuple(LedgerEntry.__dataclass_fields__)


@dataclass(slots=True)
class Totals:
    """Sums over answers. ``cost_usd`` sums the answers that have a price;
    ``unpriced_answers`` says how many had none (their cost is unknown, not 0)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    answers: int = 0
    estimated_answers: int = 0
    unpriced_answers: int = 0

    def add(self, other: Totals) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["cost_usd"] = round(self.cost_usd, 6)
        return data


@dataclass(slots=True)
class ModelTotals:
    """One user's answers from one provider's model."""

    user_id: str
    provider: str | None
    model: str | None
    totals: Totals = field(default_factory=Totals)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"provider": self.provider, "model": self.model}
        data.update(self.totals.as_json())
        if self.totals.answers == self.totals.unpriced_answers:
            data["cost_usd"] = None  # no price for this model: unknown, not free
        return data


# The sums every query takes, in ModelTotals order after the grouping columns.
SUMS = (
    "SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens), SUM(reasoning_tokens),"
    " SUM(COALESCE(cost_usd, 0)), COUNT(*),"
    " SUM(CASE WHEN estimated THEN 1 ELSE 0 END),"
    " SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END)"
)


def totals_from(row: Sequence[Any]) -> Totals:
    return Totals(
        int(row[0] or 0),
        int(row[1] or 0),
        int(row[2] or 0),
        int(row[3] or 0),
        float(row[4] or 0.0),
        int(row[5] or 0),
        int(row[6] or 0),
        int(row[7] or 0),
    )


class Ledger(Protocol):
    async def record(self, entry: LedgerEntry) -> bool:
        """Keep ``entry``; False (and nothing kept) when its stream id is recorded already."""
        ...

    async def by_model(self, user_id: str | None, since: float, until: float) -> list[ModelTotals]:
        """Answers with ``since <= created_at < until`` summed by user, provider and model
        (one user's, or everyone's when None)."""
        ...

    async def spent(self, user_id: str, since: float) -> tuple[int, float]:
        """Input plus output tokens and priced cost of the user's answers since ``since``:
        what a budget counts."""
        ...

    def entries(self, user_id: str | None = None) -> AsyncIterator[LedgerEntry]:
        """Every entry (of ``user_id``), oldest first: the export."""
        ...

    async def import_entries(self, entries: Sequence[LedgerEntry]) -> int:
        """Keep ``entries`` in one transaction (ones recorded already are skipped); how many
        were new."""
        ...
