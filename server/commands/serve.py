"""``python -m server`` (``serve``): bind, serve, drain on SIGTERM, exit 0."""

from __future__ import annotations

import asyncio
import gc
import resource
import signal

import structlog
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from server.app import make_app
from server.state import ServerState

__all__ = ["serve"]

log = structlog.get_logger("sluice")


def raise_open_file_limit() -> int:
    """Lift the soft limit on open files to the hard one: every stream holds a client socket
    and an upstream one, and the usual soft limit of 1,024 caps a server near 500 streams."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


# Young collections stay small (a few ms); a full one needs 10,000 gen-1 collections, which
# at steady load is about an hour apart. See tune_garbage_collector.
GC_THRESHOLDS = (10_000, 5, 10_000)


def tune_garbage_collector() -> None:
    """Freeze what start-up made, and make full collections rare.

    Every open stream keeps ~280 GC-tracked objects (tasks, generators, SDK and HTTP
    state), and a full collection walks all of them: with CPython's default thresholds a
    ramp to 5,000 streams ran 16 full collections, the last taking 926 ms, which is what
    the stream's p99 lag was. Measured here, 1,008 turns with the collector off left only
    32 objects of cyclic garbage (reference counting frees the rest), so rare full
    collections cost next to nothing in memory. Lag p99 at 5,000 idle streams went from
    653 ms to 12 ms (``python -m bench run --workload idle``; docs/performance.md).
    """
    gc.collect()
    gc.freeze()  # start-up objects live for the whole run
    gc.set_threshold(*GC_THRESHOLDS)


async def serve(state: ServerState) -> None:
    settings = state.settings
    # Creates or upgrades the history schema, waiting while another instance does; a
    # shared database that is down is left for later (the server reports 503 till then).
    await state.sessions.open()
    for stage in state.stages:
        await stage.startup()
    app = make_app(state)
    server = HTTPServer(
        app,
        xheaders=settings.server.trust_proxy,
        # Bodies are limited per handler (413 with a JSON error); this only stops abuse.
        max_body_size=64 * 1024 * 1024,
        idle_connection_timeout=75,
    )
    sockets = bind_sockets(settings.server.port, settings.server.host)
    server.add_sockets(sockets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    port = sockets[0].getsockname()[1]
    names = [provider.name for provider in state.chain.providers]
    open_files = raise_open_file_limit()
    log.info(
        "listening",
        open_files=open_files,
        url=f"http://{settings.server.host}:{port}",
        providers=names,
        stages=settings.pipeline.stages,
    )
    for problem in state.provider_problems:
        log.info("provider_skipped", reason=problem)
    if names == ["demo"]:
        log.warning("demo_provider", hint="set OPENAI_API_KEY or GEMINI_API_KEY for real answers")
    tune_garbage_collector()
    await stop.wait()
    log.info("shutting_down", grace_seconds=settings.server.shutdown_grace_seconds)
    server.stop()
    await state.runner.shutdown(settings.server.shutdown_grace_seconds)
    try:
        await asyncio.wait_for(server.close_all_connections(), timeout=5)
    except TimeoutError:
        log.warning("connections_left_open")
    for stage in state.stages:
        await stage.shutdown()
    await state.chain.aclose()
    await state.sessions.close()
    log.info("stopped")
