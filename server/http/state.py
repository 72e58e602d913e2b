"""What every handler reaches through ``self.application.settings["sluice"]``."""

from __future__ import annotations

from dataclasses import dataclass

from server.config import Settings
from server.contract import AnyStage, RateLimitStore, Services, SessionStore
from server.core.runner import TurnRunner
from server.core.streamlog import StreamLogStore
from server.http.identity import TokenAuthenticator
from server.llm.chain import LLMChain
from server.observability.telemetry import Telemetry
from server.observability.tracing import Tracer
from server.tools.approvals import ApprovalStore
from server.tools.mcp_servers import MCPTools
from server.usage.book import UsageBook

__all__ = ["ServerState"]


@dataclass
class ServerState:
    settings: Settings
    services: Services  # what stages are lent
    sessions: SessionStore
    rate_limit_store: RateLimitStore
    chain: LLMChain
    logs: StreamLogStore
    runner: TurnRunner
    tokens: TokenAuthenticator
    provider_problems: list[str]
    stages: list[AnyStage]
    telemetry: Telemetry
    approvals: ApprovalStore  # tool calls waiting for their owner's decision
    mcp: MCPTools  # started with the server; its tools join every turn's
    usage: UsageBook  # the usage ledger, prices and budgets
    tracer: Tracer | None = None  # None: traces off (server.observability.tracing)
