"""The usage service: the ledger, prices and budgets behind ``services.usage``, and the
reports ``GET /api/usage`` and ``python -m server usage`` give.

Budgets are skipped entirely for a user whose group has no limit: no counter is read or
written, and the ledger is only written once per answer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from server.config import BudgetLimits, BudgetSettings
from server.contract import Error, ErrorCode, LostTurn, Spent, StoreUnavailable, Turn, error
from server.observability.telemetry import Telemetry
from server.usage.budgets import BudgetCounter
from server.usage.ledger import Ledger, LedgerEntry, ModelTotals, Totals
from server.usage.periods import period_at
from server.usage.pricing import Prices

__all__ = ["CHARS_PER_TOKEN", "UsageBook", "estimate_tokens"]

log = structlog.get_logger("sluice.usage")

# Characters per token when a provider gave no count: OpenAI's rule of thumb for English
# text ("one token is about four characters"). A rough figure, and marked estimated.
CHARS_PER_TOKEN = 4
DEFAULT_GROUP = "default"
# A counter outlives its period by this much, so a turn that started before the reset
# settles into it.
_COUNTER_GRACE_SECONDS = 3600.0


def estimate_tokens(chars: int) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN)


@dataclass(frozen=True, slots=True)
class _Held:
    key: str
    group: str


class UsageBook:
    def __init__(
        self,
        *,
        ledger: Ledger,
        counters: BudgetCounter,
        prices: Prices,
        budgets: BudgetSettings,
        telemetry: Telemetry,
        hold_seconds: float,
        max_output_tokens: int,
        models: Mapping[str, str],
    ) -> None:
        self.ledger = ledger
        self.counters = counters
        self.prices = prices
        self.budgets = budgets
        self._telemetry = telemetry
        self._hold_seconds = hold_seconds
        self._max_output_tokens = max_output_tokens
        # Provider name -> its configured model, first the first of the chain: a turn's
        # reservation is priced at the model it will most likely get.
        self._models = dict(models)
        self._held: dict[str, _Held] = {}
        self._period = (0.0, 0.0)  # the current period's bounds, computed once per period
        # The group each user was last seen with here, for an operator's report.
        self._groups: dict[str, str] = {}

    # -- budgets -------------------------------------------------------------------------

    def group_of(self, claims: Mapping[str, Any]) -> str:
        group = claims.get("budget_group")
        if isinstance(group, str) and group in self.budgets.groups:
            return group
        return DEFAULT_GROUP

    def limits(self, group: str) -> BudgetLimits | None:
        limits: BudgetLimits = self.budgets.groups.get(group, self.budgets)
        if limits.tokens_per_user is None and limits.usd_per_user is None:
            return None
        return limits

    def _period_now(self, now: float) -> tuple[float, float]:
        start, end = self._period
        if not start <= now < end:
            self._period = start, end = period_at(self.budgets.period, now)
        return start, end

    def _key(self, user_id: str, start: float) -> str:
        return f"{user_id}:{int(start)}"

    async def admit(self, turn: Turn) -> Error | None:
        group = self.group_of(turn.claims)
        if len(self._groups) < 100_000:
            self._groups[turn.user_id] = group
        limits = self.limits(group)
        if limits is None:
            return None
        now = time.time()
        start, end = self._period_now(now)
        key = self._key(turn.user_id, start)
        prompt = estimate_tokens(len(turn.message))
        tokens = prompt + self._max_output_tokens
        model = self._models.get(turn.provider or "", next(iter(self._models.values()), None))
        usd = self.prices.cost(model, prompt, self._max_output_tokens, 0) or 0.0
        standing = None
        for _ in range(2):
            standing = await self.counters.reserve(
                key,
                turn.stream_id,
                tokens,
                usd,
                limit_tokens=limits.tokens_per_user,
                limit_usd=limits.usd_per_user,
                hold_seconds=self._hold_seconds,
            )
            if standing is not None:
                break
            spent_tokens, spent_usd = await self.ledger.spent(turn.user_id, start)
            await self.counters.seed(key, spent_tokens, spent_usd, end + _COUNTER_GRACE_SECONDS)
        if standing is not None and not standing.admitted:
            self._telemetry.budget_refused(group)
            return error(
                ErrorCode.BUDGET_EXHAUSTED,
                f"Your usage budget for this {self.budgets.period} is spent. It comes back"
                f" at {_when(end)}.",
                retryable=False,
                retry_after=math.ceil(end - now),
            )
        self._held[turn.stream_id] = _Held(key, group)
        return None

    # -- the ledger ----------------------------------------------------------------------

    async def settle(self, turn: Turn, spent: Spent) -> None:
        held = self._held.pop(turn.stream_id, None)
        await self._record(turn.user_id, turn.session_id, turn.stream_id, spent, held)

    async def settle_lost(self, lost: LostTurn, spent: Spent) -> None:
        # Another process admitted it: its hold lapses on its own; only the spending counts.
        held = None
        if self.limits(self._groups.get(lost.user_id, DEFAULT_GROUP)) is not None:
            start, _ = period_at(self.budgets.period, time.time())
            held = _Held(self._key(lost.user_id, start), DEFAULT_GROUP)
        await self._record(lost.user_id, lost.session_id, lost.stream_id, spent, held)

    async def _record(
        self,
        user_id: str,
        session_id: str | None,
        stream_id: str,
        spent: Spent,
        held: _Held | None,
    ) -> None:
        cost = self.prices.cost(
            spent.model, spent.input_tokens, spent.output_tokens, spent.cached_tokens
        )
        entry = LedgerEntry(
            user_id=user_id,
            session_id=session_id,
            stream_id=stream_id,
            provider=spent.provider,
            model=spent.model,
            input_tokens=spent.input_tokens,
            output_tokens=spent.output_tokens,
            cached_tokens=spent.cached_tokens,
            reasoning_tokens=spent.reasoning_tokens,
            cost_usd=cost,
            estimated=spent.estimated,
            created_at=time.time(),
        )
        try:
            new = await self.ledger.record(entry)
            if held is not None:
                tokens = spent.input_tokens + spent.output_tokens if new else 0
                await self.counters.settle(held.key, stream_id, tokens, (cost or 0.0) * new)
        except StoreUnavailable as failure:
            # The answer was given; its cost could not be kept. Say so, once per answer.
            log.warning("usage_not_recorded", reason=failure.reason, stream_id=stream_id)
            return
        if new:
            self._telemetry.answer_recorded(
                spent.provider,
                spent.model,
                {
                    "input": spent.input_tokens,
                    "output": spent.output_tokens,
                    "cached": spent.cached_tokens,
                    "reasoning": spent.reasoning_tokens,
                },
                cost,
                spent.estimated,
            )

    # -- reports -------------------------------------------------------------------------

    def default_window(self) -> tuple[float, float]:
        """The current budget period: what a report covers when not told."""
        return period_at(self.budgets.period, time.time())

    async def report(
        self, user_id: str, since: float, until: float, claims: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """``GET /api/usage/{user_id}``'s answer."""
        rows = await self.ledger.by_model(user_id, since, until)
        group = (
            self.group_of(claims)
            if claims is not None
            else self._groups.get(user_id, DEFAULT_GROUP)
        )
        return {
            "user_id": user_id,
            "since": since,
            "until": until,
            "totals": _totals_json(rows),
            "by_model": [row.as_json() for row in rows],
            "budget": await self.budget(user_id, group),
        }

    async def everyone(self, since: float, until: float) -> dict[str, Any]:
        """``GET /api/usage``'s answer: every user's totals in the window."""
        rows = await self.ledger.by_model(None, since, until)
        users: dict[str, list[ModelTotals]] = {}
        for row in rows:
            users.setdefault(row.user_id, []).append(row)
        return {
            "since": since,
            "until": until,
            "users": [
                {"user_id": user_id, "totals": _totals_json(found)}
                for user_id, found in users.items()
            ],
        }

    async def budget(self, user_id: str, group: str) -> dict[str, Any] | None:
        limits = self.limits(group)
        if limits is None:
            return None
        start, end = period_at(self.budgets.period, time.time())
        used = await self.counters.used(self._key(user_id, start))
        if used is None:
            used = await self.ledger.spent(user_id, start)
        return {
            "period": self.budgets.period,
            "group": group,
            "limit_tokens": limits.tokens_per_user,
            "limit_usd": limits.usd_per_user,
            "used_tokens": used[0],
            "used_usd": round(used[1], 6),
            "resets_at": end,
        }


def _totals_json(rows: list[ModelTotals]) -> dict[str, Any]:
    totals = Totals()
    for row in rows:
        totals.add(row.totals)
    data = totals.as_json()
    if totals.answers and totals.answers == totals.unpriced_answers:
        data["cost_usd"] = None  # nothing had a price: unknown, not free
    return data


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")
