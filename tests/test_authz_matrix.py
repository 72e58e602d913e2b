"""Who may do what: every endpoint against every kind
of caller, with the status each must get.

Callers: the owner (by cookie from this site, and by JWT), another user (static token), no
identity, a JWT signed with the wrong key, an expired JWT, the owner's cookie tampered with,
and the owner's cookie sent from another site. Decided in the design: another user's
``/api/sessions/{owner}/...`` is 403 (the path names someone else), another user's stream id
is 404 (it does not exist for them), and the owner's session id under one's own user id is
404 (it does not exist in one's own space).
"""

from __future__ import annotations

import http.cookies
import time
from collections.abc import Iterator
from dataclasses import dataclass

import jwt
import pytest

from tests.support.server import RunningServer, launch
from tests.support.sse import bearer, json_request, request

JWT_SECRET = "matrix-jwt-secret-0123456789abcdef"


@dataclass
class World:
    server: RunningServer
    owner: str
    cookie: str  # the owner's signed cookie value
    stream_id: str
    session_id: str

    def headers(self, caller: str) -> dict[str, str]:
        now = int(time.time())
        if caller == "owner":
            return {"Cookie": f"sluice_uid={self.cookie}", "Origin": self.server.url}
        if caller == "owner_jwt":
            token = jwt.encode({"sub": self.owner, "exp": now + 600}, JWT_SECRET, "HS256")
            return bearer(token)
        if caller == "other":
            return bearer("tok-bob")
        if caller == "none":
            return {}
        if caller == "forged":
            token = jwt.encode(
                {"sub": self.owner, "exp": now + 600},
                "not-the-key-but-just-as-long-0123456789",
                "HS256",
            )
            return bearer(token)
        if caller == "expired":
            token = jwt.encode({"sub": self.owner, "exp": now - 60}, JWT_SECRET, "HS256")
            return bearer(token)
        if caller == "tampered":
            value, _, signature = self.cookie.rpartition("|")
            flipped = signature[:-4] + ("0000" if signature[-4:] != "0000" else "1111")
            return {"Cookie": f"sluice_uid={value}|{flipped}", "Origin": self.server.url}
        if caller == "cross_site":
            return {"Cookie": f"sluice_uid={self.cookie}", "Origin": "https://evil.example"}
        raise AssertionError(caller)

    def new_session(self) -> str:
        status, data, _ = json_request(
            self.server.url,
            "POST",
            f"/api/conversation/{self.owner}",
            body={"message": "a session to delete"},
            headers=self.headers("owner"),
        )
        assert status == 200 and data is not None
        return str(data["session_id"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = launch(tmp_path_factory.mktemp("data"), {"SLUICE_JWT_SECRET": JWT_SECRET})
    try:
        page = request(server.url, "GET", "/")
        page.body()
        cookie = http.cookies.SimpleCookie(page.headers["Set-Cookie"])["sluice_uid"].value
        status, me, _ = json_request(
            server.url, "GET", "/api/me", headers={"Cookie": f"sluice_uid={cookie}"}
        )
        assert status == 200 and me is not None
        owner = me["user_id"]
        started = request(
            server.url,
            "POST",
            f"/api/conversation-stream/{owner}",
            body={"message": "hello"},
            headers={"Cookie": f"sluice_uid={cookie}", "Origin": server.url},
        )
        stream_id = started.headers["X-Stream-Id"]
        frames = started.read_all()
        session_id = next(f.data["session_id"] for f in frames if f.type == "complete" and f.data)
        yield World(server, owner, cookie, stream_id, session_id)
    finally:
        server.stop()


CALLERS = ["owner", "owner_jwt", "other", "none", "forged", "expired", "tampered", "cross_site"]

# endpoint -> expected status per caller, in CALLERS order.
MATRIX: dict[str, list[int]] = {
    "POST /api/conversation-stream/{owner}": [200, 200, 403, 401, 401, 401, 401, 403],
    "POST /api/conversation/{owner}": [200, 200, 403, 401, 401, 401, 401, 403],
    "GET /api/streams/{stream}": [200, 200, 404, 401, 401, 401, 401, 200],
    "POST /api/streams/{stream}/cancel": [200, 200, 404, 401, 401, 401, 401, 403],
    "GET /api/sessions/{owner}": [200, 200, 403, 401, 401, 401, 401, 200],
    "GET /api/sessions/{owner}/{session}": [200, 200, 403, 401, 401, 401, 401, 200],
    "DELETE /api/sessions/{owner}/{fresh_session}": [204, 204, 403, 401, 401, 401, 401, 403],
    "GET /api/sessions/{owner}?q=hello": [200, 200, 403, 401, 401, 401, 401, 200],
    "PATCH /api/sessions/{owner}/{session}": [200, 200, 403, 401, 401, 401, 401, 403],
    # A browser without a valid cookie is handed a new identity here; a bad bearer token is
    # refused everywhere it is read, never ignored.
    # The OpenAI-compatible API: any identity speaks for itself (no user id in the path).
    "POST /v1/chat/completions": [200, 200, 200, 401, 401, 401, 401, 403],
    "GET /v1/models": [200, 200, 200, 401, 401, 401, 401, 200],
    # The AI SDK's routes: the chat id names a session of whoever calls, so another user
    # gets a chat of their own (200), and nothing to resume in the owner's (204).
    "POST /api/chat": [200, 200, 200, 401, 401, 401, 401, 403],
    "GET /api/chat/{session}/stream": [204, 204, 204, 401, 401, 401, 401, 204],
    "GET /api/me": [200, 200, 200, 200, 401, 401, 200, 200],
    "GET /": [200, 200, 200, 200, 401, 401, 200, 200],
    # Public: no identity is read.
    "GET /healthz": [200] * 8,
    "GET /readyz": [200] * 8,
    "GET /metrics": [200] * 8,
    "GET /openapi.json": [200] * 8,
}
CASES = [
    pytest.param(endpoint, caller, expected[i], id=f"{endpoint}-{caller}")
    for endpoint, expected in MATRIX.items()
    for i, caller in enumerate(CALLERS)
]


@pytest.mark.parametrize(("endpoint", "caller", "expected"), CASES)
def test_authorisation_matrix(world: World, endpoint: str, caller: str, expected: int) -> None:
    method, template = endpoint.split(" ", 1)
    session = world.session_id
    if "{fresh_session}" in template:
        session = world.new_session() if expected == 204 else world.session_id
    path = template.format(
        owner=world.owner, stream=world.stream_id, session=session, fresh_session=session
    )
    body: dict[str, object] | None = None
    if method == "POST" and "conversation" in path:
        body = {"message": "hi"}
    elif method == "PATCH":
        body = {"title": "Renamed"}
    elif path == "/api/chat":
        said = {"role": "user", "parts": [{"type": "text", "text": "hi"}]}
        # A chat id of its own: the owner's session id posted by another user would make
        # that user a session of the same id (their own), which the test below rules out.
        body = {"id": "matrix-chat", "messages": [said], "trigger": "submit-message"}
    elif path == "/v1/chat/completions":
        body = {"model": "sluice", "messages": [{"role": "user", "content": "hi"}]}
    response = request(world.server.url, method, path, body=body, headers=world.headers(caller))
    raw = response.body()
    assert response.status == expected, raw[:300]
    if expected >= 400:
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.headers.get("Set-Cookie") is None
    if expected == 200 and path == "/api/me":
        known = {"owner": world.owner, "owner_jwt": world.owner, "cross_site": world.owner}
        who = {**known, "other": "bob"}.get(caller)
        if who is not None:
            assert f'"user_id":"{who}"' in raw.decode()
        else:  # a new browser identity, never the owner's
            assert world.owner not in raw.decode()
    if "{fresh_session}" in template and expected == 204:
        status, _, _ = json_request(
            world.server.url,
            "GET",
            f"/api/sessions/{world.owner}/{session}",
            headers=world.headers("owner"),
        )
        assert status == 404  # really deleted


def test_the_owners_session_id_does_not_exist_in_another_users_space(world: World) -> None:
    for method in ("GET", "DELETE"):
        status, body, _ = json_request(
            world.server.url,
            method,
            f"/api/sessions/bob/{world.session_id}",
            headers=world.headers("other"),
        )
        assert status == 404 and body is not None and body["error"]["code"] == "not_found"
    # ...and it is still there for its owner.
    status, _, _ = json_request(
        world.server.url,
        "GET",
        f"/api/sessions/{world.owner}/{world.session_id}",
        headers=world.headers("owner"),
    )
    assert status == 200


def test_a_jwt_for_a_static_token_user_and_wrong_algorithms(world: World) -> None:
    # alg "none" and a token without "sub" are refused even when otherwise well formed.
    unsigned = jwt.encode({"sub": world.owner}, key=None, algorithm="none")
    no_sub = jwt.encode({"exp": int(time.time()) + 60}, JWT_SECRET, "HS256")
    for token in (unsigned, no_sub, "a.b.c", "x" * 5000):
        status, body, _ = json_request(
            world.server.url, "GET", f"/api/sessions/{world.owner}", headers=bearer(token)
        )
        assert status == 401 and body is not None and body["error"]["code"] == "unauthorized"
