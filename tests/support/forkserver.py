"""Start the server from an interpreter that has imported it already: a fork server.

``python -m server`` spends about 1.4 s of its 1.8 s start importing (the providers' SDKs,
SQLAlchemy and Alembic, sluice's own modules), and the suite starts a server some 270 times:
a third of the suite's time, on two cores. So each pytest worker starts one process that
imports all of that once and then, for every launch, forks a child that runs
``server.__main__`` as ``python -m server`` would: a process and session of its own, the
launch's environment (the whole of it, nothing inherited), arguments, working directory and
descriptor limit, stdin and stdout on ``/dev/null``, stderr on the caller's pipe, and its exit
status reported back. Only the modules already in memory differ, so a launch whose
environment changes how Python itself starts (``PYTHON*`` variables: import profiling, a
``sitecustomize`` on ``PYTHONPATH``) is exec'd as before (see ``wants_fresh_interpreter``);
``PYTHONPATH``'s folders alone (a plugin package the test wrote) the fork puts on
``sys.path``.

The caller's side is :func:`spawn`, which answers a :class:`ForkedProcess` (what the tests use
of ``subprocess.Popen``). The fork server's side is this module run as ``python -m``; it exits
when its caller closes the socket (the caller's process ended).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import os
import resource
import runpy
import select
import selectors
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]

# What ``python -m server`` imports, with every provider and plugin of the repository, then
# the SDKs it loads on demand (a fork copies every module in memory, so a launch that never
# uses them pays nothing for them).
PRELOAD = (
    "server.cli",
    "server.commands.serve",
    "server.app",
    "server.stores.schema",
    "server.stores.sqlite",
    "plugins.rate_limit",
    "plugins.usage",
    "plugins.session",
    "plugins.intent",
    "plugins.context",
    "plugins.llm",
    "plugins.tools",
    "plugins.providers.demo",
    "plugins.providers.openai",
    "plugins.providers.gemini",
    "plugins.providers.anthropic",
    # What a server imports only when it needs it. A test that checks that it does not runs
    # its own interpreter; here each is imported once rather than by every launch that uses
    # it: the Anthropic SDK is 1.4 CPU-seconds of imports, google.genai 0.4, MCP's client 0.6.
    "anthropic",
    "google.genai",
    "google.genai.types",
    "google.genai.errors",
    "server.tools.mcp",
)

# The largest request: a launch's environment and arguments, as JSON.
_MESSAGE_BYTES = 1 << 20


def wants_fresh_interpreter(env: Mapping[str, str]) -> bool:
    """Whether a launch with ``env`` must be exec'd: a ``PYTHON*`` variable the fork server
    did not start with changes how the interpreter starts, which a fork cannot redo. But
    for ``PYTHONPATH``, whose folders a fork puts on ``sys.path`` as the interpreter does,
    unless one holds a module the interpreter runs as it starts."""
    return any(
        key.startswith("PYTHON")
        and os.environ.get(key) != value
        and not (key == "PYTHONPATH" and _folders_only(value))
        for key, value in env.items()
        if key not in _SAME_IN_BOTH
    )


def _folders_only(python_path: str) -> bool:
    return "PYTHONPATH" not in os.environ and not any(
        (Path(folder) / f"{name}.py").exists() or (Path(folder) / name).is_dir()
        for folder in python_path.split(os.pathsep)
        if folder
        for name in ("sitecustomize", "usercustomize")
    )


# Set for the fork server (see ForkServer) as for every launch (tests.support.server).
_SAME_IN_BOTH = frozenset({"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"})


class ForkedProcess:
    """A server forked by the fork server: ``subprocess.Popen``'s calls the tests make.

    Not the caller's child, so its exit status comes over a pipe the fork server writes
    when it reaps the process (and closes, so a read to the end is the wait)."""

    def __init__(
        self,
        pid: int,
        stderr: IO[str],
        status_fd: int,
        args: list[str],
        stdout: IO[str] | None = None,
        stdin: IO[str] | None = None,
    ) -> None:
        self.pid = pid
        self.stderr: IO[str] | None = stderr
        self.stdout = stdout
        self.stdin = stdin
        self.args = args
        self.returncode: int | None = None
        self._status_fd = status_fd

    def poll(self) -> int | None:
        return self._reap(0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._reap(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # as Popen: never a signal to a pid that may be reused
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _reap(self, timeout: float | None) -> int | None:
        if self.returncode is not None:
            return self.returncode
        poller = select.poll()  # any descriptor number, unlike select()
        poller.register(self._status_fd, select.POLLIN)
        if not poller.poll(None if timeout is None else int(timeout * 1000)):
            return None
        status = b""
        while chunk := os.read(self._status_fd, 64):
            status += chunk
        os.close(self._status_fd)
        if not status:
            raise RuntimeError(f"the fork server ended before reporting on {self.pid}")
        self.returncode = int(status)
        return self.returncode


class ForkServer:
    """One fork server process; ``env`` is its own environment (the tests check that none of
    it reaches a launch). Ends when the caller's process does, or at :meth:`close`."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._channel = ours
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.forkserver", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            cwd=ROOT,
            env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        ready = ours.recv(_MESSAGE_BYTES)
        assert ready == b"ready", f"the fork server did not start: {ready!r}"

    def close(self) -> None:
        self._channel.close()  # its end of the socket reads as closed: it exits
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def spawn(
        self,
        argv: list[str],
        env: Mapping[str, str],
        cwd: Path,
        open_files: int | None,
        *,
        pipes: bool = False,
    ) -> ForkedProcess:
        """Run ``python -m server *argv`` as a fork: stdin and stdout on /dev/null, or on
        pipes (``process.stdin``, ``process.stdout``) with ``pipes``, as for a command."""
        stderr_read, stderr_write = os.pipe()
        status_read, status_write = os.pipe()
        ours, theirs = [stderr_read, status_read], [stderr_write, status_write]
        if pipes:  # the child's stdout and stdin follow (see _serve)
            stdout_read, stdout_write = os.pipe()
            stdin_read, stdin_write = os.pipe()
            ours += [stdout_read, stdin_write]
            theirs += [stdout_write, stdin_read]
        request = {"argv": argv, "env": dict(env), "cwd": str(cwd), "open_files": open_files}
        try:
            with self._lock:
                socket.send_fds(self._channel, [json.dumps(request).encode()], theirs)
                answer = json.loads(self._channel.recv(_MESSAGE_BYTES))
        finally:
            for fd in theirs:
                os.close(fd)
        if "pid" not in answer:
            for fd in ours:
                os.close(fd)
            raise RuntimeError(f"the fork server could not start the server: {answer}")
        # The process object owns these, as a Popen owns its pipes.
        stderr = open(stderr_read, encoding="utf-8")  # noqa: SIM115
        stdout = open(stdout_read, encoding="utf-8") if pipes else None  # noqa: SIM115
        stdin = open(stdin_write, "w", encoding="utf-8") if pipes else None  # noqa: SIM115
        args = [sys.executable, "-m", "server", *argv]
        return ForkedProcess(answer["pid"], stderr, status_read, args, stdout, stdin)


_shared: ForkServer | None = None
_shared_lock = threading.Lock()


def spawn(
    argv: list[str],
    env: Mapping[str, str],
    cwd: Path,
    open_files: int | None,
    *,
    pipes: bool = False,
) -> ForkedProcess:
    """Run ``python -m server *argv`` as a fork of this process's fork server, started on
    first use and closed at exit (``pipes``: see :meth:`ForkServer.spawn`)."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.process.poll() is not None:
            _shared = ForkServer()
            atexit.register(_shared.close)
        shared = _shared
    return shared.spawn(argv, env, cwd, open_files, pipes=pipes)


# ---- the fork server's side -------------------------------------------------------------


@dataclass
class _Launch:
    request: dict[str, Any]
    stderr_fd: int
    status_fd: int
    stdout_fd: int | None = None
    stdin_fd: int | None = None


def _serve(channel: socket.socket) -> _Launch | None:
    """Fork a child per request; in the parent, reap each and report its status. Returns in
    a child (with its launch), or in the parent once the caller has gone (None)."""
    children = selectors.DefaultSelector()
    children.register(channel, selectors.EVENT_READ)
    status_fds: dict[int, int] = {}  # pidfd -> the status pipe of that child
    pids: dict[int, int] = {}  # pidfd -> pid
    while True:
        for key, _ in children.select():
            if key.fileobj is channel:
                message, fds, _, _ = socket.recv_fds(channel, _MESSAGE_BYTES, 4)
                if not message:
                    return None
                stderr_fd, status_fd, *command_fds = fds  # with pipes: stdout, stdin
                pid = os.fork()
                if pid == 0:
                    children.close()
                    channel.close()
                    for fd in [*status_fds, *status_fds.values()]:
                        os.close(fd)
                    return _Launch(json.loads(message), stderr_fd, status_fd, *command_fds)
                for fd in [stderr_fd, *command_fds]:
                    os.close(fd)
                pidfd = os.pidfd_open(pid)
                status_fds[pidfd], pids[pidfd] = status_fd, pid
                children.register(pidfd, selectors.EVENT_READ)
                channel.send(json.dumps({"pid": pid}).encode())
            else:
                pidfd = key.fd
                children.unregister(pidfd)
                _, status = os.waitpid(pids.pop(pidfd), 0)
                os.close(pidfd)
                status_fd = status_fds.pop(pidfd)
                os.write(status_fd, str(os.waitstatus_to_exitcode(status)).encode())
                os.close(status_fd)


def _become(launch: _Launch) -> None:
    """In the child: take on the launch's process state as an exec'd interpreter has it."""
    os.setsid()
    os.close(launch.status_fd)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull if launch.stdin_fd is None else launch.stdin_fd, 0)
    os.dup2(devnull if launch.stdout_fd is None else launch.stdout_fd, 1)
    os.dup2(launch.stderr_fd, 2)
    for fd in (devnull, launch.stderr_fd, launch.stdin_fd, launch.stdout_fd):
        if fd is not None:
            os.close(fd)
    request = launch.request
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.path[0] = request["cwd"]  # as ``python -m`` puts the working directory first
    # and PYTHONPATH's folders next (the fork server had none: see wants_fresh_interpreter)
    sys.path[1:1] = [f for f in request["env"].get("PYTHONPATH", "").split(os.pathsep) if f]
    if request["open_files"] is not None:
        limit = request["open_files"]
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    sys.argv = [sys.argv[0], *request["argv"]]


def _main() -> None:
    channel = socket.socket(fileno=int(sys.argv[1]))
    try:
        for name in PRELOAD:
            importlib.import_module(name)
    except BaseException as error:  # said to the caller, which fails with it
        channel.send(f"preload failed: {error!r}".encode())
        raise
    # As the server does at start (server.commands.serve.tune_garbage_collector), and before
    # the fork, as the gc module's docs advise: otherwise each launch's first collection
    # walks, and so copies, every page that the imports above filled.
    gc.collect()
    gc.freeze()
    # A fork copies only the thread that forks: nothing imported may have started one.
    assert threading.active_count() == 1, threading.enumerate()
    sys.stdout.flush()
    sys.stderr.flush()
    channel.send(b"ready")
    launch = _serve(channel)
    if launch is None:
        return
    _become(launch)
    # Raises SystemExit with the server's status, as ``python -m server`` ends.
    runpy.run_module("server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _main()
