"""The plugin contract: everything a stage or provider plugin may use, and nothing else.

The built-in stages and providers (``plugins/``) import only this package (``from server
import ...`` is the short form). It depends on no part of the server's machinery; the
machinery (``server.core``, ``server.llm``, ``server.http``, ``server.stores``) depends on it.

* Stages: :class:`Stage`, :class:`WrapperStage`, :class:`TextFilter`, :data:`Rest`,
  :class:`StageOptions`, :class:`Turn`, :class:`LostTurn`.
* Events, as immutable values: :class:`Status`, :class:`Context`, :class:`Chunk`,
  :class:`Complete`, :class:`Error`, their constructors :func:`status`, :func:`context`,
  :func:`chunk`, :func:`complete`, :func:`error`, and the codes :class:`ErrorCode`.
* Tool events, message parts and tools: :class:`ToolCallEvent`, :class:`ToolResultEvent`,
  :class:`Reasoning` and :func:`tool_call`, :func:`tool_result`, :func:`reasoning`; the parts
  :class:`Part` (:class:`TextPart`, :class:`ImagePart`, :class:`ToolCall`, :class:`ToolResult`,
  :class:`ReasoningPart`),
  :class:`ToolErrorKind`, :func:`part_to_dict`, :func:`part_from_dict`; the tool author's
  :class:`Tool`, :func:`tool`, :class:`ToolContext`, :class:`ToolError`,
  :class:`ToolArgumentsError`.
* Services a stage may call: :class:`Services` with the stores (:class:`SessionStore`,
  :class:`RateLimiter`) and the answer service (:class:`AnswerService`, :class:`Answer`,
  :class:`AnswerResult`, :class:`AnswerError`), and the usage ledger and budgets
  (:class:`UsageService`, :class:`Spent`).
* Providers: :class:`Provider`, :class:`ProviderOptions`, :class:`ProviderContext`,
  :class:`ProviderStream`, :class:`GenerationParams`, :class:`ToolChoice`, :class:`Completion`,
  :class:`Usage`,
  :class:`Message`, :class:`ProviderError`, :class:`FailureKind`.

Types and protocols only: the helpers for providers that read an HTTP upstream are the
provider kit, :mod:`server.provider_kit` (also re-exported by ``server``).
"""

from server.contract.answers import Answer, AnswerError, AnswerResult, AnswerService
from server.contract.events import (
    TERMINAL_TYPES,
    Chunk,
    Complete,
    Context,
    Error,
    ErrorCode,
    Event,
    EventBase,
    Reasoning,
    Status,
    ToolCallEvent,
    ToolResultEvent,
    chunk,
    complete,
    context,
    error,
    event_from_dict,
    reasoning,
    status,
    tool_call,
    tool_result,
)
from server.contract.parts import (
    ImagePart,
    Part,
    ReasoningPart,
    TextPart,
    ToolCall,
    ToolErrorKind,
    ToolResult,
    part_from_dict,
    part_to_dict,
)
from server.contract.providers import (
    Completion,
    FailureKind,
    GenerationParams,
    Message,
    Provider,
    ProviderContext,
    ProviderError,
    ProviderOptions,
    ProviderStream,
    ToolChoice,
    Usage,
)
from server.contract.stages import (
    AnyStage,
    LostTurn,
    Rest,
    Services,
    Stage,
    StageOptions,
    Turn,
    WrapperStage,
)
from server.contract.stores import (
    AnswerFacts,
    ArchivedSession,
    Leaf,
    MessageTree,
    RateLimiter,
    RateLimitStore,
    SessionExists,
    SessionMatch,
    SessionRecord,
    SessionStore,
    StoredMessage,
    StoreUnavailable,
)
from server.contract.text_filter import TextFilter
from server.contract.tools import (
    Tool,
    ToolArgumentsError,
    ToolContext,
    ToolError,
    ToolService,
    tool,
)
from server.contract.toolset import ToolSet
from server.contract.usage import Spent, UsageService

__all__ = [
    "TERMINAL_TYPES",
    "Answer",
    "AnswerError",
    "AnswerFacts",
    "AnswerResult",
    "AnswerService",
    "AnyStage",
    "ArchivedSession",
    "Chunk",
    "Complete",
    "Completion",
    "Context",
    "Error",
    "ErrorCode",
    "Event",
    "EventBase",
    "FailureKind",
    "GenerationParams",
    "ImagePart",
    "Leaf",
    "LostTurn",
    "Message",
    "MessageTree",
    "Part",
    "Provider",
    "ProviderContext",
    "ProviderError",
    "ProviderOptions",
    "ProviderStream",
    "RateLimitStore",
    "RateLimiter",
    "Reasoning",
    "ReasoningPart",
    "Rest",
    "Services",
    "SessionExists",
    "SessionMatch",
    "SessionRecord",
    "SessionStore",
    "Spent",
    "Stage",
    "StageOptions",
    "Status",
    "StoreUnavailable",
    "StoredMessage",
    "TextFilter",
    "TextPart",
    "Tool",
    "ToolArgumentsError",
    "ToolCall",
    "ToolCallEvent",
    "ToolChoice",
    "ToolContext",
    "ToolError",
    "ToolErrorKind",
    "ToolResult",
    "ToolResultEvent",
    "ToolService",
    "ToolSet",
    "Turn",
    "Usage",
    "UsageService",
    "WrapperStage",
    "chunk",
    "complete",
    "context",
    "error",
    "event_from_dict",
    "part_from_dict",
    "part_to_dict",
    "reasoning",
    "status",
    "tool",
    "tool_call",
    "tool_result",
]
