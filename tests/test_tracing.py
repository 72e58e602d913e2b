"""Traces: the real server exporting to a real OTLP/HTTP receiver (protobuf decoded with
``opentelemetry-proto``), configured by the SDK's own variables; and, without them, no trace
code loaded at all.

One turn with a tool round through the fake OpenAI upstream: the client's ``traceparent``
is continued, every stage, provider call and tool call is a span of that one trace, the
upstream is sent a ``traceparent`` of the same trace, and log lines carry the trace id.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.observability.tracing import tracing_requested
from tests.conftest import StartServer
from tests.fakes.llm_upstreams import Reply
from tests.fakes.threaded import ThreadedFakes
from tests.support.otlp_receiver import OTLPReceiver, ReceivedSpan, otlp_receiver
from tests.support.server import ROOT, RunningServer
from tests.support.sse import events, request
from tests.support.tool_package import ENABLED_TOOLS, write_tool_package

ROUTE = "/api/conversation-stream/{user_id}"


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with otlp_receiver() as running:
        yield running


def _server(
    start_server: StartServer, fakes: ThreadedFakes, site: Path, **env: str
) -> RunningServer:
    return start_server(
        {
            "PYTHONPATH": write_tool_package(site),
            "SLUICE_TOOLS__ENABLED": ENABLED_TOOLS,
            "SLUICE_LLM__PROVIDERS": "openai",
            "OPENAI_API_KEY": "sk-test-0123456789",
            "OPENAI_BASE_URL": fakes.openai.base_url,
            **env,
        }
    )


def _turn(server: RunningServer, headers: dict[str, str]) -> list[dict[str, Any]]:
    stream = request(
        server.url,
        "POST",
        "/api/conversation-stream/alice",
        body={"message": "Use your tools"},
        headers={"Authorization": "Bearer tok-alice", **headers},
    )
    assert stream.status == 200
    return events(stream.read_all())


def _script_tool_round(fakes: ThreadedFakes) -> None:
    fakes.openai.script(
        Reply(
            text=["Let me check. "],
            tool_calls=[
                ("call_a", "echo", '{"text": "hi"}'),
                ("call_b", "explode", "{}"),
            ],
        ),
        Reply(text=["Done", "."]),
    )


def _one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, f"{name}: {len(found)} spans in {[s.name for s in spans]}"
    return found[0]


def test_a_turn_is_one_trace_from_the_client_through_stages_model_and_tools(
    start_server: StartServer, fakes: ThreadedFakes, receiver: OTLPReceiver, tmp_path: Path
) -> None:
    _script_tool_round(fakes)
    server = _server(
        start_server,
        fakes,
        tmp_path / "site",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="50",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment.name=test",
    )
    trace_id = secrets.token_hex(16)
    client_span = secrets.token_hex(8)
    evs = _turn(server, {"traceparent": f"00-{trace_id}-{client_span}-01"})
    assert evs[-1]["type"] == "complete"

    def whole(spans: list[ReceivedSpan]) -> bool:
        names = {span.name for span in spans}
        return "stage rate_limit" in names and f"POST {ROUTE}" in names

    spans = [s for s in receiver.wait_for(whole) if s.trace_id == trace_id]

    post = _one(spans, f"POST {ROUTE}")
    assert post.kind == "server" and post.parent_span_id == client_span
    assert post.attributes["http.route"] == ROUTE
    assert post.attributes["http.request.method"] == "POST"
    assert post.attributes["http.response.status_code"] == 200
    assert post.resource["service.name"] == "sluice"  # OTEL_SERVICE_NAME's default
    assert post.resource["deployment.environment.name"] == "test"  # the SDK read its variable

    # The request's span is the turn's root: a turn has no span of its own.
    assert not any(span.name == "turn" for span in spans)
    assert post.attributes["sluice.outcome"] == "complete" and not post.error
    assert post.attributes["gen_ai.conversation.id"] == evs[-1]["session_id"]
    assert post.attributes["sluice.stream_id"] == evs[0]["stream_id"]

    # Stages in the configured order, but the quiet usage stage (bookkeeping, no span of
    # its own): session is a wrapper, so the stages after it are its children.
    stages = {s.attributes["sluice.stage"]: s for s in spans if s.name.startswith("stage ")}
    assert set(stages) == {"rate_limit", "session", "intent", "context", "llm"}
    assert stages["rate_limit"].parent_span_id == post.span_id
    assert stages["session"].parent_span_id == post.span_id
    for inner in ("intent", "context", "llm"):
        assert stages[inner].parent_span_id == stages["session"].span_id
    llm = stages["llm"]

    first, second = fakes.openai.requests
    calls = [s for s in spans if s.name.startswith("chat ")]
    assert len(calls) == 2
    for call in calls:
        assert call.kind == "client" and call.parent_span_id == llm.span_id
        attributes = call.attributes
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == attributes["gen_ai.system"] == "openai"
        assert attributes["gen_ai.request.model"] == first.body["model"]
        assert call.name == f"chat {first.body['model']}"
        assert attributes["gen_ai.response.model"] == first.body["model"]
        assert attributes["gen_ai.usage.input_tokens"] == 11  # the fake's usage frame
        assert attributes["server.address"] == "127.0.0.1"
    finishes = sorted(c.attributes["gen_ai.response.finish_reasons"][0] for c in calls)
    assert finishes == ["stop", "tool_calls"]
    outputs = sorted(c.attributes["gen_ai.usage.output_tokens"] for c in calls)
    assert outputs == [1, 2]  # one text frame, then two

    # Each request upstream carried a traceparent: this trace, its own call's span.
    sent = [r.headers.get("Traceparent") or r.headers.get("traceparent") for r in (first, second)]
    assert all(value is not None for value in sent)
    parents = [value.split("-") for value in sent if value is not None]
    assert all(part[1] == trace_id for part in parents)
    assert sorted(part[2] for part in parents) == sorted(call.span_id for call in calls)

    tools = {s.attributes["gen_ai.tool.name"]: s for s in spans if s.name.startswith("execute_")}
    assert set(tools) == {"echo", "explode"}
    for name, call_id in (("echo", "call_a"), ("explode", "call_b")):
        span = tools[name]
        assert span.name == f"execute_tool {name}" and span.parent_span_id == llm.span_id
        assert span.attributes["gen_ai.operation.name"] == "execute_tool"
        assert span.attributes["gen_ai.tool.call.id"] == call_id
    assert not tools["echo"].error
    assert tools["explode"].error and tools["explode"].attributes["error.type"] == "failed"

    # The log lines of the request and of the turn carry the trace id.
    finished = server.wait_for_log("turn_finished")
    assert finished["trace_id"] == trace_id
    access = server.wait_for_log("request", route=ROUTE)
    assert access["trace_id"] == trace_id and access["span_id"] == post.span_id


def test_a_request_without_traceparent_starts_a_trace_of_its_own(
    start_server: StartServer, fakes: ThreadedFakes, receiver: OTLPReceiver, tmp_path: Path
) -> None:
    """And a failed provider call is a failed span, followed by its fallback's."""
    fakes.openai.script(Reply(status=500), Reply(text=["Fine."]))
    server = _server(
        start_server,
        fakes,
        tmp_path / "site",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=receiver.endpoint + "/v1/traces",
        OTEL_BSP_SCHEDULE_DELAY="50",
        OTEL_SERVICE_NAME="chat-frontdoor",
    )
    evs = _turn(server, {})
    assert evs[-1]["type"] == "complete"
    spans = receiver.wait_for(lambda got: any(s.name == f"POST {ROUTE}" for s in got))
    post = _one(spans, f"POST {ROUTE}")
    assert post.parent_span_id == "" and post.resource["service.name"] == "chat-frontdoor"
    calls = [s for s in spans if s.name.startswith("chat ")]
    failed, answered = sorted(calls, key=lambda s: s.attributes["sluice.mode"] != "stream")
    assert failed.error and failed.attributes["error.type"] == "unavailable"
    assert failed.attributes["sluice.mode"] == "stream"
    assert not answered.error and answered.attributes["sluice.mode"] == "non-stream"
    assert {s.trace_id for s in spans if s.name != "GET /"} == {post.trace_id}


def test_an_unsampled_turn_exports_nothing_but_keeps_its_trace_id_upstream_and_in_logs(
    start_server: StartServer, fakes: ThreadedFakes, receiver: OTLPReceiver, tmp_path: Path
) -> None:
    """A turn the sampler leaves out (here the client's traceparent says not sampled) makes
    no span, yet the trace goes on: upstream gets its traceparent, the log lines its id."""
    fakes.openai.script(Reply(text=["Not ", "traced."]), Reply(text=["Traced."]))
    server = _server(
        start_server,
        fakes,
        tmp_path / "site",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="50",
    )
    unsampled = secrets.token_hex(16)
    evs = _turn(server, {"traceparent": f"00-{unsampled}-{secrets.token_hex(8)}-00"})
    assert evs[-1]["type"] == "complete"
    (upstream,) = fakes.openai.requests
    sent = upstream.headers.get("Traceparent") or upstream.headers.get("traceparent")
    assert sent is not None
    version, trace_id, _span_id, flags = sent.split("-")
    assert (version, trace_id, flags) == ("00", unsampled, "00")
    assert server.wait_for_log("turn_finished")["trace_id"] == unsampled
    assert server.wait_for_log("request", route=ROUTE)["trace_id"] == unsampled

    # A sampled turn after it: once its spans are in, the first turn's (ended before it
    # began, so queued before it) would be too.
    sampled = secrets.token_hex(16)
    evs = _turn(server, {"traceparent": f"00-{sampled}-{secrets.token_hex(8)}-01"})
    assert evs[-1]["type"] == "complete"
    spans = receiver.wait_for(
        lambda got: any(s.name == f"POST {ROUTE}" and s.trace_id == sampled for s in got)
    )
    assert {s.trace_id for s in spans if s.name != "GET /"} == {sampled}
    assert any(s.name == "stage llm" for s in spans)


def test_without_otel_variables_no_trace_code_is_loaded(
    start_server: StartServer, fakes: ThreadedFakes, tmp_path: Path
) -> None:
    """Off costs nothing: the server's own import log (``-X importtime``) shows neither the
    SDK's tracing nor ours, through a whole turn with a tool round; nothing is sent upstream
    and no log line has a trace id."""
    _script_tool_round(fakes)
    server = _server(start_server, fakes, tmp_path / "site", PYTHONPROFILEIMPORTTIME="1")
    evs = _turn(server, {})
    assert evs[-1]["type"] == "complete"
    server.wait_for_log("turn_finished")
    server.stop()
    imported = [
        line.rsplit("|", 1)[1].strip()
        for line in server.raw_lines
        if line.startswith("import time:")
    ]
    assert "server.app" in imported and "server.llm.chain" in imported  # the log is whole
    traced = [
        name
        for name in imported
        if name.startswith(("server.observability.otel", "opentelemetry.sdk.trace"))
        or name.startswith("opentelemetry.exporter")
    ]
    assert traced == []
    assert all("traceparent" not in {k.lower() for k in r.headers} for r in fakes.openai.requests)
    assert not any("trace_id" in line for line in server.lines)


def test_asked_for_traces_without_the_sdk_the_server_says_so_and_serves(
    start_server: StartServer, tmp_path: Path
) -> None:
    """The extra not installed: one warning naming the install command, and answers as
    usual. (A ``sitecustomize`` hides the SDK from this one server, as if it were absent.)"""
    site = tmp_path / "no-sdk"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        'import sys\nsys.modules["opentelemetry.sdk"] = None  # import fails: not installed\n'
    )
    server = start_server(
        {"PYTHONPATH": str(site), "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    )
    warning = server.wait_for_log("tracing_unavailable")
    assert "pip install 'sluice[otel]'" in warning["hint"]
    evs = _turn(server, {"traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"})
    assert evs[-1]["type"] == "complete"
    assert not any("trace_id" in line for line in server.lines)


def _documented_environment() -> dict[str, str]:
    """The ``export`` lines of the block docs/operations.md gives for a collector."""
    page = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- traces-env -->\n```sh\n(.*?)```", page, re.S)
    assert block is not None
    lines = block[1].splitlines()
    assert lines[-1] == "python -m server"
    exports = [line.split("#")[0].strip() for line in lines if line.startswith("export ")]
    return dict(line.removeprefix("export ").split("=", 1) for line in exports)


def test_the_documented_collector_settings_send_sampled_traces(
    start_server: StartServer, receiver: OTLPReceiver
) -> None:
    """The operations guide's variables, as written, with the collector's address swapped
    for the receiver's: a trace the caller sampled is exported under the documented name."""
    environ = _documented_environment()
    assert environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT") == "http://localhost:4318"
    server = start_server(
        {
            **environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
    )
    trace_id = secrets.token_hex(16)
    evs = _turn(server, {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})
    assert evs[-1]["type"] == "complete"
    spans = receiver.wait_for(lambda got: any(s.trace_id == trace_id for s in got))
    first = next(s for s in spans if s.trace_id == trace_id)
    assert first.resource["service.name"] == environ["OTEL_SERVICE_NAME"] == "sluice-prod"


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SERVICE_NAME": "sluice"}, False),  # a name alone asks for nothing
    ],
)
def test_the_sdk_variables_turn_traces_on(environ: dict[str, str], on: bool) -> None:
    assert tracing_requested(environ) is on
