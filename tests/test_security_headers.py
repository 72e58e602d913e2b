"""Headers for the page and the API: a CSP with no inline
script, nosniff, Referrer-Policy, frame protection; CORS only for listed origins; the
identity cookie Secure over https, X-Forwarded-Proto trusted only behind a proxy."""

from __future__ import annotations

import pytest

from tests.conftest import StartServer
from tests.support.server import RunningServer
from tests.support.sse import bearer, request

ALICE = bearer("tok-alice")
LISTED = "https://app.example"


def headers_of(server: RunningServer, method: str, path: str, **kwargs: object) -> dict[str, str]:
    response = request(server.url, method, path, **kwargs)  # type: ignore[arg-type]
    response.body()
    return {k.lower(): v for k, v in response.headers.items()}


@pytest.mark.parametrize(
    ("path", "page"),
    [
        ("/", True),
        ("/static/js/app.js", True),
        ("/static/nothing.js", True),
        ("/api/me", False),
        ("/api/sessions/alice", False),
        ("/healthz", False),
        ("/nowhere", False),
    ],
)
def test_every_response_has_the_safety_headers(
    demo_server: RunningServer, path: str, page: bool
) -> None:
    got = headers_of(demo_server, "GET", path, headers=ALICE)
    assert got["x-content-type-options"] == "nosniff"
    assert got["referrer-policy"] == "same-origin"
    assert got["x-frame-options"] == "DENY"
    csp = got["content-security-policy"]
    directives = dict(
        [*part.split(" ", 1), ""][:2] for part in (d.strip() for d in csp.split(";")) if part
    )
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    if page:
        assert directives["script-src"] == "'self'"
    else:
        assert directives["default-src"] == "'none'"
    # CORS is off unless configured: not a single CORS header.
    assert not any(name.startswith("access-control-") for name in got)


def test_cors_off_by_default(demo_server: RunningServer) -> None:
    got = headers_of(demo_server, "GET", "/api/me", headers={**ALICE, "Origin": LISTED})
    assert not any(name.startswith("access-control-") for name in got)
    preflight = request(
        demo_server.url,
        "OPTIONS",
        "/api/conversation-stream/alice",
        headers={"Origin": LISTED, "Access-Control-Request-Method": "POST"},
    )
    preflight.body()
    assert preflight.status == 405
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_cors_for_listed_origins_only(start_server: StartServer) -> None:
    server = start_server({"SLUICE_SERVER__CORS_ORIGINS": f"{LISTED},https://other.example"})
    got = headers_of(server, "GET", "/api/me", headers={**ALICE, "Origin": LISTED})
    assert got["access-control-allow-origin"] == LISTED
    assert "Origin" in got["vary"]
    assert "access-control-allow-credentials" not in got  # bearer tokens, never the cookie
    assert "x-stream-id" in got["access-control-expose-headers"].lower()
    # Errors carry it too, so the calling page can read them.
    got = headers_of(server, "GET", "/api/sessions/bob", headers={**ALICE, "Origin": LISTED})
    assert got["access-control-allow-origin"] == LISTED

    preflight = request(
        server.url,
        "OPTIONS",
        "/api/conversation-stream/alice",
        headers={
            "Origin": LISTED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, last-event-id",
        },
    )
    assert preflight.body() == b""
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == LISTED
    assert preflight.headers["Access-Control-Allow-Methods"] == "POST"
    allowed = {
        h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert allowed == {"authorization", "content-type", "last-event-id", "x-session-id"}
    preflight = request(server.url, "OPTIONS", "/api/sessions/alice/s1", headers={"Origin": LISTED})
    preflight.body()
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET, PATCH, DELETE"

    # An origin that is not listed gets no CORS headers and no preflight.
    evil = "https://evil.example"
    got = headers_of(server, "GET", "/api/me", headers={**ALICE, "Origin": evil})
    assert "access-control-allow-origin" not in got
    preflight = request(server.url, "OPTIONS", "/api/me", headers={"Origin": evil})
    preflight.body()
    assert preflight.status == 405 and "Access-Control-Allow-Origin" not in preflight.headers


def cookie_header(server: RunningServer, headers: dict[str, str]) -> str:
    response = request(server.url, "GET", "/", headers=headers)
    response.body()
    return response.headers["Set-Cookie"]


def test_cookie_flags_and_forwarded_proto(start_server: StartServer) -> None:
    direct = start_server()
    https = {"X-Forwarded-Proto": "https"}
    # Without trust_proxy the header is anyone's to send: ignored.
    for headers in ({}, https):
        set_cookie = cookie_header(direct, headers)
        assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
        assert "Secure" not in set_cookie

    proxied = start_server({"SLUICE_SERVER__TRUST_PROXY": "true"})
    set_cookie = cookie_header(proxied, https)
    assert "Secure" in set_cookie and "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    assert "Secure" not in cookie_header(proxied, {"X-Forwarded-Proto": "http"})
    assert "Secure" not in cookie_header(proxied, {})
