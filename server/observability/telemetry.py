"""The one place the server reports what happens, for metrics and logs to listen to.

Handlers, the producer, the pipeline and the fallback chain call these hooks; they do
nothing here. ``server.observability.metrics`` subclasses :class:`Telemetry` to feed
Prometheus. Hooks run on the event loop on hot paths: keep them cheap and never let them raise.
"""

from __future__ import annotations

from server.contract import Event, Turn
from server.llm.chain import ChainObserver

__all__ = ["Telemetry"]


class Telemetry(ChainObserver):
    # -- turns (server/core/runner.py) ------------------------------------------------------

    def turn_started(self, turn: Turn) -> None:
        """A producer was admitted and started. Called first thing in the producer's own
        task: context variables set here stay with this turn (its log lines, its hooks)."""

    def turn_ended(
        self, turn: Turn, terminal: Event, seconds: float, first_chunk_seconds: float | None
    ) -> None:
        """A turn ended (or was refused at admission) with ``terminal``; ``seconds`` since it
        started, ``first_chunk_seconds`` until its first chunk (None without one)."""

    # -- stages (server/core/pipeline.py) ---------------------------------------------------

    def stage_done(self, stage: str, seconds: float) -> None:
        """A stage finished (a wrapper: with the stages inside it), or failed."""

    # -- readers (server/http/streams.py) ---------------------------------------------------

    def reader_opened(self, kind: str) -> None:
        """An event-stream response started; ``kind`` is "new" or "resume"."""

    def reader_closed(self, kind: str, cause: str) -> None:
        """It ended; ``cause``: "complete", "client_gone" or "slow_reader"."""

    def events_sent(self, events: int, size: int) -> None:
        """``events`` frames of ``size`` bytes in all were written in one write."""

    # -- stores (server/http/base.py) ------------------------------------------------------

    def store_unavailable(self, store: str) -> None:
        """A request was answered 503 because ``store`` ("sessions", "redis") could not be
        reached."""

    # -- usage (server/usage/book.py) -------------------------------------------------------

    def answer_recorded(
        self,
        provider: str | None,
        model: str | None,
        tokens: dict[str, int],
        cost_usd: float | None,
        estimated: bool,
    ) -> None:
        """An answer went into the usage ledger: ``tokens`` by kind (input, output, cached,
        reasoning), its cost (None: the model has no price)."""

    def budget_refused(self, group: str) -> None:
        """A turn was refused because the user's budget (of ``group``) is spent."""

    # -- tools (server/tools/service.py) ---------------------------------------------------

    def tool_finished(self, tool: str, outcome: str) -> None:
        """A tool call ended: ``outcome`` is ``ok``, its error kind, ``denied`` (its owner
        refused it) or ``cancelled`` (the turn stopped while it waited or ran)."""
