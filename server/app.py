"""Assembling the server: settings -> stores, providers, stages -> pipeline -> state.

This is the one place that knows every part; the HTTP application (``server.http.app``)
serves the state built here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import structlog

from server.config import ConfigError, Settings
from server.contract import (
    AnyStage,
    LostTurn,
    ProviderContext,
    RateLimitStore,
    Services,
)
from server.contract.toolset import ToolSet
from server.core.coordination import MemoryTurnRegistry, TurnRegistry
from server.core.pipeline import Pipeline
from server.core.runner import TurnRunner
from server.core.streamlog import MemoryStreamLogStore, StreamLogStore
from server.http.app import make_app
from server.http.identity import TokenAuthenticator, load_or_create_secret
from server.http.state import ServerState
from server.llm.chain import LLMChain
from server.llm.transport import provider_context
from server.observability.metrics import PrometheusTelemetry
from server.observability.telemetry import Telemetry
from server.observability.tracing import start_tracing
from server.registry import load_providers, load_stages, load_tools
from server.stores.history import session_store
from server.stores.memory import MemoryRateLimitStore
from server.stores.rate_limits import ConfiguredRateLimiter
from server.stores.redis.approvals import RedisApprovals
from server.stores.redis.budgets import RedisBudgets
from server.stores.redis.client import RedisContext
from server.stores.redis.rate_limits import RedisRateLimitStore
from server.stores.redis.registry import RedisTurnRegistry
from server.stores.redis.streamlog import RedisStreamLogStore
from server.tools.approvals import ApprovalStore, MemoryApprovals
from server.tools.mcp_servers import MCPTools
from server.tools.service import ServerTools
from server.usage.book import UsageBook
from server.usage.budgets import BudgetCounter, MemoryBudgets
from server.usage.ledgers import ledger_for
from server.usage.pricing import Prices

__all__ = ["build_state", "make_app"]

log = structlog.get_logger("sluice.app")


def build_state(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    telemetry: Telemetry | None = None,
) -> ServerState:
    environ = os.environ if environ is None else environ
    if telemetry is None:
        telemetry = PrometheusTelemetry(settings)
    # None unless OTEL_* variables ask for traces and the SDK is installed.
    tracer = start_tracing(environ)
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    # Every admitted stream may hold one upstream connection.
    max_connections = max(64, settings.limits.max_streams_per_user * 64)
    provider_environ = dict(environ)

    def context_for(name: str) -> ProviderContext:
        return provider_context(
            provider_environ,
            name=name,
            max_connections=max_connections,
            inject=tracer.inject if tracer is not None else None,
        )

    providers, problems = load_providers(settings, context_for)
    names = [provider.name for provider in providers]
    if isinstance(telemetry, PrometheusTelemetry):
        telemetry.providers_configured(names)
    if names == ["demo"] and settings.env == "production" and not settings.llm.allow_demo:
        raise ConfigError(
            "config error: SLUICE_ENV = 'production' with only the demo provider: set"
            " OPENAI_API_KEY or GEMINI_API_KEY (or llm.allow_demo = true to serve the demo)"
        )
    llm = settings.llm
    chain = LLMChain(
        providers,
        max_output_tokens=llm.max_output_tokens,
        max_answer_chars=llm.max_answer_chars,
        first_token_timeout=llm.first_token_timeout_seconds,
        idle_timeout=llm.idle_timeout_seconds,
        circuit_failures=llm.circuit_failures,
        circuit_cooldown=llm.circuit_cooldown_seconds,
        observer=telemetry,
        tracer=tracer,
    )
    sessions = session_store(settings)
    stream = settings.stream
    rate_limit_store: RateLimitStore
    logs: StreamLogStore
    registry: TurnRegistry
    approvals: ApprovalStore
    counters: BudgetCounter
    if settings.store.redis_url:
        redis = RedisContext(
            settings.store.redis_url,
            log_ttl_seconds=stream.log_ttl_seconds,
            max_duration_seconds=stream.max_duration_seconds,
            lease_seconds=settings.store.redis_lease_seconds,
        )
        rate_limit_store = RedisRateLimitStore(redis)
        logs = RedisStreamLogStore(
            redis, ttl_seconds=stream.log_ttl_seconds, max_events=stream.max_log_events
        )
        registry = RedisTurnRegistry(redis)
        approvals = RedisApprovals(redis)
        counters = RedisBudgets(redis)
    else:
        rate_limit_store = MemoryRateLimitStore()
        logs = MemoryStreamLogStore(
            ttl_seconds=stream.log_ttl_seconds, max_events=stream.max_log_events
        )
        registry = MemoryTurnRegistry()
        approvals = MemoryApprovals()
        counters = MemoryBudgets()
    usage = UsageBook(
        ledger=ledger_for(sessions),
        counters=counters,
        prices=Prices(settings.pricing),
        budgets=settings.budgets,
        telemetry=telemetry,
        # A reservation lapses after the longest a turn may run (its process died).
        hold_seconds=stream.max_duration_seconds + 60,
        max_output_tokens=llm.max_output_tokens,
        models={provider.name: provider.model for provider in providers},
    )
    plugin_tools = load_tools(settings)
    mcp = MCPTools.from_settings(settings.mcp)

    def turn_tools() -> ToolSet:
        """The tools of a new turn: its own copy, which a stage may change."""
        tools = plugin_tools.copy()
        if mcp.connections:
            for item in mcp.tools(taken=tools.names()):
                tools.add(item)
        return tools

    services = Services(
        sessions=sessions,
        rate_limits=ConfiguredRateLimiter(
            rate_limit_store,
            requests_per_minute=settings.rate_limit.requests_per_minute,
            burst=settings.rate_limit.burst,
        ),
        llm=chain,
        tools=ServerTools(settings.tools, approvals, tracer, telemetry),
        usage=usage,
    )
    stages = load_stages(settings, services)
    if isinstance(registry, RedisTurnRegistry):
        # What a turn whose producer died keeps is its stages' to say (the session stage's
        # history rules), in whichever process finds it.
        registry.on_lost(lambda lost: _turn_lost(stages, lost))
    runner = TurnRunner(
        Pipeline(stages, telemetry=telemetry, tracer=tracer),
        logs,
        settings,
        telemetry=telemetry,
        registry=registry,
        tools=turn_tools,
        tracer=tracer,
    )
    settings.auth.secret_key = load_or_create_secret(settings.auth.secret_key, data_dir)
    return ServerState(
        settings=settings,
        services=services,
        sessions=sessions,
        rate_limit_store=rate_limit_store,
        chain=chain,
        logs=logs,
        runner=runner,
        tokens=TokenAuthenticator(settings.auth),
        provider_problems=problems,
        stages=stages,
        telemetry=telemetry,
        approvals=approvals,
        mcp=mcp,
        tracer=tracer,
        usage=usage,
    )


async def _turn_lost(stages: list[AnyStage], lost: LostTurn) -> None:
    for stage in stages:
        await stage.turn_lost(lost)
