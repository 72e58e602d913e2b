"""``GET /metrics`` after real turns: the counters and histograms move, with bounded labels.
Scrapes are parsed with prometheus_client's own parser, as Prometheus would."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import StartServer
from tests.fakes.llm_upstreams import Reply
from tests.fakes.threaded import ThreadedFakes, threaded_fakes
from tests.support.server import RunningServer
from tests.support.sse import bearer, events, request, start_stream

ALICE = bearer("tok-alice")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

# Every label name the server may use; anything else would be a new (maybe unbounded) one.
ALLOWED_LABELS = {
    *("outcome", "code", "provider", "stage", "kind", "cause", "mode", "reason", "le"),
    # Usage: model and tool names (at most a hundred of each), budget groups (configured).
    *("model", "tool", "group", "estimated", "priced"),
}


def scrape(server: RunningServer) -> tuple[str, Samples]:
    response = request(server.url, "GET", "/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.body().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert set(sample.labels) <= ALLOWED_LABELS, sample
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_until(server: RunningServer, check: Callable[[Samples], bool]) -> Samples:
    """Scrape until ``check`` holds (readers close when the server notices, not before)."""
    deadline = time.monotonic() + 10
    while True:
        _, samples = scrape(server)
        if check(samples):
            return samples
        assert time.monotonic() < deadline, "metrics did not reach the expected state"


def stream(server: RunningServer, message: str = "hello") -> tuple[str, list[dict[str, object]]]:
    response = start_stream(server.url, message)
    assert response.status == 200
    return response.headers["X-Stream-Id"], events(response.read_all())


def test_turns_readers_stages_and_rate_limits_are_counted(start_server: StartServer) -> None:
    server = start_server(
        {
            "SLUICE_RATE_LIMIT__BURST": "2",
            "SLUICE_RATE_LIMIT__REQUESTS_PER_MINUTE": "1",
            "SLUICE_LLM__DEMO__WORDS_PER_SECOND": "40",
        }
    )
    _, before = scrape(server)
    assert value(before, "sluice_streams_open") == 0
    assert value(before, "sluice_provider_circuit_state", provider="demo") == 0  # closed

    # 1: a complete turn, then resumed from its third event.
    stream_id, first = stream(server)
    assert first[-1]["type"] == "complete"
    resumed = request(
        server.url, "GET", f"/api/streams/{stream_id}", headers={**ALICE, "Last-Event-ID": "3"}
    )
    assert events(resumed.read_all())[-1]["type"] == "complete"

    # 2: the client leaves after the first chunk; the turn goes on (on_disconnect=continue).
    leaving = request(
        server.url,
        "POST",
        "/api/conversation-stream/alice",
        body={"message": "tell me a long story"},
        headers=ALICE,
    )
    leaving.until(lambda frame: frame.type == "chunk")
    leaving.close()
    # Open readers while it runs, and a disconnect counted once the server notices.
    wait_until(
        server,
        lambda s: (
            value(s, "sluice_stream_disconnects_total", cause="client_gone") == 1
            and value(s, "sluice_turns_total", outcome="complete") == 2
        ),
    )

    # 3: over the rate limit.
    _, refused = stream(server)
    assert refused[-1]["code"] == "rate_limited"

    wait_until(server, lambda s: value(s, "sluice_turns_running") == 0)
    text, samples = scrape(server)
    assert value(samples, "sluice_turns_total", outcome="complete") == 2
    assert value(samples, "sluice_turns_total", outcome="rate_limited") == 1
    assert value(samples, "sluice_rate_limit_rejections_total", code="rate_limited") == 1
    assert value(samples, "sluice_streams_open") == 0
    assert value(samples, "sluice_stream_readers_total", kind="new") == 3
    assert value(samples, "sluice_stream_readers_total", kind="resume") == 1
    assert value(samples, "sluice_stream_resumes_total") == 1
    assert value(samples, "sluice_stream_disconnects_total", cause="client_gone") == 1
    # Time to first chunk and turn duration by provider; the refused turn asked none.
    assert value(samples, "sluice_time_to_first_chunk_seconds_count", provider="demo") == 2
    assert value(samples, "sluice_turn_duration_seconds_count", provider="demo") == 2
    assert value(samples, "sluice_turn_duration_seconds_count", provider="none") == 1
    assert value(samples, "sluice_time_to_first_chunk_seconds_sum", provider="demo") > 0
    # Every stage timed; the rate limiter ran for all three, the model for two.
    assert value(samples, "sluice_stage_duration_seconds_count", stage="rate_limit") == 3
    for stage in ("session", "intent", "context", "llm"):
        assert value(samples, "sluice_stage_duration_seconds_count", stage=stage) == 2
    assert value(samples, "sluice_llm_attempts_total", provider="demo", mode="stream") == 2
    assert value(samples, "sluice_llm_call_duration_seconds_count", provider="demo", mode="stream")
    # Bytes and frames written to clients: at least the complete turn and its replay.
    assert value(samples, "sluice_events_sent_total") > len(first)
    assert value(samples, "sluice_sent_bytes_total") > 1000
    # Bounded labels: no user id, no stream id, no hashed user anywhere in the scrape.
    label_values = {v for _, labels in samples for _, v in labels}
    assert not any("alice" in v or v.startswith("st_") for v in label_values), label_values
    turn_line = server.wait_for_log("turn_finished", stream_id=stream_id)
    assert stream_id not in text and turn_line["user"] not in text and "alice" not in text


@pytest.fixture
def fakes() -> Iterator[ThreadedFakes]:
    with threaded_fakes() as f:
        yield f


def test_fallbacks_interruptions_and_circuits_are_counted(
    start_server: StartServer, fakes: ThreadedFakes
) -> None:
    fakes.openai.default = Reply(status=500)
    server = start_server(
        {
            "SLUICE_LLM__PROVIDERS": "openai,gemini",
            "OPENAI_API_KEY": "sk-metrics-secret-0123456789",
            "OPENAI_BASE_URL": fakes.openai.base_url,
            "GEMINI_API_KEY": "AIzaMETRICSSECRET0123456789abcdef",
            "GEMINI_BASE_URL": fakes.gemini.url,
            "SLUICE_LLM__CIRCUIT_FAILURES": "1",
            "SLUICE_LLM__CIRCUIT_COOLDOWN_SECONDS": "600",
        }
    )
    _, first = stream(server)
    assert first[-1]["type"] == "complete" and first[-1]["provider"] == "gemini"
    # openai's circuit is open now: the next turn skips it.
    _, second = stream(server)
    assert second[-1]["provider"] == "gemini"
    _, samples = scrape(server)
    assert value(samples, "sluice_provider_circuit_state", provider="openai") == 2  # open
    assert value(samples, "sluice_provider_circuit_state", provider="gemini") == 0  # closed
    fakes.gemini.default = Reply(text=["Partial ", "answer ", "lost"], cut_at=2)
    _, third = stream(server)
    assert third[-1]["code"] == "upstream_interrupted"

    text, samples = scrape(server)
    fallbacks = "sluice_llm_fallbacks_total"
    assert value(samples, fallbacks, provider="openai", reason="unavailable") == 1
    assert value(samples, fallbacks, provider="openai", reason="circuit_open") == 2
    # A failure after text counts against the circuit too (one failure opens it here).
    assert value(samples, "sluice_provider_circuit_state", provider="gemini") == 2
    assert value(samples, "sluice_llm_attempts_total", provider="openai", mode="stream") == 1
    assert value(samples, "sluice_llm_attempts_total", provider="openai", mode="non-stream") == 1
    assert value(samples, "sluice_llm_interruptions_total", provider="gemini", reason="unavailable")
    assert value(samples, "sluice_turns_total", outcome="complete") == 2
    assert value(samples, "sluice_turns_total", outcome="upstream_interrupted") == 1
    # The interrupted turn still counts its time to first chunk, under the provider that sent it.
    assert value(samples, "sluice_time_to_first_chunk_seconds_count", provider="gemini") == 3
    assert "sk-metrics" not in text and "AIza" not in text
