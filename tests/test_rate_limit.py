"""The rate_limit stage: token bucket per user and per address."""

from __future__ import annotations

from tests.conftest import StartServer
from tests.support.sse import bearer, json_request, request


def test_over_the_limit_the_stream_ends_with_rate_limited(start_server: StartServer) -> None:
    server = start_server(
        {"SLUICE_RATE_LIMIT__BURST": "2", "SLUICE_RATE_LIMIT__REQUESTS_PER_MINUTE": "1"}
    )
    alice = bearer("tok-alice")

    def stream() -> list[dict]:  # type: ignore[type-arg]
        frames = request(
            server.url,
            "POST",
            "/api/conversation-stream/alice",
            body={"message": "hi"},
            headers=alice,
        ).read_all()
        return [f.data for f in frames if f.data]

    assert stream()[-1]["type"] == "complete"
    assert stream()[-1]["type"] == "complete"
    refused = stream()
    error = refused[-1]
    assert error["type"] == "error" and error["code"] == "rate_limited"
    assert error["retryable"] is True and 50 <= error["retry_after"] <= 60
    assert "Try again in" in error["message"]
    # Refused at the first stage: no model was asked.
    assert not any(e["type"] == "chunk" for e in refused)

    status, body, headers = json_request(
        server.url, "POST", "/api/conversation/alice", body={"message": "hi"}, headers=alice
    )
    assert status == 429 and body is not None
    assert body["error"]["code"] == "rate_limited"
    assert int(headers["Retry-After"]) >= 50

    # The address bucket is shared too: bob, from the same address, is refused as well.
    status, body, _ = json_request(
        server.url,
        "POST",
        "/api/conversation/bob",
        body={"message": "hi"},
        headers=bearer("tok-bob"),
    )
    assert status == 429
