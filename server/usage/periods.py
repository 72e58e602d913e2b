"""Budget periods: a UTC day or a UTC calendar month, as operators read a bill."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

__all__ = ["Period", "period_at"]

Period = Literal["day", "month"]


def period_at(period: Period, now: float) -> tuple[float, float]:
    """The start and the end (epoch seconds) of the period that holds ``now``."""
    moment = datetime.fromtimestamp(now, UTC)
    if period == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=1)
    else:
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
    return start.timestamp(), end.timestamp()
