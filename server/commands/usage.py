"""``python -m server usage``: what every user spent in a period, as a table or CSV.

The same figures as ``GET /api/usage``, one row per user and model, read from the ledger in
the configured history database. ``--since`` and ``--until`` take epoch seconds or a UTC date
(``2026-12-01``); without them, the current budget period (``budgets.period``).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from datetime import UTC, datetime
from typing import TextIO

from server.config import Settings
from server.contract import StoreUnavailable
from server.stores.history import session_store
from server.usage.ledger import ModelTotals
from server.usage.ledgers import ledger_for
from server.usage.periods import period_at

__all__ = ["COLUMNS", "moment", "run_usage_command"]

COLUMNS = (
    "user_id",
    "provider",
    "model",
    "answers",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "estimated_answers",
    "unpriced_answers",
)


def moment(text: str) -> float:
    """Epoch seconds, or a UTC date or date and time in ISO form."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither epoch seconds nor a date like 2026-12-01"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _row(found: ModelTotals) -> list[str]:
    totals = found.totals
    priced = totals.answers > totals.unpriced_answers
    return [
        found.user_id,
        found.provider or "",
        found.model or "",
        str(totals.answers),
        str(totals.input_tokens),
        str(totals.output_tokens),
        str(totals.cached_tokens),
        str(totals.reasoning_tokens),
        f"{totals.cost_usd:.6f}" if priced else "",
        str(totals.estimated_answers),
        str(totals.unpriced_answers),
    ]


def _write(rows: list[list[str]], form: str, out: TextIO) -> None:
    if form == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
        return
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    for line in [list(COLUMNS), *rows]:
        cells = (
            cell.rjust(width) if i >= 3 else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        print("  ".join(cells).rstrip(), file=out)


async def _run(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    store = session_store(settings)
    default_since, default_until = period_at(settings.budgets.period, datetime.now(UTC).timestamp())
    since = default_since if args.since is None else args.since
    until = default_until if args.until is None else args.until
    try:
        await store.open()
        await store.ping()
        rows = await ledger_for(store).by_model(args.user, since, until)
    except StoreUnavailable as error:
        print(f"sluice: history unavailable: {error.reason}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    _write([_row(found) for found in rows], args.format, out)
    shown = " to ".join(
        datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC") for t in (since, until)
    )
    print(f"sluice: {len(rows)} rows, {shown}", file=sys.stderr)
    return 0


def run_usage_command(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_run(settings, args, sys.stdout))
