"""Images with the user's message, through the real server and fake upstreams: /v1's
``image_url`` data URLs and the stream endpoint's ``images`` reach the provider as its own
image parts (OpenAI ``image_url``, Gemini ``inlineData``), are kept with the message in
history, and are held to ``limits.max_image_bytes``, ``limits.max_images`` and the accepted
types. A 5 MB picture gets through; 5 MB of text does not.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from server.contract import ImagePart
from server.stores.archive import export_history, import_history, read_archive
from server.stores.sqlite import SQLiteSessionStore
from tests.fakes.threaded import ThreadedFakes, openai_gemini_env
from tests.support import upstream_server
from tests.support.server import RunningServer, launch
from tests.support.sse import bearer, events, json_request, request, start_stream

ALICE = bearer("tok-alice")
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
GIF = b"GIF89a" + b"\x01" * 100
MAX_IMAGE = 5 * 1024 * 1024


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64," + base64.b64encode(data).decode()


def with_image(url: str, text: str = "What is this?") -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]


# The fixtures of tests/support/upstream_server.py, named here so that pytest finds them.
upstreams = upstream_server.upstreams
server = upstream_server.server
fakes = upstream_server.fakes
sdk = upstream_server.sdk


@pytest.fixture(scope="module")
def server_env(upstreams: ThreadedFakes) -> dict[str, str]:
    return openai_gemini_env(upstreams)


def test_a_data_url_reaches_openai_and_gemini_as_their_image_parts(
    sdk: openai.OpenAI, fakes: ThreadedFakes
) -> None:
    for model in ("openai", "gemini"):
        sdk.chat.completions.create(model=model, messages=with_image(data_url(PNG)))  # type: ignore[arg-type]
    user = fakes.openai.requests[0].body["messages"][-1]
    assert user == {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": data_url(PNG)}},
        ],
    }
    parts = fakes.gemini.requests[0].body["contents"][-1]["parts"]
    assert parts == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}},
    ]


def test_a_five_megabyte_picture_gets_through_and_five_megabytes_of_text_do_not(
    sdk: openai.OpenAI, fakes: ThreadedFakes
) -> None:
    picture = PNG + b"\x00" * (MAX_IMAGE - len(PNG))
    answer = sdk.chat.completions.create(model="openai", messages=with_image(data_url(picture)))  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Hello, world!"
    sent = fakes.openai.requests[0].body["messages"][-1]["content"][1]["image_url"]["url"]
    assert base64.b64decode(sent.split(",", 1)[1]) == picture

    # The same body size in text: held to limits.max_body_bytes (64 KiB) as before.
    history = [{"role": "assistant", "content": "x" * 100_000}]
    with pytest.raises(openai.APIStatusError) as too_much_text:
        sdk.chat.completions.create(
            model="openai",
            messages=[*history, *with_image(data_url(PNG))],  # type: ignore[list-item]
        )
    assert too_much_text.value.status_code == 413
    assert too_much_text.value.code == "too_large"
    assert "images aside" in too_much_text.value.message
    # One byte over the image limit.
    with pytest.raises(openai.APIStatusError) as too_big:
        sdk.chat.completions.create(
            model="openai", messages=with_image(data_url(picture + b"\x00"))
        )  # type: ignore[arg-type]
    assert too_big.value.status_code == 413
    assert too_big.value.param == "messages[0].content[1].image_url"
    assert len(fakes.openai.requests) == 1


def test_images_refused_on_v1_are_openai_errors(sdk: openai.OpenAI, fakes: ThreadedFakes) -> None:
    with pytest.raises(openai.BadRequestError) as by_address:
        sdk.chat.completions.create(
            model="openai",
            messages=with_image("https://example.com/cat.png"),  # type: ignore[arg-type]
        )
    assert "fetches nothing" in by_address.value.message
    with pytest.raises(openai.APIStatusError) as bmp:
        sdk.chat.completions.create(
            model="openai",
            messages=with_image(data_url(b"BM" + b"\x00" * 60, "image/bmp")),  # type: ignore[arg-type]
        )
    assert bmp.value.status_code == 415
    assert bmp.value.type == "invalid_request_error" and bmp.value.code == "unsupported_media_type"
    five = [
        {"type": "image_url", "image_url": {"url": data_url(GIF, "image/gif")}} for _ in range(5)
    ]
    with pytest.raises(openai.APIStatusError) as too_many:
        sdk.chat.completions.create(
            model="openai",
            messages=[{"role": "user", "content": five}],  # type: ignore[list-item]
        )
    assert too_many.value.status_code == 413 and "At most 4" in too_many.value.message
    assert not fakes.openai.requests


def test_a_body_over_every_limit_is_refused_unread_as_an_openai_error(
    server: RunningServer,
) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest("POST", "/v1/chat/completions")
        for name, value in {
            **ALICE,
            "Content-Type": "application/json",
            "Content-Length": str(200 * 1024 * 1024),
        }.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 413
    assert body == {
        "error": {
            "message": "The body is too large.",
            "type": "invalid_request_error",
            "param": None,
            "code": "too_large",
        }
    }


def test_the_stream_endpoint_takes_images_and_history_keeps_them(
    server: RunningServer, fakes: ThreadedFakes
) -> None:
    image = {"data": base64.b64encode(PNG).decode(), "media_type": "image/png"}
    seen = events(start_stream(server.url, "What is this?", images=[image]).read_all())
    assert seen[-1]["type"] == "complete"
    session_id = seen[-1]["session_id"]
    user = fakes.openai.requests[0].body["messages"][-1]
    assert user["content"][1] == {"type": "image_url", "image_url": {"url": data_url(PNG)}}

    status, session, _ = json_request(
        server.url, "GET", f"/api/sessions/alice/{session_id}", headers=ALICE
    )
    assert status == 200 and session is not None
    asked = session["messages"][0]
    assert asked["role"] == "user" and asked["content"] == "What is this?"
    # The session's JSON gives the picture's address, not its bytes; the address gives them.
    picture_url = f"/api/sessions/alice/{session_id}/messages/{asked['id']}/images/0"
    assert asked["parts"] == [{"type": "image", "url": picture_url, "media_type": "image/png"}]
    picture = request(server.url, "GET", picture_url, headers=ALICE)
    assert picture.status == 200 and picture.response.read() == PNG

    # The next turn of the session gives the model the picture again, as history.
    seen = events(start_stream(server.url, "And now?", session_id=session_id).read_all())
    assert seen[-1]["type"] == "complete"
    earlier = fakes.openai.requests[1].body["messages"]
    assert {"type": "image_url", "image_url": {"url": data_url(PNG)}} in earlier[-3]["content"]


def test_a_picture_is_served_to_its_owner_only_and_kept_from_shared_caches(
    server: RunningServer, fakes: ThreadedFakes
) -> None:
    image = {"data": base64.b64encode(GIF).decode(), "media_type": "image/gif"}
    seen = events(start_stream(server.url, "And this?", images=[image]).read_all())
    session_id = seen[-1]["session_id"]
    _, session, _ = json_request(
        server.url, "GET", f"/api/sessions/alice/{session_id}", headers=ALICE
    )
    assert session is not None
    message_id = session["messages"][0]["id"]
    path = f"/api/sessions/alice/{session_id}/messages/{message_id}/images/0"

    owner = request(server.url, "GET", path, headers=ALICE)
    assert owner.status == 200 and owner.response.read() == GIF
    assert owner.headers["Content-Type"] == "image/gif"
    assert owner.headers["Cache-Control"].split(",")[0] == "private"
    assert owner.headers["X-Content-Type-Options"] == "nosniff"

    # Bob asking for it in his own space finds nothing, as for the owner's sessions; in
    # Alice's space he is refused outright; an index past the message's pictures is 404.
    bob = bearer("tok-bob")
    theirs = f"/api/sessions/bob/{session_id}/messages/{message_id}/images/0"
    assert json_request(server.url, "GET", theirs, headers=bob)[0] == 404
    assert json_request(server.url, "GET", path, headers=bob)[0] == 403
    assert json_request(server.url, "GET", path[:-1] + "1", headers=ALICE)[0] == 404
    answer_id = session["messages"][1]["id"]
    assert (
        json_request(
            server.url, "GET", path.replace(f"/{message_id}/", f"/{answer_id}/"), headers=ALICE
        )[0]
        == 404
    )
    assert json_request(server.url, "GET", path, headers={})[0] == 401


@pytest.mark.parametrize(
    ("image", "status", "says"),
    [
        ({"data": base64.b64encode(PNG).decode(), "media_type": "image/tiff"}, 415, "image/tiff"),
        ({"data": base64.b64encode(GIF).decode(), "media_type": "image/png"}, 415, "not a"),
        (
            {"data": base64.b64encode(PNG + bytes(MAX_IMAGE)).decode(), "media_type": "image/png"},
            413,
            "over",
        ),
        ({"data": "not base64!", "media_type": "image/png"}, 400, "base64"),
    ],
)
def test_the_stream_endpoint_refuses_bad_images_in_its_own_json(
    server: RunningServer, fakes: ThreadedFakes, image: dict[str, str], status: int, says: str
) -> None:
    code, body, _ = json_request(
        server.url,
        "POST",
        "/api/conversation-stream/alice",
        body={"message": "Look", "images": [image]},
        headers=ALICE,
    )
    assert code == status
    assert body is not None and says in body["error"]["message"]
    assert set(body["error"]) >= {"code", "message"} and "type" not in body["error"]
    assert not fakes.openai.requests


@pytest.mark.anyio
async def test_export_and_import_keep_a_messages_images(tmp_path: Path) -> None:
    """``python -m server export`` / ``import`` write and read the archive this way: the
    picture stored with a user message arrives whole in the other store."""
    source = SQLiteSessionStore(tmp_path / "a.sqlite3")
    target = SQLiteSessionStore(tmp_path / "b.sqlite3")
    try:
        await source.open_session("alice", "s_pic", "A picture")
        image = ImagePart(PNG, "image/png")
        await source.add_message("alice", "s_pic", "user", "Look", "complete", parts=(image,))
        archive = io.StringIO()
        await export_history(source, archive)
        await import_history(target, read_archive(archive.getvalue().splitlines()))
        (message,) = await target.messages("alice", "s_pic")
        assert (message.content, message.parts) == ("Look", (image,))
    finally:
        await source.close()
        await target.close()


@pytest.fixture(scope="module")
def demo_first(
    upstreams: ThreadedFakes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """The demo (which reads text only), then Gemini told it cannot see (``vision =
    false``), then OpenAI."""
    env = openai_gemini_env(
        upstreams,
        SLUICE_LLM__PROVIDERS="demo,gemini,openai",
        SLUICE_LLM__GEMINI__VISION="false",
        SLUICE_LLM__DEMO__WORDS_PER_SECOND="0",
        SLUICE_LIMITS__MAX_IMAGES="2",
    )
    running = launch(tmp_path_factory.mktemp("data"), env)
    yield running
    running.stop()


def test_a_picture_goes_past_the_providers_that_cannot_see_and_they_get_none(
    demo_first: RunningServer, fakes: ThreadedFakes
) -> None:
    image = {"data": base64.b64encode(PNG).decode(), "media_type": "image/png"}
    seen = events(start_stream(demo_first.url, "What is this?", images=[image]).read_all())
    assert seen[-1]["type"] == "complete" and seen[-1]["provider"] == "openai"
    assert not fakes.gemini.requests
    user = fakes.openai.requests[0].body["messages"][-1]
    assert user["content"][1] == {"type": "image_url", "image_url": {"url": data_url(PNG)}}

    # A later turn of text alone may go to one that cannot see: it gets the history
    # without the picture, and answers.
    session_id = seen[-1]["session_id"]
    seen = events(
        start_stream(demo_first.url, "Thanks", session_id=session_id, model="gemini").read_all()
    )
    assert seen[-1]["type"] == "complete" and seen[-1]["provider"] == "gemini"
    contents = fakes.gemini.requests[0].body["contents"]
    assert contents[0]["parts"] == [{"text": "What is this?"}]
    assert not any("inlineData" in part for c in contents for part in c["parts"])


def test_a_picture_for_a_model_that_cannot_see_it_is_refused_plainly(
    demo_first: RunningServer, fakes: ThreadedFakes
) -> None:
    image = {"data": base64.b64encode(PNG).decode(), "media_type": "image/png"}
    for _ in range(6):  # more than the circuit's failures: the refusal does not count as one
        seen = events(
            start_stream(demo_first.url, "What is this?", images=[image], model="demo").read_all()
        )
        assert seen[-1]["type"] == "error"
        assert "demo cannot see pictures" in seen[-1]["message"]
        assert seen[-1]["retryable"] is False
    seen = events(start_stream(demo_first.url, "Hello", model="demo").read_all())
    assert seen[-1]["type"] == "complete" and seen[-1]["provider"] == "demo"


def test_the_page_is_told_the_limits_this_server_holds_pictures_to(
    demo_first: RunningServer,
) -> None:
    status, me, _ = json_request(demo_first.url, "GET", "/api/me", headers=ALICE)
    assert status == 200 and me is not None
    assert me["limits"] == {
        "max_image_bytes": MAX_IMAGE,
        "max_images": 2,
        "image_types": ["image/png", "image/jpeg", "image/webp", "image/gif"],
    }
