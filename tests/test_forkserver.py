"""The tests' fork server starts the server as ``python -m server`` would.

Most tests launch their servers through it (tests/support/forkserver.py), so what they see
must not depend on it: each launch is a process and session of its own with the launch's
environment alone, working directory, descriptor limit, stdin and stdout on /dev/null (on
pipes for a command), and its exit status reported as ``subprocess.Popen`` reports it.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support import forkserver
from tests.support.server import RunningServer, attach, base_env, run_command
from tests.support.sse import json_request


@pytest.fixture(scope="module")
def fork_server() -> Iterator[forkserver.ForkServer]:
    # A key in the fork server's own environment: a server that saw it would offer OpenAI.
    server = forkserver.ForkServer({**os.environ, "OPENAI_API_KEY": "sk-of-the-fork-server"})
    yield server
    server.close()


def start(
    fork_server: forkserver.ForkServer, data_dir: Path, open_files: int | None = None
) -> RunningServer:
    return attach(fork_server.spawn([], base_env(data_dir), data_dir, open_files), data_dir)


def test_a_forked_server_has_the_launchs_process_state_alone(
    fork_server: forkserver.ForkServer, tmp_path: Path
) -> None:
    server = start(fork_server, tmp_path, open_files=300)
    try:
        assert server.lines[-1]["providers"] == ["demo"]  # the fork server's key stayed out
        assert json_request(server.url, "GET", "/healthz")[0] == 200
        process = psutil.Process(server.process.pid)
        assert os.getsid(process.pid) == process.pid  # a session of its own, for killpg
        assert process.cwd() == str(tmp_path)
        assert process.rlimit(psutil.RLIMIT_NOFILE) == (300, 300)
        assert os.readlink(f"/proc/{process.pid}/fd/0") == os.devnull
        assert os.readlink(f"/proc/{process.pid}/fd/1") == os.devnull
        assert server.process.poll() is None
    finally:
        status = server.stop()
    assert status == 0  # SIGTERM: a clean exit, reported as Popen reports it
    server.wait_for_log("stopped", timeout=0)


def test_a_killed_server_reports_the_signal(
    fork_server: forkserver.ForkServer, tmp_path: Path
) -> None:
    server = start(fork_server, tmp_path)
    server.process.send_signal(signal.SIGKILL)
    assert server.process.wait(timeout=10) == -signal.SIGKILL
    server.process.send_signal(signal.SIGTERM)  # gone: nothing is sent, nothing fails
    assert server.stop() == -signal.SIGKILL
    assert "stopped" not in server.output()


def test_a_command_reads_its_stdin_and_is_heard_on_stdout_and_stderr(tmp_path: Path) -> None:
    """``run_command`` forks commands too (``python -m server import``, ``plugins``…): what
    the test sends reaches the command's stdin, and what it prints comes back, as from
    ``subprocess.run(..., capture_output=True)``."""
    env = base_env(tmp_path)
    refused = run_command(["import", "-"], env, stdin='{"not": "a session"}\n')
    assert refused.returncode == 1
    assert refused.stderr == "sluice: import failed: line 1: not a sluice history export\n"
    listing = run_command(["plugins"], env)
    assert listing.returncode == 0, listing.stderr
    assert ("stage", "llm") in {
        (item["group"], item["name"]) for item in json.loads(listing.stdout)
    }


def test_pythonpath_folders_are_forked_and_a_sitecustomize_on_them_is_not(
    tmp_path: Path,
) -> None:
    """A plugin package on ``PYTHONPATH`` is found by a fork as by ``python -m server`` (the
    tool tests start their servers so), but a ``sitecustomize`` there runs only in a fresh
    interpreter, as do other ``PYTHON*`` settings."""
    plain = tmp_path / "site"
    plain.mkdir()
    assert not forkserver.wants_fresh_interpreter({"PYTHONPATH": f"{plain}:{tmp_path}"})
    (tmp_path / "sitecustomize.py").write_text("print('hello')\n")
    assert forkserver.wants_fresh_interpreter({"PYTHONPATH": f"{plain}:{tmp_path}"})
    assert forkserver.wants_fresh_interpreter({"PYTHONPROFILEIMPORTTIME": "1"})
