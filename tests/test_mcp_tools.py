"""MCP servers as tool sources (server/tools/mcp.py), against a real MCP server written with
the ``mcp`` SDK's ``MCPServer`` (tests/fakes/mcp_server.py), run as a subprocess over stdio
and over Streamable HTTP on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from server.config import ConfigError, MCPServerSettings, load_settings
from server.contract import ToolCall, ToolContext, ToolErrorKind
from server.tools.mcp import MCPConnection
from server.tools.mcp_servers import MCPTools
from server.tools.runner import ToolRun, run_tool_call
from tests.support.server import ROOT, free_port

FAKE = [sys.executable, "-m", "tests.fakes.mcp_server"]


async def until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Wait for ``condition`` to hold, checking every 20 ms, failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def stdio_settings(marks: Path, **extra: Any) -> MCPServerSettings:
    return MCPServerSettings(
        command=[*FAKE, "stdio"],
        env={"MARKS_DIR": str(marks), "PYTHONPATH": str(ROOT)},
        cwd=str(ROOT),
        **extra,
    )


@contextmanager
def http_server(
    marks: Path, port: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The fake served over Streamable HTTP on a loopback port, until the block ends."""
    port = port or free_port()
    env = {**os.environ, "MARKS_DIR": str(marks), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [*FAKE, "http", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, "the MCP HTTP server exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the MCP HTTP server did not listen"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp", process
    finally:
        process.kill()
        process.wait(10)


@pytest.fixture(params=["stdio", "http"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextmanager
def settings_for(transport: str, marks: Path) -> Iterator[MCPServerSettings]:
    if transport == "stdio":
        yield stdio_settings(marks)
    else:
        with http_server(marks) as (url, _):
            yield MCPServerSettings(url=url, headers={"Authorization": "Bearer t0ken"})


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


async def call(tools: MCPTools, name: str, arguments: dict[str, Any], **kw: Any) -> ToolRun:
    by_name = {tool.name: tool for tool in tools.tools()}
    context = kw.pop("context", None) or ToolContext(user_id="alice", call_id="c1")
    return await run_tool_call(
        by_name.get(name),
        ToolCall("c1", name, arguments),
        context,
        timeout=kw.get("timeout", 20.0),
        max_result_chars=kw.get("max_result_chars", 1000),
    )


def test_tools_are_listed_and_called(transport: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        with settings_for(transport, tmp_path) as settings:
            tools = MCPTools([MCPConnection("calc", settings)])
            await tools.start(wait=30)
            try:
                [health] = tools.health()
                assert health.ready and health.problem is None
                listed = {tool.name: tool for tool in tools.tools()}
                assert {"add", "explode", "wait", "grow"} <= set(listed)
                add = listed["add"]
                assert add.description == "Add two whole numbers."
                assert add.input_schema["properties"]["a"]["type"] == "integer"
                assert add.requires_approval is True  # the default for MCP servers
                assert add.source == "mcp:calc"

                done = await call(tools, "add", {"a": 2, "b": 40})
                assert done.result.ok and done.result.content == "42"

                # Checked against the server's schema before the call: the server never
                # sees it (its own error would say "Error executing tool").
                bad = await call(tools, "add", {"a": "two", "b": 40})
                assert bad.result.error is ToolErrorKind.INVALID_ARGUMENTS
                assert "a: 'two' is not of type 'integer'" in bad.result.content

                failed = await call(tools, "explode", {"reason": "on purpose"})
                assert not failed.result.ok and failed.result.error is ToolErrorKind.FAILED
                assert "explode" in failed.result.content
            finally:
                await tools.aclose()

    run(scenario)


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
def test_a_new_tool_announced_by_the_server_is_listed(
    transport: str, protocol: str, tmp_path: Path
) -> None:
    """The 2026 protocol announces it on a subscription, earlier ones in a notification."""

    async def scenario() -> None:
        with settings_for(transport, tmp_path) as settings:
            tools = MCPTools([MCPConnection("calc", settings, protocol=protocol)])
            await tools.start(wait=30)
            try:
                assert "late" not in {tool.name for tool in tools.tools()}
                grown = await call(tools, "grow", {})
                assert grown.result.ok, grown.result.content
                await until(lambda: "late" in {tool.name for tool in tools.tools()}, "the new tool")
                late = await call(tools, "late", {"text": "abc"})
                assert late.result.content == "cba"
            finally:
                await tools.aclose()

    run(scenario)


def test_a_cancelled_call_is_cancelled_on_the_server(transport: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        with settings_for(transport, tmp_path) as settings:
            tools = MCPTools([MCPConnection("calc", settings)])
            await tools.start(wait=30)
            try:
                stop = asyncio.Event()
                context = ToolContext(user_id="alice", call_id="c1", cancelled=stop)
                running = asyncio.create_task(
                    call(tools, "wait", {"seconds": 60, "label": "stop"}, context=context)
                )
                await until(lambda: (tmp_path / "started-stop").exists(), "the call to start")
                stop.set()
                done = await asyncio.wait_for(running, 5)
                assert done.result.error is ToolErrorKind.CANCELLED
                await until(
                    lambda: (tmp_path / "cancelled-stop").exists(), "the server to see the cancel"
                )

                # A timeout cancels on the server the same way.
                late = await call(tools, "wait", {"seconds": 60, "label": "slow"}, timeout=1.0)
                assert late.result.error is ToolErrorKind.TIMEOUT
                await until(
                    lambda: (tmp_path / "cancelled-slow").exists(), "the server to see the timeout"
                )
            finally:
                await tools.aclose()

    run(scenario)


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
def test_a_stdio_server_that_dies_is_started_again(protocol: str, tmp_path: Path) -> None:
    """Noticed by the end of the subscription (2026), or by the periodic listing (earlier)."""

    async def scenario() -> None:
        connection = MCPConnection(
            "calc",
            stdio_settings(tmp_path),
            backoff_first=0.05,
            probe_seconds=0.2,
            protocol=protocol,
        )
        tools = MCPTools([connection])
        await tools.start(wait=30)
        try:
            first_pid = int((tmp_path / "pid").read_text())
            os.kill(first_pid, signal.SIGKILL)
            await until(lambda: connection.connections == 2, "the second session", 30)
            assert int((tmp_path / "pid").read_text()) != first_pid
            done = await call(tools, "add", {"a": 1, "b": 1})
            assert done.result.content == "2"
        finally:
            await tools.aclose()

    run(scenario)


def test_an_http_server_that_comes_back_is_reconnected(tmp_path: Path) -> None:
    async def scenario() -> None:
        port = free_port()
        with http_server(tmp_path, port) as (url, process):
            connection = MCPConnection("calc", MCPServerSettings(url=url), backoff_first=0.05)
            tools = MCPTools([connection])
            await tools.start(wait=30)
            add = next(tool for tool in tools.tools() if tool.name == "add")
            process.kill()
            process.wait(10)
            await until(lambda: not connection.health().ready, "the loss to be noticed")
            assert tools.tools() == []  # no tools from a server that is not there
            gone = await run_tool_call(
                add,  # a tool handed out before: its call fails, and says why
                ToolCall("c2", "add", {"a": 1, "b": 2}),
                ToolContext(user_id="alice"),
                timeout=5,
                max_result_chars=1000,
            )
            assert gone.result.error is ToolErrorKind.FAILED
            assert "not available" in gone.result.content
        try:
            with http_server(tmp_path, port):
                await until(lambda: connection.health().ready, "the reconnection", 30)
                done = await call(tools, "add", {"a": 1, "b": 2})
                assert done.result.content == "3"
        finally:
            await tools.aclose()

    run(scenario)


@pytest.mark.parametrize(
    "settings",
    [
        MCPServerSettings(command=["/nonexistent/mcp-server"]),
        MCPServerSettings(command=[sys.executable, "-c", "import sys; sys.exit(3)"]),
        MCPServerSettings(url=f"http://127.0.0.1:{free_port()}/mcp", connect_timeout_seconds=5),
    ],
    ids=["no-such-program", "exits-at-once", "nothing-listening"],
)
def test_a_server_that_cannot_start_is_reported_not_raised(settings: MCPServerSettings) -> None:
    async def scenario() -> None:
        tools = MCPTools([MCPConnection("broken", settings)])
        await tools.start(wait=20)  # returns: the server's failure is not the caller's
        try:
            [health] = tools.health()
            assert health.name == "broken" and not health.ready
            assert health.problem and "\n" not in health.problem
            assert tools.tools() == []
        finally:
            await tools.aclose()

    run(scenario)


def test_tools_of_the_same_name_are_named_after_their_server(tmp_path: Path) -> None:
    async def scenario() -> None:
        first = MCPConnection("one", stdio_settings(tmp_path, require_approval=False))
        second = MCPConnection("two", stdio_settings(tmp_path))
        tools = MCPTools([first, second])
        await tools.start(wait=30)
        try:
            names = {tool.name for tool in tools.tools()}
            assert {"one__add", "two__add", "one__wait"} <= names and "add" not in names
            approval = {tool.name: tool.requires_approval for tool in tools.tools()}
            assert approval["one__add"] is False and approval["two__add"] is True
            done = await call(tools, "two__add", {"a": 5, "b": 5})
            assert done.result.content == "10"
            # A plugin tool's name is taken too.
            alone = MCPTools([first])
            assert "one__add" in {tool.name for tool in alone.tools(taken={"add"})}
            assert "wait" in {tool.name for tool in alone.tools(taken={"add"})}
        finally:
            await tools.aclose()

    run(scenario)


def test_mcp_tables_in_config_and_their_secrets_never_shown(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[mcp.files]\ncommand = ["mcp-files", "/srv"]\nenv = { API_KEY = "sk-very-secret" }\n'
        '[mcp.web]\nurl = "https://mcp.example.com/mcp"\n'
        'headers = { Authorization = "Bearer tok-very-secret" }\nrequire_approval = false\n',
        encoding="utf-8",
    )
    settings = load_settings({"SLUICE_CONFIG": str(config)})
    assert settings.mcp["files"].command == ["mcp-files", "/srv"]
    assert settings.mcp["files"].require_approval is True
    assert settings.mcp["web"].require_approval is False

    both = config.read_text().replace("[mcp.web]\nurl", '[mcp.web]\ncommand = ["x"]\nurl')
    config.write_text(both, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings({"SLUICE_CONFIG": str(config)})
    line = str(caught.value)
    assert line.startswith("config error: mcp.web") and "exactly one of command" in line
    assert "tok-very-secret" not in line and "sk-very-secret" not in line

    bad_env = tmp_path / "env.toml"
    bad_env.write_text('[mcp.files]\ncommand = ["x"]\nenv = { KEY = 12345678 }\n')
    with pytest.raises(ConfigError) as caught:
        load_settings({"SLUICE_CONFIG": str(bad_env)})
    assert "mcp.files.env" in str(caught.value) and "12345678" not in str(caught.value)


def test_a_server_without_mcp_servers_never_imports_the_sdk(tmp_path: Path) -> None:
    """The ``mcp`` SDK took half of every start-up's imports (about 0.5 s of CPU) before it
    was imported only with ``[mcp.<name>]`` configured."""
    probe = (
        "import sys\n"
        "from server.app import build_state\n"
        "from server.config import load_settings\n"
        "build_state(load_settings({}))\n"
        "print('mcp' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "False"
