"""Run the real server (``python -m server``) in a subprocess on a free loopback port.

The server picks its own port (``PORT=0``) and we read the address from its ``listening``
log line, so there is no race for a port and no sleep: readiness is that line.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import forkserver
from tests.support.sse import json_request

ROOT = Path(__file__).resolve().parents[2]

# Provider keys and settings of the machine running the tests must not leak in.
_SCRUB_PREFIXES = (
    "SLUICE_",
    "OPENAI_",
    "GEMINI_",
    "GOOGLE_",
    "ANTHROPIC_",
    "REDIS_",
    "DATABASE_",
)

TEST_TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}

# How long a process started by the tests may take to answer, as a bound and never as a wait:
# the server starts in about 2 s on an idle machine, and took over 20 s on a loaded 2-core one
# running the suite beside other work.
STARTUP_SECONDS = 90.0


_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _port_slice() -> range:
    """The ports ``free_port`` draws from: above the well-known services and below the
    kernel's ephemeral range, where every outgoing connection takes its local port (the tests
    open thousands, and one could take a port between ``free_port`` and the server binding
    it); under pytest-xdist, a slice of those for this worker alone, so that two workers
    never draw the same port. Empty when the ephemeral range leaves too little room."""
    try:
        ephemeral_low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return range(0)
    ours = range(10_000, ephemeral_low)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    size = len(ours) // workers
    return ours[index * size : (index + 1) * size] if size >= 500 else range(0)


def free_port() -> int:
    """A loopback port nothing listens on now (for servers that cannot pick their own)."""
    candidates = _port_slice()
    for _ in range(100 if candidates else 0):
        port = random.choice(candidates)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken: draw again
            return port
    with socket.socket() as sock:  # no room of our own: the kernel's pick
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_answering(
    url: str, process: subprocess.Popen[Any], *, timeout: float, what: str
) -> None:
    """Poll ``GET /healthz`` at ``url`` until it answers 200, failing at once if ``process``
    (the server, or a proxy or supervisor in front of it) exits, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if json_request(url, "GET", "/healthz")[0] == 200:
                return
        except OSError:
            pass  # not listening yet
        assert process.poll() is None, f"{what} exited before answering"
        assert time.monotonic() < deadline, f"{what} did not answer within {timeout} s"
        time.sleep(0.05)


def base_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
    env.pop("PORT", None)
    env.pop("WEB_CONCURRENCY", None)  # a platform's setting, not the tests'

    env.update(
        {
            "SLUICE_CONFIG": str(ROOT / "config.toml"),
            "SLUICE_DATA_DIR": str(data_dir),
            "PORT": "0",
            "SLUICE_LOG__FORMAT": "json",
            "SLUICE_LOG__LEVEL": "info",
            "SLUICE_API_TOKENS": ",".join(f"{t}:{u}" for t, u in TEST_TOKENS.items()),
            "SLUICE_LLM__DEMO__WORDS_PER_SECOND": "200",
            "SLUICE_RATE_LIMIT__BURST": "1000",
            "SLUICE_RATE_LIMIT__REQUESTS_PER_MINUTE": "60000",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


# ``python -m server`` exec'd, or forked by the fork server: the same calls either way.
ServerProcess = subprocess.Popen[str] | forkserver.ForkedProcess


@dataclass
class RunningServer:
    process: ServerProcess
    data_dir: Path
    url: str = ""
    port: int = 0
    lines: list[dict[str, Any]] = field(default_factory=list)
    raw_lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)
    _pump_thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _pump(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def _take(self, timeout: float) -> str | None:
        line = self._queue.get(timeout=timeout)
        if line is not None:
            self.raw_lines.append(line)
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(line))
        return line

    def wait_for_log(self, event: str, timeout: float = 60.0, **match: Any) -> dict[str, Any]:
        """Block until the server logs ``event`` (with ``match`` fields); return the line."""
        for line in self.lines:
            if line.get("event") == event and all(line.get(k) == v for k, v in match.items()):
                return line
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                raw = self._take(remaining)
            except queue.Empty:
                break
            if raw is None:
                raise AssertionError(f"server exited before logging {event!r}:\n{self.output()}")
            line = self.lines[-1] if self.lines and raw.strip().startswith("{") else {}
            if line.get("event") == event and all(line.get(k) == v for k, v in match.items()):
                return line
        raise AssertionError(f"server did not log {event!r} within {timeout}s:\n{self.output()}")

    def drain(self) -> None:
        while True:
            try:
                if self._take(0) is None:
                    return
            except queue.Empty:
                return

    def output(self) -> str:
        self.drain()
        return "".join(self.raw_lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> int:
        """Send ``sig`` and wait up to ``timeout`` for the exit status; past that, kill it.

        A hang costs ``timeout`` and shows as a failed status, never a hung suite: the whole
        process group is killed at the end, so no worker outlives its supervisor (whether it
        hung draining or the test killed the supervisor). Such a worker would keep the log
        pipe open, the pump thread would never see its end, and closing the pipe under that
        thread's blocked read would block too.
        """
        if self.process.poll() is None:
            self.process.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        # The group is the server's own (launched in a new session), and its id stays taken,
        # so not reusable by another process, for as long as any member lives.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        if self._pump_thread is not None:
            self._pump_thread.join(timeout=10)
            assert not self._pump_thread.is_alive(), "something outside its group holds its log"
        self.drain()
        if self.process.stderr is not None:
            self.process.stderr.close()
        return self.process.returncode


def launch(
    data_dir: Path,
    env: Mapping[str, str] | None = None,
    *,
    args: list[str] | None = None,
    cwd: Path | None = None,
    open_files: int | None = None,
) -> RunningServer:
    """Start the server; ``open_files`` caps its descriptors (soft and hard limit)."""
    full_env = base_env(data_dir)
    full_env.update(env or {})

    def limit_open_files() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    process: ServerProcess
    if forkserver.wants_fresh_interpreter(full_env):
        process = subprocess.Popen(
            [sys.executable, "-m", "server", *(args or [])],
            preexec_fn=limit_open_files if open_files is not None else None,
            cwd=cwd or ROOT,
            env=full_env,
            start_new_session=True,  # a group of its own, for stop() to kill at the end
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
    else:  # the same, forked from an interpreter that has imported the server already
        process = forkserver.spawn(args or [], full_env, cwd or ROOT, open_files)
    return attach(process, data_dir)


def run_command(
    args: list[str],
    env: Mapping[str, str],
    *,
    cwd: Path = ROOT,
    stdin: str | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """``python -m server *args`` run to its end, what ``subprocess.run`` with
    ``capture_output=True, text=True`` returns: forked like :func:`launch`'s servers, so a
    command costs no second of imports, unless ``env`` needs a fresh interpreter."""
    argv = [sys.executable, "-m", "server", *args]
    if forkserver.wants_fresh_interpreter(env):
        return subprocess.run(
            argv,
            cwd=cwd,
            env=dict(env),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    process = forkserver.spawn(args, env, cwd, None, pipes=True)
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    streams = {"stdout": process.stdout, "stderr": process.stderr}
    read: dict[str, str] = {}
    readers = [
        threading.Thread(target=lambda n=name, s=stream: read.__setitem__(n, s.read()))
        for name, stream in streams.items()
    ]
    for reader in readers:
        reader.start()
    with contextlib.suppress(BrokenPipeError):  # as Popen.communicate: it need not read
        process.stdin.write(stdin or "")
        process.stdin.close()
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    finally:
        for reader in readers:
            reader.join(timeout=10)
        for stream in streams.values():
            stream.close()
    return subprocess.CompletedProcess(argv, code, read.get("stdout", ""), read.get("stderr", ""))


def server_command(
    data_dir: Path, *args: str, env: Mapping[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """A command (``export``, ``import``, ``migrate``, ``usage``…) on the data directory
    ``data_dir``, in the tests' environment with ``env`` over it: :func:`run_command`."""
    return run_command(list(args), base_env(data_dir) | dict(env or {}), stdin=stdin)


def attach(process: ServerProcess, data_dir: Path) -> RunningServer:
    """Follow a server process just started: its log, until it says it is listening."""
    server = RunningServer(process=process, data_dir=data_dir)
    server._pump_thread = threading.Thread(target=server._pump, daemon=True)
    server._pump_thread.start()
    try:
        line = server.wait_for_log("listening", timeout=STARTUP_SECONDS)
    except AssertionError:
        server.stop(signal.SIGKILL)
        raise
    server.url = line["url"].replace("0.0.0.0", "127.0.0.1")
    server.port = int(server.url.rsplit(":", 1)[1])
    return server
