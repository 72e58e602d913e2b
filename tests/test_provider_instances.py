"""Providers are configured instances: several of one type in the fallback chain, each with
its own base URL, key and model, each named by its table in events, metrics and logs."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from server.config import load_settings
from server.llm.transport import provider_context
from server.registry import load_providers
from tests.conftest import StartServer
from tests.fakes.llm_upstreams import FakeOpenAI, Reply
from tests.fakes.threaded import ThreadedFakes
from tests.support.server import ROOT
from tests.support.sse import events, request, start_stream

DOC = (ROOT / "docs" / "providers.md").read_text(encoding="utf-8")


def documented_config() -> str:
    marker = "<!-- tested: tests/test_provider_instances.py -->\n```toml\n"
    start = DOC.index(marker) + len(marker)
    return DOC[start : DOC.index("```", start)]


def test_the_documented_instances_are_built_as_documented(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(documented_config(), encoding="utf-8")
    environ = {
        "SLUICE_CONFIG": str(tmp_path / "config.toml"),
        "SLUICE_DATA_DIR": str(tmp_path),
        "OPENROUTER_API_KEY": "sk-or-router-key",
        "OPENAI_API_KEY": "sk-openai-only",
    }
    settings = load_settings(environ)
    providers, problems = load_providers(
        settings, lambda name: provider_context(environ, name=name)
    )
    try:
        assert problems == []
        assert [p.name for p in providers] == ["openrouter", "ollama"]
        router, ollama = providers
        assert router.base_url == "https://openrouter.ai/api/v1"  # type: ignore[attr-defined]
        assert router.model == "meta-llama/llama-3.1-70b-instruct"
        assert router._key == "sk-or-router-key"  # type: ignore[attr-defined]
        assert ollama.base_url == "http://localhost:11434/v1"  # type: ignore[attr-defined]
        # OpenAI's key goes to no other server.
        assert ollama._key is None  # type: ignore[attr-defined]
    finally:
        for provider in providers:
            asyncio.run(provider.aclose())


def test_two_openai_compatible_instances_fall_back_by_name(
    fakes: ThreadedFakes, start_server: StartServer, tmp_path: Path
) -> None:
    local = FakeOpenAI()
    fakes.run(local.start())
    try:
        fakes.openai.script(Reply(status=500), Reply(status=500))  # stream, then plain
        local.script(Reply(text=["From ", "the local ", "model."]))
        original = (ROOT / "config.toml").read_text(encoding="utf-8")
        config = tmp_path / "config.toml"
        config.write_text(
            original
            + f'\n[llm.router]\ntype = "openai"\nbase_url = "{fakes.openai.base_url}"\n'
            + 'api_key_env = "ROUTER_KEY"\nmodel = "big-model"\n'
            + f'\n[llm.local]\ntype = "openai"\nbase_url = "{local.base_url}"\n'
            + 'model = "small-model"\n',
            encoding="utf-8",
        )
        server = start_server(
            {
                "SLUICE_CONFIG": str(config),
                "SLUICE_PROVIDERS": "router,local",
                "ROUTER_KEY": "sk-router-secret",
            }
        )
        stream = start_stream(server.url, "Hello")
        evs = events(stream.read_all())
        complete = evs[-1]
        assert complete["type"] == "complete"
        assert complete["provider"] == "local" and complete["model"] == "small-model"
        assert complete["fallback"] is True
        # Each instance got its own key (or none) and its own model.
        assert fakes.openai.requests[0].headers["Authorization"] == "Bearer sk-router-secret"
        assert fakes.openai.requests[0].body["model"] == "big-model"
        assert local.requests[0].body["model"] == "small-model"
        assert "sk-router-secret" not in local.requests[0].headers.get("Authorization", "")
        # Metrics and logs name the instances.
        scrape = request(server.url, "GET", "/metrics").body().decode()
        assert re.search(r'sluice_time_to_first_chunk_seconds_count\{provider="local"\} 1', scrape)
        assert re.search(r'sluice_provider_circuit_state\{provider="router"\}', scrape)
        line = server.wait_for_log("turn_finished")
        assert line["provider"] == "local"
    finally:
        fakes.run(local.stop())
