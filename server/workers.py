"""Several processes on one machine, sharing one listening socket.

How many: an explicit ``server.workers`` wins; otherwise ``WEB_CONCURRENCY`` (which Heroku's
Python buildpack sets on its own) when the stores are shared, else one. Several processes on
embedded stores would each have their own stream logs and limits, so an explicit
``server.workers`` above 1 without Redis is refused, while ``WEB_CONCURRENCY`` is ignored
with a warning so that a default deploy still starts.

The parent binds the socket, forks the workers, and forwards SIGTERM and SIGINT to them:
each drains as a single process does, and the parent exits 0 when they all did. Platforms
that signal only their first process (Docker, Fly.io) drain every worker too. A worker that
dies on its own (killed, out of memory) is started again; one that fails to start (a
configuration error, exit status 2) stops them all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from types import FrameType

import structlog

from server.config import ConfigError, Settings

__all__ = ["run_workers", "worker_count"]

log = structlog.get_logger("sluice")

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
