"""The example plugin package: installed, enabled by one config line, seen in a stream.

It is installed into a temporary folder put on the server's ``PYTHONPATH`` (entry points are
found there like anywhere on ``sys.path``), never into the environment the tests run in.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import StartServer
from tests.support.packages import install_into
from tests.support.server import ROOT
from tests.support.sse import bearer, request


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_into(
        tmp_path_factory.mktemp("example-site"), ROOT / "examples" / "sluice-redact"
    )


def config_with_redaction(tmp_path: Path) -> Path:
    """The shipped config.toml with one line changed: the stage list."""
    original = (ROOT / "config.toml").read_text(encoding="utf-8")
    line = 'stages = ["rate_limit", "usage", "session", "intent", "context", "llm"]'
    assert original.count(line) == 1
    enabled = line.replace('"context", "llm"', '"context", "redact_email", "llm"')
    path = tmp_path / "config.toml"
    path.write_text(original.replace(line, enabled), encoding="utf-8")
    return path


def test_redaction_plugin_in_a_real_stream(
    installed_example: Path, start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(
        {
            "SLUICE_CONFIG": str(config_with_redaction(tmp_path)),
            "PYTHONPATH": str(installed_example),
        }
    )
    message = "Write to alice.smith@example.com or bob@mail.example.org please"
    frames = request(
        server.url,
        "POST",
        "/api/conversation-stream/alice",
        body={"message": message, "session_id": "redact"},
        headers=bearer("tok-alice"),
    ).read_all()
    events = [f.data for f in frames if f.data]
    stages = [e["stage"] for e in events if e["type"] == "status" and e["state"] == "start"]
    assert stages == ["rate_limit", "session", "intent", "context", "redact_email", "llm"]
    chunks = "".join(e["content"] for e in events if e["type"] == "chunk")
    complete = events[-1]
    assert complete["type"] == "complete"
    assert "@" not in chunks and "[email hidden]" in chunks
    assert chunks == complete["message"]
    assert "Write to [email hidden] or [email hidden] please" in chunks


def test_unknown_option_stops_start_up(installed_example: Path, tmp_path: Path) -> None:
    config = config_with_redaction(tmp_path)
    config.write_text(
        config.read_text(encoding="utf-8") + '\n[stages.redact_email]\nreplacment = "x"\n',
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "server"],
        env={
            "SLUICE_CONFIG": str(config),
            "SLUICE_DATA_DIR": str(tmp_path / "d"),
            "PATH": "",
            "PYTHONPATH": str(installed_example),
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "sluice: config error: stages.redact_email.replacment: unknown setting"
        " (check the spelling against config.toml)"
    )


def test_the_test_environment_is_left_as_it_was(installed_example: Path) -> None:
    import importlib.util

    assert (installed_example / "sluice_redact").is_dir()
    assert importlib.util.find_spec("sluice_redact") is None
