"""Identity (cookie, bearer token) and bad input: the contract's status codes and JSON."""

from __future__ import annotations

import http.cookies
import json

import pytest

from tests.support.server import RunningServer
from tests.support.sse import bearer, json_request, request

ALICE = bearer("tok-alice")
STREAM = "/api/conversation-stream/alice"


def cookie_for(server: RunningServer) -> str:
    page = request(server.url, "GET", "/")
    assert page.status == 200
    page.body()
    set_cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    assert "Secure" not in set_cookie  # plain http here
    jar = http.cookies.SimpleCookie(set_cookie)
    return f"sluice_uid={jar['sluice_uid'].value}"


def test_browser_identity_from_the_cookie(demo_server: RunningServer) -> None:
    cookie = cookie_for(demo_server)
    status, me, _ = json_request(demo_server.url, "GET", "/api/me", headers={"Cookie": cookie})
    assert status == 200 and me is not None and me["user_id"].startswith("u_")
    user = me["user_id"]
    origin = {"Cookie": cookie, "Origin": demo_server.url}
    status, data, _ = json_request(
        demo_server.url, "POST", f"/api/conversation/{user}", body={"message": "hi"}, headers=origin
    )
    assert status == 200 and data is not None and data["provider"] == "demo"
    # Without an Origin of this host the same cookie may not write (cross-site forgery).
    for headers in ({"Cookie": cookie}, {"Cookie": cookie, "Origin": "https://evil.example"}):
        status, body, _ = json_request(
            demo_server.url,
            "POST",
            f"/api/conversation/{user}",
            body={"message": "hi"},
            headers=headers,
        )
        assert status == 403 and body is not None and body["error"]["code"] == "forbidden"


def test_me_hands_out_a_cookie_to_a_new_browser(demo_server: RunningServer) -> None:
    response = request(demo_server.url, "GET", "/api/me")
    data = json.loads(response.body())
    assert data["user_id"].startswith("u_") and "sluice_uid=" in response.headers["Set-Cookie"]


def test_a_tampered_cookie_is_no_identity(demo_server: RunningServer) -> None:
    cookie = cookie_for(demo_server)
    name, _, value = cookie.partition("=")
    tampered = f"{name}={value[:-3]}abc"
    status, _, _ = json_request(
        demo_server.url, "GET", "/api/sessions/alice", headers={"Cookie": tampered}
    )
    assert status == 401


@pytest.mark.parametrize(
    ("headers", "path", "status"),
    [
        ({}, STREAM, 401),
        (bearer("wrong"), STREAM, 401),
        ({"Authorization": "Basic YWxpY2U6eA=="}, STREAM, 401),
        (bearer("tok-bob"), STREAM, 403),
        (ALICE, "/api/conversation/bob", 403),
    ],
)
def test_who_may_start_a_turn(
    demo_server: RunningServer, headers: dict[str, str], path: str, status: int
) -> None:
    got, body, _ = json_request(
        demo_server.url, "POST", path, body={"message": "hi"}, headers=headers
    )
    assert got == status
    assert body is not None and set(body["error"]) >= {"code", "message"}


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b"{}", "application/json", 400),
        (b'{"message": ""}', "application/json", 400),
        (b'{"message": "   "}', "application/json", 400),
        (b'{"message": 42}', "application/json", 400),
        (b'{"message": "hi", "session_id": "../etc"}', "application/json", 400),
        (b'{"message": "hi", "session_id": 7}', "application/json", 400),
        (b'{"message": "a\\u0000b"}', "application/json", 400),
        (b'{"message": "\xff\xfe"}', "application/json", 400),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 413),
        (b"[" * 20_000 + b"]" * 20_000, "application/json", 400),
        (b'{"message": "' + b"x" * 9000 + b'"}', "application/json", 413),
        (b'{"message": "hi"}', "text/plain", 415),
        (b'{"message": "hi"}', "application/json; charset=latin-1", 415),
        (b'{"message": "hi"}', "", 415),
    ],
)
def test_bad_input_gets_a_clear_error(
    demo_server: RunningServer, body: bytes, content_type: str, status: int
) -> None:
    headers = dict(ALICE)
    if content_type:
        headers["Content-Type"] = content_type
    got, data, response_headers = json_request(
        demo_server.url, "POST", STREAM, body=body, headers=headers
    )
    assert got == status
    assert response_headers["Content-Type"].startswith("application/json")
    assert data is not None and data["error"]["code"] and data["error"]["message"]
    # ...and the server keeps serving.
    assert json_request(demo_server.url, "GET", "/healthz")[0] == 200


def test_a_huge_body_is_refused_without_being_read(demo_server: RunningServer) -> None:
    body = b'{"message": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    status, data, _ = json_request(
        demo_server.url,
        "POST",
        STREAM,
        body=body,
        headers={**ALICE, "Content-Type": "application/json"},
    )
    assert status == 413 and data is not None and data["error"]["code"] == "too_large"
    assert json_request(demo_server.url, "GET", "/healthz")[:2] == (200, {"status": "ok"})


def test_unknown_paths_and_methods_answer_json(demo_server: RunningServer) -> None:
    status, body, _ = json_request(demo_server.url, "GET", "/api/nothing")
    assert status == 404 and body is not None and body["error"]["code"] == "not_found"
    status, body, _ = json_request(demo_server.url, "GET", STREAM, headers=ALICE)
    assert status == 405 and body is not None and body["error"]["code"] == "method_not_allowed"


def test_health(demo_server: RunningServer) -> None:
    assert json_request(demo_server.url, "GET", "/healthz")[:2] == (200, {"status": "ok"})
    status, body, _ = json_request(demo_server.url, "GET", "/readyz")
    assert status == 200 and body is not None and body["providers"] == ["demo"]
