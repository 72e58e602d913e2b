"""How many processes (server/commands/serve.py), and what happens to them if their
supervisor dies."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil
import pytest

from server.commands.serve import worker_count
from server.config import ConfigError, Settings
from tests.conftest import StartServer
from tests.support.redis_server import RedisServer


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


SHARED = {"store": {"redis_url": "redis://127.0.0.1:6379/0"}}


def test_web_concurrency_is_honoured_with_shared_stores() -> None:
    assert worker_count(Settings.model_validate(SHARED), {"WEB_CONCURRENCY": "3"}) == (3, None)
    assert worker_count(Settings.model_validate(SHARED), {}) == (1, None)


def test_an_explicit_server_workers_wins_over_web_concurrency() -> None:
    settings = Settings.model_validate({**SHARED, "server": {"workers": 2}})
    assert worker_count(settings, {"WEB_CONCURRENCY": "5"}) == (2, None)
    one = Settings.model_validate({**SHARED, "server": {"workers": 1}})
    assert worker_count(one, {"WEB_CONCURRENCY": "5"}) == (1, None)


def test_embedded_stores_ignore_web_concurrency_with_a_warning() -> None:
    count, warning = worker_count(Settings(), {"WEB_CONCURRENCY": "4"})
    assert count == 1 and warning is not None and "REDIS_URL" in warning


def test_embedded_stores_refuse_an_explicit_server_workers_above_one() -> None:
    with pytest.raises(ConfigError, match=r"server\.workers = 2: .*REDIS_URL"):
        worker_count(Settings.model_validate({"server": {"workers": 2}}), {})


@pytest.mark.parametrize("raw", ["two", "0", "-1", "²"])
def test_a_bad_web_concurrency_is_one_line(raw: str) -> None:
    with pytest.raises(ConfigError, match="WEB_CONCURRENCY"):
        worker_count(Settings.model_validate(SHARED), {"WEB_CONCURRENCY": raw})


def test_workers_stop_when_their_supervisor_is_killed(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    server = start_server({"REDIS_URL": redis_server.url, "SLUICE_SERVER__WORKERS": "2"})
    pids = [server.wait_for_log("listening", worker=n)["pid"] for n in (0, 1)]
    server.process.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "a worker outlived its supervisor"
        time.sleep(0.1)


def test_the_supervisor_imports_the_configured_plugins_before_forking() -> None:
    """Workers used to import the providers' SDKs each after the fork (seconds apiece under
    load, and a two-worker start took long enough to miss a test's deadline). The supervisor
    now imports them once, and only them, without starting a thread (a fork copies one)."""
    probe = (
        "import sys, threading\n"
        "from server.config import load_settings\n"
        "from server.registry import import_plugins\n"
        "before = set(sys.modules)\n"
        "import_plugins(load_settings({'SLUICE_LLM__PROVIDERS': 'gemini'}))\n"
        "new = set(sys.modules) - before\n"
        "print('plugins.providers.gemini' in new, 'plugins.session' in new,"
        " 'plugins.providers.openai' in new, threading.active_count())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.split() == ["True", "True", "False", "1"]
