"""Run the real server (``python -m server``) in a subprocess on a free loopback port.

The server picks its own port (``PORT=0``) and we read the address from its ``listening``
log line, so there is no race for a port and no sleep: readiness is that line.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
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


def free_port() -> int:
    """A loopback port nothing listens on now (for servers that cannot pick their own)."""
    with socket.socket() as sock:
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


@dataclass
class RunningServer:
    process: subprocess.Popen[str]
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

    def wait_for_log(self, event: str, timeout: float = 20.0, **match: Any) -> dict[str, Any]:
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
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._pump_thread is not None:
            self._pump_thread.join(timeout=10)
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

    process = subprocess.Popen(
        [sys.executable, "-m", "server", *(args or [])],
        preexec_fn=limit_open_files if open_files is not None else None,
        cwd=cwd or ROOT,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    server = RunningServer(process=process, data_dir=data_dir)
    server._pump_thread = threading.Thread(target=server._pump, daemon=True)
    server._pump_thread.start()
    try:
        line = server.wait_for_log("listening")
    except AssertionError:
        server.stop(signal.SIGKILL)
        raise
    server.url = line["url"].replace("0.0.0.0", "127.0.0.1")
    server.port = int(server.url.rsplit(":", 1)[1])
    return server
