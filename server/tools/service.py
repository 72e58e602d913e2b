"""The tool service lent to stages (``services.tools``): ``[tools]`` limits, approvals, runs.

It is the one place that joins the runner (:mod:`.runner`) to the configuration and to the
approval store, so that the ``llm`` stage — a plugin like any other — runs tool rounds
through the public contract (:class:`server.contract.ToolService`) alone.
"""

from __future__ import annotations

import time

from server.config import ToolSettings
from server.contract import Tool, ToolCall, ToolContext, ToolResultEvent
from server.observability.telemetry import Telemetry
from server.observability.tracing import Tracer
from server.tools.approvals import APPROVED, CANCELLED, ApprovalStore
from server.tools.runner import run_tool_call

__all__ = ["ServerTools"]

# How long a decided call's record outlives the wait, so that a late second decision is
# still told 409 rather than 404.
_KEEP_AFTER_SECONDS = 3600.0


class ServerTools:
    def __init__(
        self,
        settings: ToolSettings,
        approvals: ApprovalStore,
        tracer: Tracer | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.tracer = tracer
        # Tool calls by tool and outcome are counted here, where they are decided and run.
        self.telemetry = telemetry or Telemetry()
        self.settings = settings
        self.approvals = approvals
        self.max_rounds = settings.max_rounds

    async def ask(self, stream_id: str, call: ToolCall) -> None:
        keep = self.settings.approval_timeout_seconds + _KEEP_AFTER_SECONDS
        await self.approvals.request(stream_id, call.call_id, keep_seconds=keep)

    async def approve(self, stream_id: str, call: ToolCall) -> bool:
        timeout = self.settings.approval_timeout_seconds
        approvals = self.approvals
        try:
            state = await approvals.wait(stream_id, call.call_id, timeout)
        except BaseException:
            # Stopped while waiting: a decision posted now is too late (409), and says so.
            self.telemetry.tool_finished(call.name, "cancelled")
            await approvals.settle(stream_id, call.call_id, CANCELLED)
            raise
        if state == APPROVED:
            return True
        self.telemetry.tool_finished(call.name, "denied")  # the call's result: not run
        return False

    async def run(
        self, tool: Tool | None, call: ToolCall, context: ToolContext, *, deadline: float
    ) -> ToolResultEvent:
        settings = self.settings
        left = deadline - time.monotonic()
        span = self.tracer.tool_call(tool, call) if self.tracer is not None else None
        try:
            run = await run_tool_call(
                tool,
                call,
                context,
                timeout=max(0.001, min(settings.timeout_seconds, left)),
                max_result_chars=settings.max_result_chars,
            )
            result = run.result
            self.telemetry.tool_finished(call.name, "ok" if result.ok else str(result.error))
            if span is not None:
                span.finished(result)
        except BaseException:  # the turn was cancelled while the tool ran
            self.telemetry.tool_finished(call.name, "cancelled")
            if span is not None:
                span.failed("cancelled")
            raise
        finally:
            if span is not None:
                span.end()
        return run.event()
