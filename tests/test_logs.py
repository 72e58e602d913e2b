"""Structured logs: one JSON line per event of note, ids bound, the user hashed;
never a token, a cookie or, unless ``log.include_content``, message text."""

from __future__ import annotations

import http.cookies
import json
import re
import subprocess
import sys
import textwrap

from tests.conftest import StartServer
from tests.support.server import ROOT, RunningServer
from tests.support.sse import bearer, events, json_request, request

SECRET_WORDS = "xyzzy plugh confidential"
ALICE = bearer("tok-alice")


def cookie_for(server: RunningServer) -> tuple[str, str]:
    page = request(server.url, "GET", "/")
    page.body()
    jar = http.cookies.SimpleCookie(page.headers["Set-Cookie"])
    value = jar["sluice_uid"].value
    status, me, _ = json_request(
        server.url, "GET", "/api/me", headers={"Cookie": f"sluice_uid={value}"}
    )
    assert status == 200 and me is not None
    return value, me["user_id"]


def run_turns(server: RunningServer) -> tuple[str, str, str, str]:
    """A bearer turn and a cookie turn; returns their stream ids, the cookie and its user."""
    response = request(
        server.url,
        "POST",
        "/api/conversation-stream/alice",
        body={"message": f"hello {SECRET_WORDS}"},
        headers=ALICE,
    )
    assert events(response.read_all())[-1]["type"] == "complete"
    bearer_stream = response.headers["X-Stream-Id"]
    cookie, user = cookie_for(server)
    response = request(
        server.url,
        "POST",
        f"/api/conversation-stream/{user}",
        body={"message": f"again {SECRET_WORDS}"},
        headers={"Cookie": f"sluice_uid={cookie}", "Origin": server.url},
    )
    assert events(response.read_all())[-1]["type"] == "complete"
    cookie_stream = response.headers["X-Stream-Id"]
    server.wait_for_log("turn_finished", stream_id=cookie_stream)
    return bearer_stream, cookie_stream, cookie, user


def test_turn_lines_carry_ids_and_a_hashed_user_and_no_secrets(start_server: StartServer) -> None:
    server = start_server({"SLUICE_SECRET_KEY": "log-test-signing-key"})
    bearer_stream, cookie_stream, cookie, cookie_user = run_turns(server)
    server.wait_for_log("turn_finished", stream_id=bearer_stream)

    started = server.wait_for_log("turn_started", stream_id=bearer_stream)
    finished = server.wait_for_log("turn_finished", stream_id=bearer_stream)
    assert re.fullmatch(r"[0-9a-f]{12}", started["user"])
    assert finished["user"] == started["user"]
    assert started["request_id"] == finished["request_id"]
    assert started["message_chars"] == len(f"hello {SECRET_WORDS}")
    assert finished["outcome"] == "complete" and finished["provider"] == "demo"
    assert finished["ttft_ms"] > 0 and finished["duration_ms"] >= finished["ttft_ms"]
    assert finished["answer_chars"] > 0
    assert set(finished["stages_ms"]) == {
        "rate_limit",
        "usage",
        "session",
        "intent",
        "context",
        "llm",
    }
    # Lines logged inside the turn (the chain's) carry the bound ids too.
    attempt = server.wait_for_log("provider_attempt", stream_id=bearer_stream)
    assert attempt["user"] == started["user"] and attempt["provider"] == "demo"
    # The access line names the route, not the path with the user id in it.
    access = server.wait_for_log("request", request_id=started["request_id"])
    assert access["route"] == "/api/conversation-stream/{user_id}"
    # Another user hashes differently; the same user the same way on every line.
    other = server.wait_for_log("turn_started", stream_id=cookie_stream)
    assert other["user"] != started["user"]

    output = server.output()
    for secret in ("tok-alice", cookie, cookie_user, "alice", *SECRET_WORDS.split()):
        assert secret not in output, secret
    for line in output.splitlines():
        json.loads(line)  # every line is one JSON object


def test_include_content_logs_message_and_answer(start_server: StartServer) -> None:
    server = start_server({"SLUICE_LOG__INCLUDE_CONTENT": "true"})
    response = request(
        server.url,
        "POST",
        "/api/conversation-stream/alice",
        body={"message": f"hello {SECRET_WORDS}"},
        headers=ALICE,
    )
    answer = events(response.read_all())[-1]["message"]
    stream_id = response.headers["X-Stream-Id"]
    assert server.wait_for_log("turn_started", stream_id=stream_id)["message"].endswith(
        SECRET_WORDS
    )
    assert server.wait_for_log("turn_finished", stream_id=stream_id)["answer"] == answer
    assert "tok-alice" not in server.output()


def test_refused_requests_log_without_the_token(start_server: StartServer) -> None:
    server = start_server({"SLUICE_JWT_SECRET": "jwt-log-secret-0123456789abcdefghij"})
    forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.Zm9yZ2VkLXNpZ25hdHVyZQ"
    status, _, _ = json_request(
        server.url,
        "POST",
        "/api/conversation/alice",
        body={"message": SECRET_WORDS},
        headers=bearer(forged),
    )
    assert status == 401
    line = server.wait_for_log("request", status=401)
    assert line["route"] == "/api/conversation/{user_id}"
    output = server.output()
    assert forged not in output and "jwt-log-secret" not in output and "xyzzy" not in output


def _run_logging(fmt: str, body: str) -> str:
    script = textwrap.dedent(
        f"""
        import logging
        import structlog
        from server.config import LogSettings
        from server.observability.logging import configure_logging
        configure_logging(LogSettings(format={fmt!r}, level="info"))
        """
    ) + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_tracebacks_are_logged_without_local_variables() -> None:
    output = _run_logging(
        "json",
        """
        def handle(token):
            raise ValueError("boom")
        try:
            handle("Bearer tok-very-secret")
        except ValueError:
            structlog.get_logger("sluice").exception("request_failed")
            logging.getLogger("tornado.application").exception("uncaught")
        """,
    )
    lines = [json.loads(line) for line in output.splitlines()]
    assert [line["event"] for line in lines] == ["request_failed", "uncaught"]
    for line in lines:
        assert "ValueError" in json.dumps(line["exception"])
    assert "tok-very-secret" not in output


def test_console_format_is_readable() -> None:
    output = _run_logging("console", 'structlog.get_logger("sluice").info("turn_started", x=1)')
    assert "turn_started" in output and "x=1" in output
    assert not output.lstrip().startswith("{")
