"""The README's tools section cannot drift: its blocks are files of examples/tools, and the
server started with exactly its two config blocks (read from the README) offers the example
tool plugin and the example MCP server's tool (a real MCP server, written with the ``mcp``
SDK, started over stdio from the command the README gives) to the model, and runs both."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.conftest import StartServer
from tests.fakes.llm_upstreams import Reply
from tests.fakes.threaded import ThreadedFakes
from tests.support.packages import install_into
from tests.support.server import ROOT
from tests.support.sse import bearer, events, json_request, start_stream

README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- file: (?P<file>examples/tools/\S+) -->\n```\w*\n(?P<body>.*?)```", re.S)
SPEC = json.loads((ROOT / "server" / "openapi.json").read_text(encoding="utf-8"))
TOOL = "examples/tools/word_count.py"
ENABLE = "examples/tools/enable.toml"
MCP = "examples/tools/mcp.toml"


def readme_blocks() -> dict[str, str]:
    return {m["file"]: m["body"] for m in BLOCK.finditer(README.read_text(encoding="utf-8"))}


def test_every_block_is_a_file_of_the_examples() -> None:
    blocks = readme_blocks()
    assert set(blocks) == {TOOL, ENABLE, MCP}
    for file, body in blocks.items():
        assert (ROOT / file).read_text(encoding="utf-8") == body, f"{file} differs from README"
    assert len(blocks[TOOL].splitlines()) <= 10  # the README promises a short plugin
    assert len(blocks[MCP].splitlines()) == 3  # and an MCP server in three lines


@pytest.fixture(scope="module")
def installed_tool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_into(tmp_path_factory.mktemp("tools-site"), ROOT / "examples" / "tools")


def test_the_readme_config_offers_and_runs_both_tools(
    start_server: StartServer, fakes: ThreadedFakes, installed_tool: Path, tmp_path: Path
) -> None:
    blocks = readme_blocks()
    config = tmp_path / "config.toml"
    config.write_text(blocks[ENABLE] + "\n" + blocks[MCP], encoding="utf-8")
    fakes.openai.script(
        Reply(
            text=[],
            tool_calls=[
                ("c1", "word_count", '{"text": "three small words"}'),
                ("c2", "celsius_to_fahrenheit", '{"celsius": 100}'),
            ],
        ),
        Reply(text=["Done."]),
    )
    server = start_server(
        {
            "SLUICE_CONFIG": str(config),
            "PYTHONPATH": f"{installed_tool}:{ROOT}",
            "SLUICE_LLM__PROVIDERS": "openai",
            "OPENAI_API_KEY": "sk-test-0123456789",
            "OPENAI_BASE_URL": fakes.openai.base_url,
        }
    )
    status, ready, _ = json_request(server.url, "GET", "/readyz")
    assert status == 200 and ready is not None
    assert ready["mcp"] == [{"name": "units", "ready": True, "problem": None}]
    jsonschema.validate(
        ready, {"$ref": "#/components/schemas/Ready", "components": SPEC["components"]}
    )

    stream = start_stream(server.url, "How many words, and how hot is 100 °C?")
    seen: list[dict[str, Any]] = []
    for frame in stream:
        if frame.data:
            seen.append(frame.data)
            if frame.data["type"] == "tool_call" and frame.data["call_id"] == "c2":
                break
    calls = {e["call_id"]: e for e in seen if e["type"] == "tool_call"}
    assert calls["c1"]["approval"] == "none"  # a plugin's tool, not approved unless it asks
    assert calls["c2"]["approval"] == "required"  # require_approval = true
    stream_id = seen[0]["stream_id"]
    status, _, _ = json_request(
        server.url,
        "POST",
        f"/api/streams/{stream_id}/tools/c2",
        body={"approve": True},
        headers=bearer("tok-alice"),
    )
    assert status == 204
    evs = seen + events(stream.read_all())
    results = {e["call_id"]: e for e in evs if e["type"] == "tool_result"}
    assert results["c1"]["ok"] and results["c1"]["content"] == "3"
    assert results["c2"]["ok"] and json.loads(results["c2"]["content"]) == 212.0
    assert evs[-1]["type"] == "complete" and evs[-1]["tool_calls"] == 2
    stream_events = SPEC["paths"]["/api/conversation-stream/{user_id}"]["post"]["responses"]["200"]
    event_schema = stream_events["content"]["text/event-stream"]["x-event-schema"]
    for event in evs:
        jsonschema.validate(event, {**event_schema, "components": SPEC["components"]})

    first, second = list(fakes.openai.requests)
    offered = {t["function"]["name"] for t in first.body["tools"]}
    assert offered == {"current_time", "word_count", "celsius_to_fahrenheit"}
    answered = {
        m["tool_call_id"]: m["content"] for m in second.body["messages"] if m["role"] == "tool"
    }
    assert answered["c1"] == "3"
