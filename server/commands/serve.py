"""``python -m server`` (``serve``): the server's life, from the command to the exit status.

:func:`run` is the whole of it: bind, fork the workers if there are several, serve, and on
SIGTERM or SIGINT drain and exit 0.

How many processes: an explicit ``server.workers`` wins; otherwise ``WEB_CONCURRENCY``
(which Heroku's Python buildpack sets on its own) when the stores are shared, else one.
Several processes on embedded stores would each have their own stream logs and limits, so an
explicit ``server.workers`` above 1 without Redis is refused, while ``WEB_CONCURRENCY`` is
ignored with a warning so that a default deploy still starts.

With several, this process binds the socket, forks the workers, and forwards SIGTERM and
SIGINT to them: each drains as a single process does, and the parent exits 0 when they all
did. Platforms that signal only their first process (Docker, Fly.io) drain every worker too.
A worker that dies on its own (killed, out of memory) is started again; one that fails to
start (a configuration error, exit status 2) stops them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import resource
import signal
import socket
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from types import FrameType

import structlog
from tornado.netutil import bind_sockets

from server.app import build_state, make_app
from server.config import ConfigError, Settings
from server.http.connections import ConnectionLimits, GuardedHTTPServer
from server.http.state import ServerState
from server.observability.logging import configure_logging
from server.observability.tracing import tracing_wanted
from server.registry import import_plugins

__all__ = [
    "StartupError",
    "bind",
    "connection_limits",
    "proxied_platform",
    "run",
    "run_workers",
    "serve",
    "worker_count",
]

log = structlog.get_logger("sluice")


def run(settings: Settings) -> int:
    """Serve with ``settings`` until stopped; the process's exit status (2: could not start,
    with one line on stderr saying why)."""
    configure_logging(settings.log, trace_ids=tracing_wanted(os.environ))
    workers, warning = worker_count(settings, os.environ)
    if warning is not None:
        log.warning("web_concurrency_ignored", reason=warning)
    if workers == 1:
        state = build_state(settings)
        try:
            asyncio.run(serve(state))
        except StartupError as error:  # a port in use: one line, not a traceback
            print(f"sluice: {error}", file=sys.stderr)
            return 2
        return 0
    # Bound once here, before the fork: every worker accepts from the same socket (and a
    # port of 0 means the same free port for all of them).
    try:
        sockets = bind(settings.server.host, settings.server.port)
    except StartupError as error:
        print(f"sluice: {error}", file=sys.stderr)
        return 2
    supervisor = os.getpid()
    import_plugins(settings)

    def worker(index: int) -> int:
        try:
            state = build_state(settings)
        except ConfigError as error:
            print(f"sluice: {error}", file=sys.stderr)
            return 2
        asyncio.run(serve(state, sockets, worker=index, supervisor=supervisor))
        return 0

    return run_workers(workers, worker)


# More restarts than this within a minute means something is wrong at start-up: stop.
_MAX_RESTARTS_PER_MINUTE = 10


def worker_count(settings: Settings, environ: Mapping[str, str]) -> tuple[int, str | None]:
    """How many processes to run, and a warning to log (or None)."""
    shared = bool(settings.store.redis_url)
    explicit = settings.server.workers
    if explicit:
        if explicit > 1 and not shared:
            raise ConfigError(
                f"config error: server.workers = {explicit}: more than one worker needs shared"
                " stores; set REDIS_URL (stream logs, cancel, limits and caps in Redis), or run"
                " one worker per process"
            )
        return explicit, None
    raw = environ.get("WEB_CONCURRENCY", "").strip()
    if not raw:
        return 1, None
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1 or len(raw) > 4:
        raise ConfigError(
            f"config error: WEB_CONCURRENCY = {raw!r}: must be a whole number of processes,"
            " 1 or more"
        )
    count = int(raw)
    if count > 1 and not shared:
        return 1, (
            f"WEB_CONCURRENCY={count} ignored: several processes need shared stores"
            " (REDIS_URL); running one"
        )
    return count, None


def run_workers(count: int, worker: Callable[[int], int]) -> int:
    """Fork ``count`` processes running ``worker(index)`` and supervise them; the exit status.

    Call before any event loop or thread exists in this process: a fork copies only the
    calling thread."""
    children: dict[int, int] = {}  # pid -> worker index
    stopping = False
    exit_code = 0
    restarts: list[float] = []

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 1
            try:
                code = worker(index)
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = index

    def stop_all(signum: int = signal.SIGTERM) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def forward(signum: int, frame: FrameType | None) -> None:
        stop_all(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for index in range(count):
        spawn(index)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid, -1)
        if index < 0:
            continue
        code = os.waitstatus_to_exitcode(status)
        if stopping:
            if code != 0 and exit_code == 0:
                exit_code = code if code > 0 else 1
            continue
        if code == 2:  # it could not start (configuration): none of them will
            exit_code = 2
            stop_all()
            continue
        now = time.monotonic()
        restarts = [at for at in restarts if now - at < 60] + [now]
        if len(restarts) > _MAX_RESTARTS_PER_MINUTE:
            log.error("workers_keep_dying", restarts=len(restarts))
            exit_code = 1
            stop_all()
            continue
        log.warning("worker_died", worker=index, pid=pid, exit_code=code)
        spawn(index)
    return exit_code


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


# Environment variables that tell which platform runs us, behind its own router.
_PLATFORMS = (
    ("DYNO", "Heroku"),
    ("RENDER", "Render"),
    ("FLY_APP_NAME", "Fly.io"),
    ("RAILWAY_ENVIRONMENT", "Railway"),
    ("K_SERVICE", "Cloud Run"),
)


def proxied_platform(environ: Mapping[str, str]) -> str | None:
    """The PaaS we run on, when its environment says so."""
    return next((name for key, name in _PLATFORMS if environ.get(key)), None)


class StartupError(Exception):
    """Start-up cannot go on; the message is one line for a person."""


def bind(host: str, port: int) -> list[socket.socket]:
    """The listening sockets, or :class:`StartupError` naming the port and what to do."""
    try:
        return bind_sockets(port, host)
    except OSError as error:
        where = f"{host}:{port}"
        if error.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} is already in use ({where}): stop what is listening there,"
                " or choose another port with PORT or --port"
            ) from None
        if error.errno == errno.EACCES:
            raise StartupError(
                f"not allowed to listen on port {port} ({where}): ports below 1024 need"
                " privileges; choose another with PORT or --port"
            ) from None
        raise StartupError(f"cannot listen on {where}: {error.strerror or error}") from None


def connection_limits(settings: Settings, open_files: int) -> ConnectionLimits:
    server = settings.server
    return ConnectionLimits(
        header_timeout=server.header_timeout_seconds,
        body_timeout=server.body_timeout_seconds,
        max_header_bytes=settings.limits.max_header_bytes,
        # The largest body of any endpoint: one that takes images, or the AI SDK's chat.
        max_body_bytes=max(
            settings.limits.max_body_bytes + settings.limits.image_allowance_bytes(),
            settings.limits.max_chat_body_bytes,
        ),
        # Refuse cleanly well before the descriptors run out: streams need an upstream
        # socket each too, and the store its files.
        max_connections=server.max_connections or max(16, open_files * 3 // 4),
        # Behind a trusted proxy every connection comes from the proxy's address.
        max_per_address=0 if server.trust_proxy else server.max_connections_per_address,
    )


async def serve(
    state: ServerState,
    sockets: list[socket.socket] | None = None,
    *,
    worker: int | None = None,
    supervisor: int | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then drain. A worker of several (:func:`run_workers`)
    gets its ``sockets`` bound already, and stops as well if its ``supervisor`` goes away
    (killed): no worker is left serving on its own."""
    settings = state.settings
    if sockets is None:
        sockets = bind(settings.server.host, settings.server.port)
    registry = state.runner.registry
    await registry.start()
    open_files = raise_open_file_limit()
    # Creates or upgrades the history schema, waiting while another instance does; a
    # shared database that is down is left for later (the server reports 503 till then).
    await state.sessions.open()
    for stage in state.stages:
        await stage.startup()
    # MCP servers start with the server; one that cannot is named in /readyz and the logs,
    # and never stops the start (text turns need none of them).
    await state.mcp.start()
    for health in state.mcp.health():
        if not health.ready:
            log.warning("mcp_server_not_ready", server=health.name, problem=health.problem)
    app = make_app(state)
    server = GuardedHTTPServer(
        app,
        limits=connection_limits(settings, open_files),
        xheaders=settings.server.trust_proxy,
    )
    server.add_sockets(sockets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if supervisor is not None:
        _watch_supervisor(loop, supervisor, stop)
    port = sockets[0].getsockname()[1]
    names = [provider.name for provider in state.chain.providers]
    log.info(
        "listening",
        open_files=open_files,
        stores=registry.kind,
        **({} if worker is None else {"worker": worker, "pid": os.getpid()}),
        url=f"http://{settings.server.host}:{port}",
        providers=names,
        stages=settings.pipeline.stages,
    )
    platform = proxied_platform(os.environ)
    if platform is not None and not settings.server.trust_proxy:
        log.warning(
            "proxy_not_trusted",
            platform=platform,
            hint="this looks like a platform whose router sets X-Forwarded-For; with"
            " server.trust_proxy off every user shares the router's address (one rate-limit"
            " bucket for all). Set SLUICE_SERVER__TRUST_PROXY=true.",
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
    # Each release is bounded: a platform kills a process that outlives its grace period,
    # and one that hangs here would never exit on its own. A step that overruns is named.
    for stage in state.stages:
        await _released(f"stage {stage.name}", stage.shutdown())
    await _released("llm chain", state.chain.aclose())
    await _released("mcp servers", state.mcp.aclose())
    await _released("tool approvals", state.approvals.close())
    await _released("stream logs", state.logs.close())  # what is left of drained turns' logs
    await _released("shared stores", registry.close())
    await _released("history", state.sessions.close())
    if state.tracer is not None:  # the spans still buffered, the last turns' among them
        await _released("traces", asyncio.to_thread(state.tracer.shutdown))
    log.info("stopped")


_RELEASE_SECONDS = 5.0


async def _released(what: str, closing: Awaitable[None]) -> None:
    try:
        await asyncio.wait_for(closing, timeout=_RELEASE_SECONDS)
    except TimeoutError:
        log.warning("shutdown_step_timed_out", step=what, seconds=_RELEASE_SECONDS)


def _watch_supervisor(
    loop: asyncio.AbstractEventLoop, supervisor: int, stop: asyncio.Event
) -> None:
    """Drain and stop once the supervising process is gone (this one was re-parented)."""
    if os.getppid() != supervisor:
        log.warning("supervisor_gone", supervisor=supervisor)
        stop.set()
        return
    loop.call_later(1.0, _watch_supervisor, loop, supervisor, stop)
