"""MCP servers as a source of tools, through the official ``mcp`` SDK.

Each ``[mcp.<name>]`` table is one :class:`MCPConnection`: a task that starts the server's
session (a subprocess over stdio for ``command``, Streamable HTTP for ``url``), lists its
tools, keeps the list fresh when the server announces ``tools/list_changed``, and when the
session is lost — the process died, the HTTP server went away — reconnects with exponential
backoff (0.5 s doubling to 30 s). A server that cannot start is reported in
:meth:`MCPConnection.health` and the logs; it never raises into the caller, so text turns
keep working without it.

Naming: an MCP tool keeps its own name unless another tool has the same one (a plugin tool,
or a tool of another MCP server): then every MCP tool of that name is called
``<server>__<tool>``. Plugin tools keep their names; the model sees one tool per name.

Calls go through the session. Cancelling the task that awaits a call (the runner does so on a
timeout or a stop) makes the SDK send MCP's ``notifications/cancelled`` (or, on the 2026 HTTP
wire, abort the call's request), so the server stops too. ``env`` and ``headers`` hold
secrets: they go to the process and the requests, never to a log line or a health report.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx2
import jsonschema
import mcp.types
import structlog
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError
from mcp.types import CONNECTION_CLOSED

from server.config import MCPServerSettings
from server.contract.tools import Tool, ToolContext, ToolError

__all__ = ["MCPConnection", "MCPHealth"]

log = structlog.get_logger("sluice.mcp")

_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 30.0
# Legacy-protocol sessions have no subscription whose end shows a lost connection: their
# tools are listed again this often, which notices it.
_PROBE_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class MCPHealth:
    """One server's state, for ``/readyz`` and ``python -m server check``."""

    name: str
    ready: bool
    # Why it is not ready, in one line (no secrets); None when ready or still starting.
    problem: str | None
    tools: int


class MCPConnection:
    """One MCP server's session, kept alive by its own task."""

    def __init__(
        self,
        name: str,
        settings: MCPServerSettings,
        *,
        backoff_first: float = _BACKOFF_FIRST,
        backoff_max: float = _BACKOFF_MAX,
        probe_seconds: float = _PROBE_SECONDS,
        protocol: str = "auto",
    ) -> None:
        self.name = name
        self.settings = settings
        self._backoff_first = backoff_first
        self._backoff_max = backoff_max
        self._probe_seconds = probe_seconds
        # "auto": the newest protocol both sides speak; "legacy": the initialize handshake
        # of the protocols before 2026, which most servers deployed today speak.
        self._protocol = protocol
        self._client: Client | None = None
        self._remote_tools: list[mcp.types.Tool] = []
        self._problem: str | None = None
        self._attempted = asyncio.Event()  # the first connection attempt has ended
        self._connected = asyncio.Event()
        self._changed = asyncio.Event()  # the server said its tools changed
        self._lost = asyncio.Event()  # a call found the connection closed
        self._task: asyncio.Task[None] | None = None
        self.connections = 0  # sessions opened so far (tests watch reconnection)

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._keep_connected(), name=f"mcp:{self.name}")

    async def wait_started(self, timeout: float) -> None:
        """Wait until the first attempt to connect has succeeded or failed (or ``timeout``)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._attempted.wait(), timeout)

    async def wait_connected(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)
        return self._connected.is_set()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def health(self) -> MCPHealth:
        ready = self._client is not None
        return MCPHealth(
            self.name, ready, None if ready else self._problem, len(self._remote_tools)
        )

    # -- tools ----------------------------------------------------------------------------

    def remote_tools(self) -> list[mcp.types.Tool]:
        """The tools the server listed last (none while it is not connected)."""
        return list(self._remote_tools) if self._client is not None else []

    def tool(self, remote: mcp.types.Tool, exposed_name: str) -> Tool | None:
        """``remote`` as a :class:`Tool` called ``exposed_name``; None when its schema is not
        a valid JSON schema (such a tool could not be called correctly)."""
        remote_name = remote.name

        async def invoke(arguments: dict[str, Any], context: ToolContext) -> str:
            return await self.call(remote_name, arguments)

        try:
            return Tool.from_schema(
                exposed_name,
                remote.description or remote.title or "",
                remote.input_schema,
                invoke,
                requires_approval=self.settings.require_approval,
                source=f"mcp:{self.name}",
            )
        except jsonschema.SchemaError as error:
            log.warning(
                "mcp_tool_skipped", server=self.name, tool=remote_name, reason=error.message
            )
            return None

    async def call(self, remote_name: str, arguments: Mapping[str, Any]) -> str:
        """Call the server's tool; its answer as text. A tool error, or no connection, is a
        :class:`ToolError` whose message the model is given."""
        client = self._client
        if client is None:
            raise ToolError(f"the MCP server {self.name!r} is not available right now")
        try:
            result = await client.call_tool(remote_name, dict(arguments))
        except MCPError as error:
            if error.code == CONNECTION_CLOSED:
                self._lost.set()
                raise ToolError(f"the MCP server {self.name!r} went away during the call") from None
            raise ToolError(f"the MCP server {self.name!r} refused the call: {error}") from None
        text = _content_text(result)
        if result.is_error:
            raise ToolError(text or f"the MCP tool {remote_name!r} failed")
        return text

    # -- the connection task --------------------------------------------------------------

    async def _keep_connected(self) -> None:
        delay = self._backoff_first
        while True:
            try:
                await self._session()
                delay = self._backoff_first  # it was up: start the backoff again
                problem = "the connection was lost"
            except Exception as error:  # anything: the server stays one bad component
                problem = _one_line(error)
            self._client = None
            self._connected.clear()
            self._problem = problem
            self._attempted.set()
            log.warning("mcp_unavailable", server=self.name, problem=problem, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff_max)

    async def _session(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            target: Any
            if self.settings.command:
                target = StdioServerParameters(
                    command=self.settings.command[0],
                    args=self.settings.command[1:],
                    env=dict(self.settings.env) or None,
                    cwd=self.settings.cwd or None,
                )
            else:
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(
                        headers=dict(self.settings.headers),
                        timeout=httpx2.Timeout(30.0, read=300.0),
                    )
                )
                target = streamable_http_client(self.settings.url, http_client=http)
            client = Client(
                target, message_handler=self._on_message, cache=None, mode=self._protocol
            )
            async with asyncio.timeout(self.settings.connect_timeout_seconds):
                await stack.enter_async_context(client)
                await self._list_tools(client)
            self._lost.clear()
            self._changed.clear()
            self.connections += 1
            self._client = client
            self._problem = None
            self._connected.set()
            self._attempted.set()
            log.info(
                "mcp_connected",
                server=self.name,
                protocol=client.protocol_version,
                tools=[tool.name for tool in self._remote_tools],
            )
            await self._watch(client)

    async def _watch(self, client: Client) -> None:
        """Return when the session is lost; refresh the tools when they change."""
        # The 2026 protocol announces changes on a subscription, whose end is the
        # connection's end (its events reach _on_message as notifications too). Earlier
        # protocols notify without one; there the tools are listed again every
        # probe_seconds, which notices a lost connection.
        listening = asyncio.create_task(self._listen(client))
        try:
            while True:
                changed = asyncio.ensure_future(self._changed.wait())
                lost = asyncio.ensure_future(self._lost.wait())
                waits: set[asyncio.Future[Any]] = {changed, lost}
                subscribed = not (listening.done() and listening.result() is False)
                if subscribed:
                    waits.add(listening)
                done, _ = await asyncio.wait(
                    waits,
                    timeout=None if subscribed else self._probe_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                changed.cancel()
                lost.cancel()
                if lost in done:
                    return
                if listening in done and listening.result() is not False:
                    return  # the subscription ended: so did the connection
                if changed in done or not done:
                    self._changed.clear()
                    await self._list_tools(client)  # a change, or the legacy probe
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)

    async def _listen(self, client: Client) -> bool:
        """Follow the server's change events until the subscription ends (True), or return
        False at once when the negotiated protocol has no subscriptions."""
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for _event in subscription:
                    self._changed.set()
        except ListenNotSupportedError:
            return False
        except Exception as error:
            log.info("mcp_subscription_ended", server=self.name, reason=_one_line(error))
        return True

    async def _list_tools(self, client: Client) -> None:
        tools: list[mcp.types.Tool] = []
        cursor: str | None = None
        for _page in range(100):  # a server whose pages never end cannot hang us
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        if [t.name for t in tools] != [t.name for t in self._remote_tools] and self._client:
            log.info("mcp_tools_changed", server=self.name, tools=[t.name for t in tools])
        self._remote_tools = tools

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, mcp.types.ToolListChangedNotification):
            self._changed.set()


def _content_text(result: mcp.types.CallToolResult) -> str:
    """A tool result's content as text: text blocks joined; other blocks named; the
    structured content as JSON when there is nothing else."""
    pieces: list[str] = []
    for block in result.content:
        if isinstance(block, mcp.types.TextContent):
            pieces.append(block.text)
        elif isinstance(block, mcp.types.ImageContent | mcp.types.AudioContent):
            pieces.append(f"[{block.type}: {block.mime_type}]")
        elif isinstance(block, mcp.types.ResourceLink):
            pieces.append(f"[resource: {block.uri}]")
        elif isinstance(block, mcp.types.EmbeddedResource):
            resource = block.resource
            text = getattr(resource, "text", None)
            pieces.append(text if isinstance(text, str) else f"[resource: {resource.uri}]")
    if not pieces and result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return "\n".join(pieces)


def _one_line(error: BaseException) -> str:
    """What went wrong, in one line: the innermost cause of an exception group."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    kind = type(error).__name__
    if isinstance(error, TimeoutError) and not text:
        return "did not answer in time"
    return f"{kind}: {text}" if text else kind
