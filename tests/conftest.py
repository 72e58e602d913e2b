"""Fixtures shared by every test: the real server, started on a free loopback port."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path

import pytest
from tornado.ioloop import IOLoop

from tests.fakes.llm_upstreams import FakeOpenAI
from tests.fakes.threaded import ThreadedFakes, threaded_fakes
from tests.support.postgres import PostgresServer, running_postgres
from tests.support.redis_server import RedisServer
from tests.support.server import RunningServer, launch
from tests.support.sse import OPEN_STREAMS

StartServer = Callable[..., RunningServer]

# pytest's numbered temporary directories move a "-current" symlink as they are made: two
# threads making one at once can fail with FileExistsError.
_MKTEMP_LOCK = threading.Lock()

# The modules that take 5 s or more, slowest first (their tests' times summed, measured with
# four workers on two cores): they run first, so that under pytest-xdist no worker is left
# running one of them alone at the end while the others idle. The rest keep their usual
# order.
SLOW_FIRST = (
    # Not slow: first, where a scheduler that spreads a module's tests deals them to two
    # workers, and this module fails.
    "tests/test_xdist_scope.py",
    "tests/test_bench_smoke.py",
    "tests/browser/test_page_resilience.py",
    "tests/test_redis_instances.py",
    "tests/browser/test_page.py",
    "tests/test_mcp_tools.py",
    "tests/browser/test_everyday_tools.py",
    "tests/browser/test_tool_steps.py",
    "tests/test_schema.py",
    "tests/test_nginx.py",
    "tests/browser/test_accessibility.py",
    "tests/test_front_door.py",
    "tests/test_tracing.py",
    "tests/browser/test_ai_sdk_page.py",
    "tests/test_streams_resume.py",
    "tests/test_usage_instances.py",
    "tests/test_history.py",
    "tests/test_tool_approvals_across_instances.py",
    "tests/test_ai_sdk_node.py",
    "tests/test_dependencies.py",
    "tests/test_anthropic_tools_e2e.py",
    "tests/test_history_outage.py",
    "tests/test_nginx_cluster.py",
    "tests/test_streams_lifecycle.py",
    "tests/test_docs.py",
    "tests/test_forkserver.py",
    "tests/test_fallback_e2e.py",
    "tests/browser/test_branches.py",
    "tests/browser/test_pictures.py",
    "tests/test_openai_sdk.py",
    "tests/test_stores.py",
    "tests/test_anthropic_e2e.py",
    "tests/test_plugin_contract.py",
    "tests/test_usage.py",
    "tests/test_tool_history.py",
    "tests/test_tool_turns.py",
    "tests/test_example_plugin.py",
    "tests/test_openai_llm_cli.py",
    "tests/browser/test_eventsource.py",
    "tests/test_llm_chain.py",
    "tests/browser/test_budget_note.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """Bytecode is cached, as Python does by default: the tests start hundreds of
    interpreters (servers, benches, commands), and a machine that sets
    PYTHONDONTWRITEBYTECODE would have each compile every module it imports from source."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow modules first. Under ``--dist loadscope --no-loadscope-reorder`` (the test
    command's) pytest-xdist hands out whole modules in this order: one worker runs each
    module, so its module-scoped server starts once and a browser module has that worker's
    Chromium (test_xdist_scope.py fails if that stops holding)."""

    def rank(item: pytest.Item) -> int:
        ranks = (i for i, prefix in enumerate(SLOW_FIRST) if item.nodeid.startswith(prefix))
        return next(ranks, len(SLOW_FIRST))

    items.sort(key=rank)  # stable: the usual order within a rank


@pytest.fixture
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartServer]:
    """Factory: ``start_server(env={...}, data_dir=None)`` runs ``python -m server``.

    Each call gets a fresh data directory unless one is passed (to test restarts). Every
    server started is stopped at the end of the test.
    """
    started: list[RunningServer] = []

    def start(
        env: Mapping[str, str] | None = None,
        *,
        data_dir: Path | None = None,
        args: list[str] | None = None,
        cwd: Path | None = None,
        open_files: int | None = None,
    ) -> RunningServer:
        if data_dir is None:
            with _MKTEMP_LOCK:  # tests start servers from several threads at once
                data_dir = tmp_path_factory.mktemp("data")
        server = launch(data_dir, env, args=args, cwd=cwd, open_files=open_files)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One demo-provider server shared by a module's read-mostly tests."""
    server = launch(tmp_path_factory.mktemp("data"))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _close_abandoned_streams() -> Iterator[None]:
    """Close every HTTP response a test opened and did not read to the end."""
    yield
    while OPEN_STREAMS:
        OPEN_STREAMS.pop().close()


@pytest.fixture
def fakes() -> Iterator[ThreadedFakes]:
    """Fake OpenAI and Gemini upstreams on loopback, on their own loop in a thread."""
    with threaded_fakes() as running:
        yield running


@pytest.fixture
def io_loop() -> Iterator[IOLoop]:
    """A fresh loop for pytest-tornado's ``gen_test``, closed afterwards.

    Replaces pytest-tornado's own fixture, which leaks a loop per test: making its IOLoop
    current first asks asyncio for the current loop, which creates one that nothing closes,
    and a later test then fails on the "unclosed event loop" ResourceWarning when the
    garbage collector finds it.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    io_loop = IOLoop.current()
    try:
        yield io_loop
    finally:
        asyncio.set_event_loop(None)
        io_loop.close(all_fds=True)  # closes the asyncio loop too


@pytest.fixture
def anyio_backend() -> str:
    """The ``anyio``-marked tests run on asyncio, the loop the server itself uses."""
    return "asyncio"


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    """A fake OpenAI upstream on loopback, in this test's own loop."""
    async with FakeOpenAI() as server:
        yield server  # type: ignore[misc]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the whole run (``initdb`` in a temporary directory, on a free
    loopback port). Tests that stop it start their own with ``running_postgres``."""
    with running_postgres() as server:
        yield server


@pytest.fixture
def database_url(postgres: PostgresServer) -> str:
    """The URL of a new, empty database on the shared PostgreSQL."""
    return postgres.new_database()


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on loopback, stopped at the end of the test."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()
