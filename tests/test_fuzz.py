"""Hostile input: malformed, oversized, wrongly typed and wrongly encoded bodies,
odd paths and headers, sent to every endpoint of a running server. Nothing may answer 5xx,
hang or crash it, and every error is the contract's JSON.

Hypothesis drives the mix with a bounded number of examples; the named hostile cases follow
as plain tests so each keeps its own clear 4xx.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support.server import RunningServer, launch
from tests.support.sse import bearer, events, request

ALICE = bearer("tok-alice")
JSON = {**ALICE, "Content-Type": "application/json"}
# Larger than the default so that the message-length check, not the body limit, answers the
# million-character case; the 10 MB body is still over it.
MAX_BODY = 4_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = launch(
        tmp_path_factory.mktemp("data"),
        {
            "SLUICE_LLM__DEMO__WORDS_PER_SECOND": "0",
            "SLUICE_LIMITS__MAX_BODY_BYTES": str(MAX_BODY),
            "SLUICE_LIMITS__MAX_STREAMS_PER_USER": "50",
            "SLUICE_JWT_SECRET": "fuzz-jwt-secret-0123456789abcdefghij",
        },
    )
    yield running
    assert running.process.poll() is None, "the server died"
    running.stop()
    assert '"level": "error"' not in running.output(), "the server logged an error"


def assert_contract(response_status: int, headers: Any, raw: bytes, streamed: bool) -> None:
    assert response_status < 500, raw[:500]
    if response_status >= 400:
        assert headers["Content-Type"].startswith("application/json"), headers
        data = json.loads(raw)
        assert set(data) == {"error"}
        assert isinstance(data["error"]["code"], str) and data["error"]["code"]
        assert isinstance(data["error"]["message"], str) and data["error"]["message"]


def send(
    server: RunningServer, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, bytes]:
    response = request(server.url, method, path, body=body, headers=headers, timeout=5)
    streamed = response.headers.get("Content-Type", "").startswith("text/event-stream")
    if streamed:
        frames = response.read_all()  # must end with exactly one terminal event
        evs = events(frames)
        assert sum(e["type"] in ("complete", "error") for e in evs) == 1
        assert evs[-1]["type"] in ("complete", "error")
        assert not (evs[-1]["type"] == "error" and evs[-1]["code"] == "internal"), evs[-1]
        raw = b""
    else:
        raw = response.body()
    assert_contract(response.status, response.headers, raw, streamed)
    return response.status, raw


# -- strategies -------------------------------------------------------------------------------

segment = st.one_of(
    st.sampled_from(["alice", "bob", "st_x", "s1", "", "..", "%2e%2e", "%ff", "%00", "a" * 300]),
    st.text(max_size=40).map(lambda t: quote(t, safe="")),
)
ENDPOINTS = [
    ("POST", "/api/conversation-stream/{}"),
    ("POST", "/api/conversation/{}"),
    ("GET", "/api/streams/{}"),
    ("POST", "/api/streams/{}/cancel"),
    ("GET", "/api/sessions/{}"),
    ("GET", "/api/sessions/alice/{}"),
    ("DELETE", "/api/sessions/alice/{}"),
    ("GET", "/api/me"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/"),
    ("GET", "/static/{}"),
    ("GET", "/{}"),
]
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
chat_object = st.fixed_dictionaries(
    {"message": st.one_of(st.text(max_size=200), json_value)},
    optional={"session_id": st.one_of(st.text(max_size=70), json_value), "extra": json_value},
)
body = st.one_of(
    st.none(),
    st.binary(max_size=300),
    json_value.map(lambda v: json.dumps(v).encode()),
    chat_object.map(lambda v: json.dumps(v).encode()),
    chat_object.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-16")),
    chat_object.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8") + b"\xff"),
)
content_type = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "APPLICATION/JSON",
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/json; charset=",
    ]
)
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
authorization = st.one_of(
    st.none(),
    st.just("Bearer tok-alice"),
    st.just("Bearer tok-bob"),
    st.just("Bearer "),
    st.just("Basic YWxpY2U6eA=="),
    st.just("Bearer a.b.c"),
    header_text.map(lambda t: f"Bearer {t}"),
    header_text,
)
extra_headers = st.dictionaries(
    st.sampled_from(
        [
            "Last-Event-ID",
            "Origin",
            "Referer",
            "Cookie",
            "X-Forwarded-Proto",
            "Accept",
            "Accept-Encoding",
            "X-Request-ID",
            "Range",
        ]
    ),
    header_text,
    max_size=4,
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
)
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    method_override=st.one_of(
        st.none(), st.sampled_from(["PUT", "PATCH", "OPTIONS", "HEAD", "DELETE", "POST", "GET"])
    ),
    part=segment,
    payload=body,
    ctype=content_type,
    auth=authorization,
    extra=extra_headers,
)
def test_no_input_breaks_the_server(
    server: RunningServer,
    endpoint: tuple[str, str],
    method_override: str | None,
    part: str,
    payload: bytes | None,
    ctype: str | None,
    auth: str | None,
    extra: dict[str, str],
) -> None:
    method, template = endpoint
    method = method_override or method
    path = template.format(part) if "{}" in template else template
    headers = dict(extra)
    if ctype is not None:
        headers["Content-Type"] = ctype
    if auth is not None:
        headers["Authorization"] = auth
    if method in ("GET", "DELETE", "OPTIONS") and payload is not None:
        headers["Content-Length"] = str(len(payload))
    if method == "HEAD":
        response = request(server.url, method, path, headers=headers, timeout=5)
        assert response.status < 500
        response.close()
        return
    send(server, method, path, payload, headers)


# -- the named hostile cases --------------------------------------------------------------------

STREAM = "/api/conversation-stream/alice"


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b'{"message": "\xff\xfe invalid"}', 400, "bad_request"),  # invalid UTF-8
        (b'{"message": "hi \\ud800 there"}', 400, "bad_request"),  # a lone surrogate
        (b'{"message": "a\\u0000b"}', 400, "bad_request"),  # a NUL escaped
        (b'{"message": "a\x00b"}', 400, "bad_request"),  # a raw NUL byte
        (b'{"message": "' + b"x" * 1_000_000 + b'"}', 413, "too_large"),  # a million characters
        (b'{"message": "' + "é".encode() * 1_000_000 + b'"}', 413, "too_large"),
        (b"[" * 1_000_000 + b"]" * 1_000_000, 400, "bad_request"),  # deeply nested JSON
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, 400, "bad_request"),
        (b'{"message": "' + b"x" * (10 * 1024 * 1024) + b'"}', 413, "too_large"),  # 10 MB
    ],
    ids=[
        "utf8",
        "surrogate",
        "nul-escaped",
        "nul-raw",
        "million-chars",
        "million-2-byte-chars",
        "nested-arrays",
        "nested-objects",
        "10MB",
    ],
)
@pytest.mark.parametrize("path", [STREAM, "/api/conversation/alice"])
def test_hostile_bodies_get_a_clear_4xx(
    server: RunningServer, path: str, payload: bytes, status: int, code: str
) -> None:
    got, raw = send(server, "POST", path, payload, JSON)
    assert got == status, raw[:300]
    assert json.loads(raw)["error"]["code"] == code


def test_a_body_that_never_ends_does_not_hold_the_server(server: RunningServer) -> None:
    """A client that promises more body than it sends, then goes: others are still served."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST " + STREAM.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-alice"
            b'\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"mess'
        )
        got, _ = send(server, "GET", "/healthz", None, {})
        assert got == 200
    got, _ = send(server, "POST", STREAM, b'{"message": "still here?"}', JSON)
    assert got == 200


def test_garbage_on_the_socket_gets_a_4xx_or_a_close(server: RunningServer) -> None:
    for garbage in (
        b"\x00\x01\x02\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: \xff\r\nX: " + b"a" * 100_000 + b"\r\n\r\n",
        b"POST /api/me HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(garbage)
            try:
                reply = sock.recv(200)
            except ConnectionResetError:
                reply = b""
            assert not reply.startswith(b"HTTP/1.1 5"), reply
    assert send(server, "GET", "/healthz", None, {})[0] == 200
