"""Configuration: the file, SLUICE_<SECTION>__<KEY>, well-known names, one-line errors."""

from __future__ import annotations

import socket
import subprocess
import tomllib
from pathlib import Path

import pytest

from server.config import ConfigError, LLMSettings, Settings, load_settings
from tests.support.server import ROOT, base_env, run_command
from tests.support.sse import json_request

CONFIG = str(ROOT / "config.toml")


def test_shipped_file_holds_every_setting_with_its_default() -> None:
    raw = tomllib.loads((ROOT / "config.toml").read_text(encoding="utf-8"))
    defaults = Settings()
    sections = (
        "server",
        "stream",
        "limits",
        "rate_limit",
        "pipeline",
        "tools",
        "auth",
        "store",
        "log",
    )
    for section in sections:
        model = getattr(defaults, section)
        assert set(raw[section]) == set(type(model).model_fields), section
        for key, value in raw[section].items():
            expected = getattr(model, key)
            if section == "auth" and key in ("api_tokens", "admin_tokens"):
                expected, value = {}, {} if value == "" else value
            assert value == expected, f"{section}.{key}"
    llm_fields = set(LLMSettings.model_fields)
    assert {k for k in raw["llm"] if not isinstance(raw["llm"][k], dict)} == llm_fields
    assert set(raw["llm"]) - llm_fields == {"openai", "gemini", "anthropic", "demo"}


def test_environment_overrides() -> None:
    settings = load_settings(
        {
            "SLUICE_CONFIG": CONFIG,
            "SLUICE_STREAM__HEARTBEAT_SECONDS": "1.5",
            "SLUICE_STREAM__ON_DISCONNECT": "cancel",
            "SLUICE_PIPELINE__STAGES": "rate_limit,session,llm",
            "SLUICE_LLM__OPENAI__MODEL": "gpt-x",
            "PORT": "9123",
            "OPENAI_BASE_URL": "http://127.0.0.1:1/v1",
            "SLUICE_PROVIDERS": "gemini,openai",
            "SLUICE_API_TOKENS": "t1:alice,t2:bob",
        }
    )
    assert settings.stream.heartbeat_seconds == 1.5
    assert settings.stream.on_disconnect == "cancel"
    assert settings.pipeline.stages == ["rate_limit", "session", "llm"]
    assert settings.server.port == 9123
    assert settings.llm.provider_tables()["openai"] == {
        "model": "gpt-x",
        "base_url": "http://127.0.0.1:1/v1",
    }
    assert settings.llm.providers == ["gemini", "openai"]
    assert settings.auth.api_tokens == {"t1": "alice", "t2": "bob"}


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"SLUICE_STREAM__HEARTBEAT_SECONDS": "soon"},
            "config error: stream.heartbeat_seconds = 'soon': Input should be a valid number,"
            " unable to parse string as a number",
        ),
        (
            {"SLUICE_STREAM__ON_DISCONNECT": "explode"},
            "config error: stream.on_disconnect = 'explode':"
            " Input should be 'continue' or 'cancel'",
        ),
        (
            {"SLUICE_LIMITS__MAX_BODY_BYTES": "0"},
            "config error: limits.max_body_bytes = 0: Input should be greater than or equal to 64",
        ),
        (
            {"SLUICE_STREAM__HEARTBEAT": "1"},
            "config error: stream.heartbeat: unknown setting"
            " (check the spelling against config.toml)",
        ),
        (
            {"SLUICE_API_TOKENS": "no-colon"},
            "config error: auth.api_tokens = '***': expected"
            " token:user_id pairs separated by commas",
        ),
    ],
)
def test_bad_values_are_one_line(env: dict[str, str], line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"SLUICE_CONFIG": CONFIG, **env})
    assert str(caught.value) == line


def run_server(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    full = base_env(tmp_path)
    full.update(env)
    return run_command([], full, timeout=60)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SLUICE_STREAM__RETRY_MS": "-5"}, "sluice: config error: stream.retry_ms = -5:"),
        (
            {"SLUICE_PIPELINE__STAGES": "rate_limit,sesion,llm"},
            "sluice: config error: pipeline.stages: unknown stage 'sesion'",
        ),
        (
            {"SLUICE_STAGES__INTENT__THRESHHOLD": "0.3"},
            "sluice: config error: stages.intent.threshhold: unknown setting",
        ),
        (
            {"SLUICE_ENV": "production"},
            "sluice: config error: SLUICE_ENV = 'production' with only the demo provider",
        ),
        ({"SLUICE_SERVER__WORKERS": "4"}, "sluice: config error: server.workers = 4:"),
        # Unknown environments were ignored: the production guard silently off.
        (
            {"SLUICE_ENV": "prod"},
            "sluice: config error: SLUICE_ENV = 'prod': must be one of 'development',"
            " 'production' (lower case)",
        ),
        ({"SLUICE_ENV": "Production"}, "sluice: config error: SLUICE_ENV = 'Production': must"),
        (
            {"SLUICE_PROVIDERS": "openai"},
            "sluice: config error: llm.providers includes 'openai': OPENAI_API_KEY is not set",
        ),
    ],
)
def test_start_up_refuses_with_one_line(env: dict[str, str], expected: str, tmp_path: Path) -> None:
    result = run_server(env, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), result.stderr
    assert "Traceback" not in result.stderr


def test_production_may_serve_the_demo_when_allowed(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server({"SLUICE_ENV": "production", "SLUICE_LLM__ALLOW_DEMO": "true"})
    assert server.port > 0


def test_a_port_in_use_is_one_line_naming_it(tmp_path: Path) -> None:
    """A port already in use printed a 22-line traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_server({"PORT": str(port)}, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"sluice: port {port} is already in use"), lines[0]


def test_forwarded_headers_without_trust_proxy_are_said_once(start_server) -> None:  # type: ignore[no-untyped-def]
    """Behind a router with trust_proxy off, every user shared the router's address (one
    rate-limit bucket for all), and nothing said so."""
    server = start_server({"DYNO": "web.1"})
    assert server.wait_for_log("proxy_not_trusted")["platform"] == "Heroku"
    for _ in range(3):
        json_request(server.url, "GET", "/api/me", headers={"X-Forwarded-For": "203.0.113.9"})
    line = server.wait_for_log("forwarded_headers_ignored")
    assert line["header"] == "X-Forwarded-For" and "TRUST_PROXY=true" in line["hint"]
    json_request(server.url, "GET", "/healthz")
    server.stop()  # every line read
    assert sum(1 for x in server.lines if x.get("event") == "forwarded_headers_ignored") == 1


def test_no_warning_when_the_proxy_is_trusted(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server({"DYNO": "web.1", "SLUICE_SERVER__TRUST_PROXY": "true"})
    json_request(server.url, "GET", "/api/me", headers={"X-Forwarded-For": "203.0.113.9"})
    server.stop()
    events = {line.get("event") for line in server.lines}
    assert "proxy_not_trusted" not in events and "forwarded_headers_ignored" not in events
