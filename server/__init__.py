"""sluice: a Tornado chat server that streams LLM answers as Server-Sent Events.

Plugin authors import from here; see ``docs/plugins.md``.
"""

from server.plugin_api import (
    Event,
    Message,
    Rest,
    Services,
    Stage,
    StageOptions,
    Turn,
    WrapperStage,
    chunk,
    complete,
    context,
    error,
    status,
)
from server.providers import (
    Completion,
    FailureKind,
    Provider,
    ProviderContext,
    ProviderError,
    ProviderOptions,
    ProviderStream,
    Usage,
)

__all__ = [
    "Completion",
    "Event",
    "FailureKind",
    "Message",
    "Provider",
    "ProviderContext",
    "ProviderError",
    "ProviderOptions",
    "ProviderStream",
    "Rest",
    "Services",
    "Stage",
    "StageOptions",
    "Turn",
    "Usage",
    "WrapperStage",
    "chunk",
    "complete",
    "context",
    "error",
    "status",
]
