"""Prometheus metrics, fed by the telemetry hooks; scraped at ``GET /metrics``.

Labels stay bounded: provider and stage names come from the configuration, outcomes and
reasons from fixed vocabularies (anything else a plugin invents is counted as ``other``);
never a user id or a stream id. The metrics live in their own :class:`CollectorRegistry`, so
two servers in one process (tests) do not share counters.

``events_sent`` runs once per write to a client: it touches two pre-bound counters, nothing
else. The log lines of a turn come from
:class:`server.observability.turnlog.TurnLog`, which this extends.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from server.config import Settings
from server.contract import Event, FailureKind, Turn
from server.observability.turnlog import TurnLog, current_turn

__all__ = ["CIRCUIT_STATES", "OUTCOMES", "PrometheusTelemetry"]

# The event stream's error codes, and "complete".
OUTCOMES = frozenset(
    {
        "complete",
        "rate_limited",
        "budget_exhausted",
        "too_many_streams",
        "upstream_unavailable",
        "upstream_interrupted",
        "timeout",
        "cancelled",
        "internal",
    }
)
# The value of sluice_provider_circuit_state.
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "open": 2}
# Chain reasons: FailureKind values plus the chain's own.
FALLBACK_REASONS = frozenset(kind.value for kind in FailureKind) | {"circuit_open", "empty"}
_MODES = ("stream", "non-stream")
DISCONNECT_CAUSES = frozenset({"client_gone", "slow_reader"})
TOKEN_KINDS = ("input", "output", "cached", "reasoning")
TOOL_OUTCOMES = frozenset({"ok", "denied", "timeout", "invalid_arguments", "failed", "cancelled"})
# Tool and model names come from plugins, MCP servers and upstreams: at most this many of
# each get their own label value, the rest are counted as "other".
_MAX_NAMES = 100

# Seconds. First chunks are a fraction of a second to tens of seconds; whole turns to minutes.
_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60)
_TURN_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30)


def _bounded(value: str | None, allowed: Iterable[str]) -> str:
    return value if value is not None and value in allowed else "other"


class PrometheusTelemetry(TurnLog):
    """Metrics (and, through :class:`TurnLog`, the turn's log lines)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        # No "_created" series: a third of the scrape, and nothing an alert here uses.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry = CollectorRegistry()
        self._stages = frozenset(settings.pipeline.stages)
        self._models: set[str] = set(settings.pricing)
        self._tools: set[str] = set()
        self._groups = frozenset(["default", *settings.budgets.groups])
        self._usage_children: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._providers: frozenset[str] = frozenset(settings.llm.providers)

        self.streams_open = Gauge(
            "sluice_streams_open",
            "Event-stream responses open now (new and resumed).",
            registry=registry,
        )
        self.turns_running = Gauge(
            "sluice_turns_running", "Turns being produced now.", registry=registry
        )
        self.turns = Counter(
            "sluice_turns",
            "Turns ended, by outcome: complete or the error code.",
            ["outcome"],
            registry=registry,
        )
        self.rejections = Counter(
            "sluice_rate_limit_rejections",
            "Turns refused by a limit: rate_limited (the rate_limit stage) or"
            " too_many_streams (limits.max_streams_per_user).",
            ["code"],
            registry=registry,
        )
        self.unavailable = Counter(
            "sluice_store_unavailable",
            "Requests answered 503 unavailable because a store (sessions: SQLite or"
            " PostgreSQL; redis: stream logs, limits and caps) could not be reached or did not"
            " answer in time.",
            ["store"],
            registry=registry,
        )
        self.ttft = Histogram(
            "sluice_time_to_first_chunk_seconds",
            "From the start of a turn to its first chunk, by the provider that answered.",
            ["provider"],
            buckets=_TTFT_BUCKETS,
            registry=registry,
        )
        self.turn_seconds = Histogram(
            "sluice_turn_duration_seconds",
            "Whole-turn duration, by provider (none: no provider was asked).",
            ["provider"],
            buckets=_TURN_BUCKETS,
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "sluice_stage_duration_seconds",
            "Time spent in each pipeline stage's own part (a wrapper: until it hands over).",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=registry,
        )
        sent_events = Counter(
            "sluice_events_sent", "Event frames written to clients.", registry=registry
        )
        sent_bytes = Counter(
            "sluice_sent_bytes", "Bytes of event frames written to clients.", registry=registry
        )
        self._inc_events = sent_events.inc
        self._inc_bytes = sent_bytes.inc
        self.readers = Counter(
            "sluice_stream_readers",
            "Event-stream responses started, by kind: new (a POST), resume (a reconnect) or"
            " openai (POST /v1/chat/completions, streaming).",
            ["kind"],
            registry=registry,
        )
        self.resumes = Counter(
            "sluice_stream_resumes",
            "Streams resumed with GET /api/streams/{id}.",
            registry=registry,
        )
        self.disconnects = Counter(
            "sluice_stream_disconnects",
            "Event-stream responses that ended before their terminal event, by cause:"
            " client_gone or slow_reader (dropped after stream.send_timeout_seconds).",
            ["cause"],
            registry=registry,
        )
        self.attempts = Counter(
            "sluice_llm_attempts",
            "Calls to a provider, by mode: stream or non-stream.",
            ["provider", "mode"],
            registry=registry,
        )
        self.call_seconds = Histogram(
            "sluice_llm_call_duration_seconds",
            "Successful provider calls, start to last text.",
            ["provider", "mode"],
            buckets=_TURN_BUCKETS,
            registry=registry,
        )
        self.fallbacks = Counter(
            "sluice_llm_fallbacks",
            "The chain moved on from a provider, by reason (a failure kind, circuit_open,"
            " or empty).",
            ["provider", "reason"],
            registry=registry,
        )
        self.interruptions = Counter(
            "sluice_llm_interruptions",
            "Provider calls that failed after text was sent (upstream_interrupted).",
            ["provider", "reason"],
            registry=registry,
        )
        self.circuit_state = Gauge(
            "sluice_provider_circuit_state",
            "Each provider's circuit: 0 closed, 1 half-open, 2 open.",
            ["provider"],
            registry=registry,
        )

        self.tokens = Counter(
            "sluice_tokens",
            "Tokens of recorded answers, by provider, model and kind: input (cached"
            " included), output (reasoning included), cached, reasoning.",
            ["provider", "model", "kind"],
            registry=registry,
        )
        self.cost = Counter(
            "sluice_cost_usd",
            "Cost of recorded answers in USD, from [pricing] (unpriced models add nothing).",
            ["provider", "model"],
            registry=registry,
        )
        self.answers = Counter(
            "sluice_usage_answers",
            "Answers recorded in the usage ledger, by provider, model, whether their"
            " tokens were estimated and whether the model has a price.",
            ["provider", "model", "estimated", "priced"],
            registry=registry,
        )
        self.budget_refusals = Counter(
            "sluice_budget_refusals",
            "Turns refused because the user's budget is spent (budget_exhausted), by group.",
            ["group"],
            registry=registry,
        )
        self.tool_calls = Counter(
            "sluice_tool_calls",
            "Tool calls ended, by tool and outcome: ok, the error kind, denied or cancelled.",
            ["tool", "outcome"],
            registry=registry,
        )

    def providers_configured(self, names: Iterable[str]) -> None:
        """Name the providers (labels are limited to these); their circuits start closed."""
        self._providers = frozenset(names)
        for name in self._providers:
            self.circuit_state.labels(name).set(CIRCUIT_STATES["closed"])

    def _provider(self, name: str | None) -> str:
        if name is None:
            return "none"
        return _bounded(name, self._providers)

    # -- turns -------------------------------------------------------------------------------

    def turn_started(self, turn: Turn) -> None:
        super().turn_started(turn)
        self.turns_running.inc()

    def turn_ended(
        self, turn: Turn, terminal: Event, seconds: float, first_chunk_seconds: float | None
    ) -> None:
        record = current_turn()
        started = record is not None and record.stream_id == turn.stream_id
        super().turn_ended(turn, terminal, seconds, first_chunk_seconds)
        if started:
            self.turns_running.dec()
        if terminal["type"] == "complete":
            outcome = "complete"
        else:
            outcome = _bounded(terminal.get("code"), OUTCOMES)
        self.turns.labels(outcome).inc()
        if outcome in ("rate_limited", "too_many_streams"):
            self.rejections.labels(outcome).inc()
        provider = self._provider(
            terminal.get("provider") or (record.provider if record and started else None)
        )
        self.turn_seconds.labels(provider).observe(seconds)
        if first_chunk_seconds is not None:
            self.ttft.labels(provider).observe(first_chunk_seconds)

    def stage_done(self, stage: str, seconds: float) -> None:
        super().stage_done(stage, seconds)
        self.stage_seconds.labels(_bounded(stage, self._stages)).observe(seconds)

    # -- readers -----------------------------------------------------------------------------

    def reader_opened(self, kind: str) -> None:
        self.streams_open.inc()
        self.readers.labels(_bounded(kind, ("new", "resume", "openai"))).inc()
        if kind == "resume":
            self.resumes.inc()

    def reader_closed(self, kind: str, cause: str) -> None:
        self.streams_open.dec()
        if cause != "complete":
            self.disconnects.labels(_bounded(cause, DISCONNECT_CAUSES)).inc()

    def events_sent(self, events: int, size: int) -> None:
        self._inc_events(events)
        self._inc_bytes(size)

    def store_unavailable(self, store: str) -> None:
        self.unavailable.labels(_bounded(store, ("sessions", "redis"))).inc()

    # -- the fallback chain ------------------------------------------------------------------

    def on_attempt(self, provider: str, mode: str) -> None:
        super().on_attempt(provider, mode)
        self.attempts.labels(self._provider(provider), _bounded(mode, _MODES)).inc()

    def on_success(self, provider: str, mode: str, seconds: float) -> None:
        super().on_success(provider, mode, seconds)
        self.call_seconds.labels(self._provider(provider), _bounded(mode, _MODES)).observe(seconds)

    def on_fallback(self, provider: str, reason: str) -> None:
        super().on_fallback(provider, reason)
        self.fallbacks.labels(self._provider(provider), _bounded(reason, FALLBACK_REASONS)).inc()

    def on_interrupted(self, provider: str, reason: str) -> None:
        super().on_interrupted(provider, reason)
        self.interruptions.labels(
            self._provider(provider), _bounded(reason, FALLBACK_REASONS)
        ).inc()

    def on_circuit_change(self, provider: str, state: str) -> None:
        super().on_circuit_change(provider, state)
        value = CIRCUIT_STATES.get(state)
        if value is not None:
            self.circuit_state.labels(self._provider(provider)).set(value)

    # -- usage -------------------------------------------------------------------------------

    def answer_recorded(
        self,
        provider: str | None,
        model: str | None,
        tokens: dict[str, int],
        cost_usd: float | None,
        estimated: bool,
    ) -> None:
        super().answer_recorded(provider, model, tokens, cost_usd, estimated)
        priced = cost_usd is not None
        key = (provider, model, estimated, priced)
        bound = self._usage_children.get(key)
        if bound is None:
            # Bound once per provider, model and kind of answer: labels() is most of a
            # counter's cost, and this runs at every answer's end.
            who = self._provider(provider)
            what = _named(model, self._models)
            bound = (
                tuple(self.tokens.labels(who, what, kind).inc for kind in TOKEN_KINDS),
                self.cost.labels(who, what).inc,
                self.answers.labels(who, what, str(estimated).lower(), str(priced).lower()).inc,
            )
            if len(self._usage_children) < 4 * _MAX_NAMES:
                self._usage_children[key] = bound
        token_incs, cost_inc, answers_inc = bound
        for kind, inc in zip(TOKEN_KINDS, token_incs, strict=True):
            inc(tokens.get(kind, 0))
        if cost_usd is not None:
            cost_inc(cost_usd)
        answers_inc()

    def budget_refused(self, group: str) -> None:
        super().budget_refused(group)
        self.budget_refusals.labels(_bounded(group, self._groups)).inc()

    def tool_finished(self, tool: str, outcome: str) -> None:
        super().tool_finished(tool, outcome)
        self.tool_calls.labels(_named(tool, self._tools), _bounded(outcome, TOOL_OUTCOMES)).inc()


def _named(name: str | None, seen: set[str]) -> str:
    """``name`` as a label value while fewer than ``_MAX_NAMES`` were seen, else "other"."""
    if name is None:
        return "none"
    if name in seen:
        return name
    if len(seen) < _MAX_NAMES:
        seen.add(name)
        return name
    return "other"
