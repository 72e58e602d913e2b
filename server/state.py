"""What every handler reaches through ``self.application.settings["sluice"]``."""

from __future__ import annotations

from dataclasses import dataclass

from server.config import Settings
from server.identity import TokenAuthenticator
from server.plugin_api import AnyStage, Services
from server.streamlog import StreamLogStore
from server.telemetry import Telemetry
from server.turns import TurnRunner

__all__ = ["ServerState"]


@dataclass
class ServerState:
    settings: Settings
    services: Services
    logs: StreamLogStore
    runner: TurnRunner
    tokens: TokenAuthenticator
    provider_problems: list[str]
    stages: list[AnyStage]
    telemetry: Telemetry
