"""``/openapi.json`` describes the API truly: every route of the application is in
it and nothing else is, with the same methods; real responses validate against its schemas
and use only the statuses it lists."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from tornado import web

from server.app import build_state, make_app
from server.config import load_settings
from server.http.ops import openapi_spec
from tests.support.server import ROOT, RunningServer
from tests.support.sse import bearer, events, json_request, request

SPEC = openapi_spec()
ALICE = bearer("tok-alice")
METHODS = ("get", "post", "delete")


def _shape(template: str) -> str:
    return re.sub(r"\{\w+\}", "{}", template)


def app_routes(tmp_path: Path) -> dict[str, set[str]]:
    settings = load_settings(
        {"SLUICE_CONFIG": str(ROOT / "config.toml"), "SLUICE_DATA_DIR": str(tmp_path)}
    )
    state = build_state(settings, environ={})
    try:
        app = make_app(state)
        routes: dict[str, set[str]] = {}
        for rule in app.wildcard_router.rules:
            pattern = rule.matcher.regex.pattern.removesuffix("$")  # type: ignore[attr-defined]
            path = pattern.replace("([^/]+)", "{}").replace("(.*)", "{}")
            handler = rule.target
            assert isinstance(handler, type) and issubclass(handler, web.RequestHandler)
            routes[path] = {
                m for m in METHODS if getattr(handler, m) is not getattr(web.RequestHandler, m)
            }
        return routes
    finally:
        asyncio.run(state.services.sessions.close())


def test_every_route_is_described_and_nothing_else(tmp_path: Path) -> None:
    described = {
        _shape(path): {m for m in item if m in METHODS} for path, item in SPEC["paths"].items()
    }
    assert app_routes(tmp_path) == described


def references(node: Any) -> set[str]:
    """Every ``$ref`` anywhere under ``node``."""
    if isinstance(node, dict):
        own = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return own.union(*(references(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(references(item) for item in node))
    return set()


def test_the_spec_is_well_formed() -> None:
    assert SPEC["openapi"].startswith("3.1")
    metaschema = jsonschema.Draft202012Validator(jsonschema.Draft202012Validator.META_SCHEMA)
    for name, schema in SPEC["components"]["schemas"].items():
        assert [error.message for error in metaschema.iter_errors(schema)] == [], name
    defined = {f"#/components/schemas/{name}" for name in SPEC["components"]["schemas"]}
    assert references(SPEC) <= defined
    for path, item in SPEC["paths"].items():
        names = set(re.findall(r"\{(\w+)\}", path))
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path)
            assert operation["responses"], (method, path)


def test_it_is_served(demo_server: RunningServer) -> None:
    status, body, headers = json_request(demo_server.url, "GET", "/openapi.json")
    assert status == 200 and body == SPEC
    assert headers["Content-Type"].startswith("application/json")


def check(method: str, template: str, status: int, body: Any, media: str) -> None:
    """``body`` (parsed) is what the spec promises for ``method template`` at ``status``."""
    responses = SPEC["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template} answered {status}, not in the spec"
    content = responses[str(status)].get("content")
    if content is None:
        assert body in (None, b"", "")
        return
    if media not in content and "*/*" in content:
        return
    assert media in content, (method, template, status, media)
    schema = content[media].get("schema")
    if media == "application/json":
        jsonschema.validate(body, {**schema, "components": SPEC["components"]})
    elif media == "text/event-stream":
        event_schema = {**content[media]["x-event-schema"], "components": SPEC["components"]}
        for event in body:
            jsonschema.validate(event, event_schema)


def call(
    server: RunningServer, method: str, template: str, path: str, **kwargs: Any
) -> tuple[int, Any, Any]:
    response = request(server.url, method, path, **kwargs)
    media = (response.headers.get("Content-Type") or "").split(";")[0].strip()
    if media == "text/event-stream":
        body: Any = events(response.read_all())
    else:
        raw = response.body()
        body = json.loads(raw) if media == "application/json" else raw
    check(method, template, response.status, body, media)
    return response.status, body, response.headers


@pytest.mark.parametrize(
    ("method", "template", "path", "kwargs", "status"),
    [
        ("GET", "/healthz", "/healthz", {}, 200),
        ("GET", "/readyz", "/readyz", {}, 200),
        ("GET", "/metrics", "/metrics", {}, 200),
        ("GET", "/api/me", "/api/me", {"headers": ALICE}, 200),
        ("GET", "/api/me", "/api/me", {"headers": bearer("nope")}, 401),
        ("GET", "/", "/", {}, 200),
        ("GET", "/static/{path}", "/static/js/app.js", {}, 200),
        ("GET", "/static/{path}", "/static/missing.js", {}, 404),
        ("GET", "/api/sessions/{user_id}", "/api/sessions/alice", {"headers": ALICE}, 200),
        ("GET", "/api/sessions/{user_id}", "/api/sessions/bob", {"headers": ALICE}, 403),
        ("GET", "/api/sessions/{user_id}", "/api/sessions/alice", {}, 401),
        (
            "GET",
            "/api/sessions/{user_id}/{session_id}",
            "/api/sessions/alice/nope",
            {"headers": ALICE},
            404,
        ),
        (
            "DELETE",
            "/api/sessions/{user_id}/{session_id}",
            "/api/sessions/alice/nope",
            {"headers": ALICE},
            404,
        ),
        ("GET", "/api/streams/{stream_id}", "/api/streams/st_nothing", {"headers": ALICE}, 404),
        (
            "POST",
            "/api/streams/{stream_id}/cancel",
            "/api/streams/st_nothing/cancel",
            {"headers": ALICE},
            404,
        ),
        (
            "POST",
            "/api/conversation/{user_id}",
            "/api/conversation/alice",
            {"headers": ALICE, "body": b"{"},
            415,
        ),
        (
            "POST",
            "/api/conversation/{user_id}",
            "/api/conversation/alice",
            {"headers": {**ALICE, "Content-Type": "application/json"}, "body": b"{"},
            400,
        ),
        (
            "POST",
            "/api/conversation-stream/{user_id}",
            "/api/conversation-stream/alice",
            {"headers": {**ALICE, "Content-Type": "application/json"}, "body": b"[" * 70000},
            413,
        ),
        ("GET", "/api/conversation/{user_id}", "/api/conversation/alice", {"headers": ALICE}, 405),
        ("GET", "/api/check-stream", "/api/check-stream?events=3&interval_ms=50", {}, 200),
        ("GET", "/api/check-stream", "/api/check-stream?events=0", {}, 400),
        ("GET", "/api/check-stream", "/api/check-stream?events=50&interval_ms=2000", {}, 400),
    ],
)
def test_responses_match_the_spec(
    demo_server: RunningServer,
    method: str,
    template: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    if method == "GET" and template == "/api/conversation/{user_id}":
        # 405 is listed for every operation; check the error body against that one.
        response = request(demo_server.url, method, path, **kwargs)
        assert response.status == 405
        check("POST", template, 405, json.loads(response.body()), "application/json")
        return
    assert call(demo_server, method, template, path, **kwargs)[0] == status


def test_a_whole_conversation_matches_the_spec(demo_server: RunningServer) -> None:
    stream = "/api/conversation-stream/{user_id}"
    status, evs, headers = call(
        demo_server,
        "POST",
        stream,
        "/api/conversation-stream/alice",
        body={"message": "Find me a restaurant in Tokyo"},
        headers=ALICE,
    )
    assert status == 200 and evs[-1]["type"] == "complete"
    stream_id = headers["X-Stream-Id"]
    session_id = evs[-1]["session_id"]
    call(
        demo_server,
        "GET",
        "/api/streams/{stream_id}",
        f"/api/streams/{stream_id}",
        headers={**ALICE, "Last-Event-ID": "2"},
    )
    call(
        demo_server,
        "POST",
        "/api/streams/{stream_id}/cancel",
        f"/api/streams/{stream_id}/cancel",
        headers=ALICE,
    )
    status, body, _ = call(
        demo_server,
        "POST",
        "/api/conversation/{user_id}",
        "/api/conversation/alice",
        body={"message": "and vegetarian?", "session_id": session_id},
        headers=ALICE,
    )
    assert status == 200 and body["session_id"] == session_id
    call(demo_server, "GET", "/api/sessions/{user_id}", "/api/sessions/alice", headers=ALICE)
    status, detail, _ = call(
        demo_server,
        "GET",
        "/api/sessions/{user_id}/{session_id}",
        f"/api/sessions/alice/{session_id}",
        headers=ALICE,
    )
    assert status == 200 and len(detail["messages"]) == 4
    # Each answer tells what it replies to and how it came to be (checked by the schema too).
    question, answer = detail["messages"][2:]
    assert answer["reply_to"] == question["id"] and answer["provider"] == "demo"
    assert answer["mode"] == "stream" and answer["fallback"] is False
    assert 0 < answer["time_to_first_token_ms"] <= answer["duration_ms"]
    status, _, _ = call(
        demo_server,
        "DELETE",
        "/api/sessions/{user_id}/{session_id}",
        f"/api/sessions/alice/{session_id}",
        headers=ALICE,
    )
    assert status == 204


def test_not_ready_matches_the_spec() -> None:
    jsonschema.validate(
        {"status": "unavailable", "reasons": ["no LLM provider is configured"]},
        {"$ref": "#/components/schemas/NotReady", "components": SPEC["components"]},
    )


API_DOC = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")


def test_the_api_document_names_every_route_of_the_spec() -> None:
    for path, item in SPEC["paths"].items():
        for method in item:
            if method in METHODS:
                shown = f"`{method.upper()} {path}`"
                assert shown in API_DOC, f"{shown} is not in docs/api.md"


def test_the_api_document_gives_every_error_code() -> None:
    from server.contract import ErrorCode
    from server.http.errors import ApiCode

    for code in [*ErrorCode, *ApiCode]:
        assert f"`{code}`" in API_DOC, f"{code} is not in docs/api.md"


def test_the_api_document_gives_every_field_of_every_event() -> None:
    schemas = SPEC["components"]["schemas"]
    for name in ("StatusEvent", "ContextEvent", "ChunkEvent", "CompleteEvent", "ErrorEvent"):
        schema = schemas[name]
        kind = schema["properties"]["type"]["const"]
        row = next(line for line in API_DOC.splitlines() if line.startswith(f"| `{kind}` |"))
        for field in schema["properties"]:
            if field != "type":
                assert f"`{field}`" in row, f"{kind}.{field} is not in docs/api.md"


def test_the_api_document_gives_every_field_of_a_message() -> None:
    item = SPEC["components"]["schemas"]["SessionDetail"]["properties"]["messages"]["items"]
    section = API_DOC.split("### A session's messages", 1)[1].split("\n## ", 1)[0]
    for field in item["properties"]:
        assert f"`{field}`" in section, f"message.{field} is not in docs/api.md"


def test_the_api_documents_example_message_matches_the_spec() -> None:
    section = API_DOC.split("### A session's messages", 1)[1]
    example = json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])
    item = SPEC["components"]["schemas"]["SessionDetail"]["properties"]["messages"]["items"]
    jsonschema.validate(example, {**item, "components": SPEC["components"]})


OPENAI_CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "Hello"}]


@pytest.mark.parametrize(
    ("method", "template", "path", "kwargs", "status"),
    [
        ("GET", "/v1/models", "/v1/models", {"headers": ALICE}, 200),
        ("GET", "/v1/models", "/v1/models", {}, 401),
        ("GET", "/v1/models/{model}", "/v1/models/sluice", {"headers": ALICE}, 200),
        ("GET", "/v1/models/{model}", "/v1/models/nope", {"headers": ALICE}, 404),
        (
            "POST",
            OPENAI_CHAT,
            OPENAI_CHAT,
            {"headers": ALICE, "body": {"model": "sluice", "messages": HELLO}},
            200,
        ),
        ("POST", OPENAI_CHAT, OPENAI_CHAT, {"body": {"model": "sluice", "messages": HELLO}}, 401),
        (
            "POST",
            OPENAI_CHAT,
            OPENAI_CHAT,
            {"headers": ALICE, "body": {"model": "sluice", "messages": HELLO, "n": 3}},
            400,
        ),
        (
            "POST",
            OPENAI_CHAT,
            OPENAI_CHAT,
            {"headers": ALICE, "body": {"model": "nope", "messages": HELLO}},
            404,
        ),
        ("POST", OPENAI_CHAT, OPENAI_CHAT, {"headers": ALICE, "body": b"{}"}, 415),
        ("GET", OPENAI_CHAT, OPENAI_CHAT, {"headers": ALICE}, 405),
    ],
)
def test_openai_responses_match_the_spec(
    demo_server: RunningServer,
    method: str,
    template: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    if method == "GET" and template == OPENAI_CHAT:
        response = request(demo_server.url, method, path, **kwargs)
        assert response.status == 405
        check("POST", template, 405, json.loads(response.body()), "application/json")
        return
    assert call(demo_server, method, template, path, **kwargs)[0] == status


def test_an_openai_stream_matches_the_spec(demo_server: RunningServer) -> None:
    body = {
        "model": "sluice",
        "messages": HELLO,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = request(demo_server.url, "POST", OPENAI_CHAT, body=body, headers=ALICE)
    assert response.status == 200
    content = SPEC["paths"][OPENAI_CHAT]["post"]["responses"]["200"]["content"]
    schema = {**content["text/event-stream"]["x-event-schema"], "components": SPEC["components"]}
    blocks = [b for b in response.body().decode().split("\n\n") if b]
    assert blocks[-1] == "data: [DONE]"
    for block in blocks[:-1]:
        assert block.startswith("data: ") and "\n" not in block
        jsonschema.validate(json.loads(block[6:]), schema)
