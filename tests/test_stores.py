"""The session-store contract, run against both backends: SQLite in a file, and a real
PostgreSQL (started by the test harness). Whatever one backend does, the other must too."""

from __future__ import annotations

import pytest

from server.contract import (
    AnswerFacts,
    ArchivedSession,
    ImagePart,
    SessionExists,
    SessionStore,
    TextPart,
    ToolCall,
    ToolErrorKind,
    ToolResult,
)
from server.stores.postgres import PostgresSessionStore
from tests.support import stores
from tests.support.postgres import PostgresServer
from tests.support.stores import BACKENDS, MakeStore

pytestmark = pytest.mark.anyio

# The fixtures of tests/support/stores.py, named here so that pytest finds them.
make_store = stores.make_store
store = stores.store

FACTS = AnswerFacts(
    provider="openai",
    model="gpt-4o-mini",
    mode="stream",
    fallback=True,
    input_tokens=12,
    output_tokens=34,
    time_to_first_token_ms=123.5,
    duration_ms=987.25,
)


async def test_a_session_is_created_once(store: SessionStore) -> None:
    first = await store.open_session("alice", "s1", "Find me a restaurant")
    again = await store.open_session("alice", "s1", "another title")
    assert first.session_id == again.session_id == "s1"
    assert again.title == "Find me a restaurant" and again.memory == {}
    assert await store.get_session("alice", "nope") is None
    assert await store.get_session("bob", "s1") is None  # ids are per user


async def test_a_turns_first_step_opens_reads_and_saves_the_message(store: SessionStore) -> None:
    record, tree, first = await store.open_with_message("alice", "s1", "Plan a trip", "Hi")
    assert record.session_id == "s1" and record.title == "Plan a trip" and record.memory == {}
    assert tree.messages == []  # the tree as it was before the message
    answer = await store.add_message("alice", "s1", "assistant", "Hello", "complete")
    # Later turns: the session as it is (its title kept), the branch so far, the message
    # after its last message, and made the leaf.
    record, tree, second = await store.open_with_message(
        "alice", "s1", "another title", "Again", parts=(TextPart("Again"),)
    )
    assert record.title == "Plan a trip" and record.leaf_id == answer
    assert [m.id for m in tree.branch()] == [first, answer]
    assert first < answer < second
    messages = await store.messages("alice", "s1")
    assert [(m.id, m.role, m.content, m.status, m.parent_id) for m in messages] == [
        (first, "user", "Hi", "complete", None),
        (answer, "assistant", "Hello", "complete", first),
        (second, "user", "Again", "complete", answer),
    ]
    assert messages[2].parts == (TextPart("Again"),)
    assert (await store.message_tree("alice", "s1")).leaf_id == second
    assert await store.get_session("bob", "s1") is None  # ids are per user


async def test_messages_keep_order_status_and_facts(store: SessionStore) -> None:
    await store.open_session("alice", "s1", "t")
    asked = await store.add_message("alice", "s1", "user", "Hello ✨ مرحبا", "complete")
    answered = await store.add_message(
        "alice", "s1", "assistant", "Hi", "complete", reply_to=asked, facts=FACTS
    )
    cut = await store.add_message(
        "alice", "s1", "assistant", "Half", "incomplete", reply_to=asked, facts=AnswerFacts()
    )
    failed = await store.add_message("alice", "s1", "assistant", "", "error")
    assert asked < answered < cut < failed
    messages = await store.messages("alice", "s1")
    assert [(m.id, m.role, m.content, m.status) for m in messages] == [
        (asked, "user", "Hello ✨ مرحبا", "complete"),
        (answered, "assistant", "Hi", "complete"),
        (cut, "assistant", "Half", "incomplete"),
        (failed, "assistant", "", "error"),
    ]
    assert messages[1].reply_to == asked and messages[1].facts == FACTS
    assert messages[2].facts == AnswerFacts() and messages[3].reply_to is None
    assert messages[0].created_at <= messages[3].created_at
    assert messages[1].as_json()["usage"] == {"input_tokens": 12, "output_tokens": 34}
    assert "provider" not in messages[0].as_json()  # facts belong to answers


# An answer with two tool rounds, one call failing; text in several languages, a NUL and
# quotes in a result (PostgreSQL refuses NUL in text and in jsonb: the JSON keeps it escaped).
TOOL_PARTS = (
    TextPart("Let me check ✨. "),
    ToolCall("call_a", "current_time", {"timezone": "Asia/Tokyo", "nested": {"n": [1, None]}}),
    ToolCall("call_b", "current_time", {"timezone": "Mars/Olympus"}),
    ToolResult("call_a", "current_time", True, "2026-12-08T18:02:11+09:00"),
    ToolResult("call_b", "current_time", False, "unknown time zone 'Mars'", ToolErrorKind.FAILED),
    TextPart("Tokyo: مرحبا. "),
    ToolCall("call_c", "lookup", {}),
    ToolResult("call_c", "lookup", True, 'a "quoted"\x00 result'),
    TextPart("Done."),
)
TOOL_TEXT = "Let me check ✨. Tokyo: مرحبا. Done."


async def test_an_answer_keeps_its_tool_parts_in_order(store: SessionStore) -> None:
    """Parts given with a message read back equal and in order, through messages and
    export; a message given none has none; appending or replacing text with no parts
    leaves them, and parts given later replace them."""
    await store.open_session("alice", "s1", "t")
    asked = await store.add_message("alice", "s1", "user", "What time is it?", "complete")
    answer = await store.add_message(
        "alice", "s1", "assistant", TOOL_TEXT, "complete", reply_to=asked, parts=TOOL_PARTS
    )
    [question, stored] = await store.messages("alice", "s1")
    assert question.parts == () and question.as_json()["parts"] == []
    assert stored.parts == TOOL_PARTS and stored.content == TOOL_TEXT
    assert stored.as_json()["parts"][1] == {
        "type": "tool_call",
        "call_id": "call_a",
        "name": "current_time",
        "arguments": {"timezone": "Asia/Tokyo", "nested": {"n": [1, None]}},
    }
    assert stored.as_json()["parts"][4] == {
        "type": "tool_result",
        "call_id": "call_b",
        "name": "current_time",
        "ok": False,
        "content": "unknown time zone 'Mars'",
        "error": "failed",
    }
    [archived] = [s async for s in store.export_sessions("alice")]
    assert archived.messages[1].parts == TOOL_PARTS

    # A draft saved as it streamed, text only, then finished with its parts (both ways the
    # session stage finishes one).
    streamed = await store.add_message("alice", "s1", "assistant", "Let me", "incomplete")
    await store.append_to_message("alice", "s1", streamed, " check", "incomplete")
    assert (await store.messages("alice", "s1"))[2].parts == ()
    await store.append_to_message(
        "alice", "s1", streamed, " ✨. Tokyo…", "complete", facts=FACTS, parts=TOOL_PARTS[:4]
    )
    finished = (await store.messages("alice", "s1"))[2]
    assert (finished.content, finished.parts) == ("Let me check ✨. Tokyo…", TOOL_PARTS[:4])
    await store.update_message("alice", "s1", streamed, "Replaced.", "complete")
    assert (await store.messages("alice", "s1"))[2].parts == TOOL_PARTS[:4]
    await store.update_message(
        "alice", "s1", streamed, TOOL_TEXT, "complete", facts=FACTS, parts=TOOL_PARTS
    )
    assert (await store.messages("alice", "s1"))[2].parts == TOOL_PARTS
    # Another user's session is not touched.
    await store.update_message("bob", "s1", answer, "x", "complete", parts=TOOL_PARTS[:1])
    assert (await store.messages("alice", "s1"))[1].parts == TOOL_PARTS


async def test_memory_round_trips(store: SessionStore) -> None:
    await store.open_session("alice", "s1", "t")
    memory = {"location": "東京", "nested": {"a": [1, 2.5, None, True]}, "quote": '"x"'}
    await store.save_memory("alice", "s1", memory)
    record = await store.get_session("alice", "s1")
    assert record is not None and record.memory == memory
    reopened = await store.open_session("alice", "s1", "ignored")
    assert reopened.memory == memory


async def test_an_answer_is_updated_as_it_streams_then_finished(store: SessionStore) -> None:
    await store.open_session("alice", "s1", "t")
    asked = await store.add_message("alice", "s1", "user", "Hi", "complete")
    answer = await store.add_message(
        "alice", "s1", "assistant", "Hel", "incomplete", reply_to=asked
    )
    await store.update_message("alice", "s1", answer, "Hello", "incomplete")
    [_, draft] = await store.messages("alice", "s1")
    assert (draft.content, draft.status, draft.facts) == ("Hello", "incomplete", AnswerFacts())
    await store.update_message("alice", "s1", answer, "Hello there", "complete", facts=FACTS)
    [_, final] = await store.messages("alice", "s1")
    assert (final.id, final.content, final.status) == (answer, "Hello there", "complete")
    assert final.reply_to == asked and final.facts == FACTS
    # Another user's session or a deleted one: nothing happens.
    await store.update_message("bob", "s1", answer, "hijacked", "complete")
    assert (await store.messages("alice", "s1"))[1].content == "Hello there"
    await store.delete_session("alice", "s1")
    await store.update_message("alice", "s1", answer, "late", "complete")
    assert await store.messages("alice", "s1") == []


async def test_an_answer_appended_to_as_it_streams_reads_whole_everywhere(
    store: SessionStore,
) -> None:
    """Saves as an answer streams add only the new text (a long answer rewritten at every
    save cost the square of its length). Whatever was appended is part of the message for
    every reader (messages, export), a replacing update or a deleted session leaves none of
    it behind, and another user's session takes none."""
    await store.open_session("alice", "s1", "t")
    asked = await store.add_message("alice", "s1", "user", "Hi", "complete")
    answer = await store.add_message(
        "alice", "s1", "assistant", "Once", "incomplete", reply_to=asked
    )
    for piece in (" upon", " a", " time"):
        await store.append_to_message("alice", "s1", answer, piece, "incomplete")
    [_, draft] = await store.messages("alice", "s1")
    assert (draft.content, draft.status) == ("Once upon a time", "incomplete")
    await store.append_to_message("alice", "s1", answer, ".", "complete", facts=FACTS)
    [_, final] = await store.messages("alice", "s1")
    assert (final.id, final.content, final.status) == (answer, "Once upon a time.", "complete")
    assert final.reply_to == asked and final.facts == FACTS
    [archived] = [s async for s in store.export_sessions("alice")]
    assert archived.messages[1].content == "Once upon a time."
    await store.append_to_message("bob", "s1", answer, " hijacked", "error")
    assert (await store.messages("alice", "s1"))[1] == final
    await store.update_message("alice", "s1", answer, "Replaced.", "complete")
    assert (await store.messages("alice", "s1"))[1].content == "Replaced."
    await store.append_to_message("alice", "s1", answer, " More.", "complete")
    await store.delete_session("alice", "s1")
    await store.open_session("alice", "s1", "t")
    assert await store.messages("alice", "s1") == []
    await store.append_to_message("alice", "s1", answer, "late", "complete")
    assert await store.messages("alice", "s1") == []


async def test_memory_merges_changed_and_removed_keys(store: SessionStore) -> None:
    await store.open_session("alice", "s1", "t")
    await store.save_memory("alice", "s1", {"location": "Tokyo", "mood": "hungry", "x": 1})
    merged = await store.merge_memory("alice", "s1", {"location": "Paris"}, ["x"])
    assert merged == {"location": "Paris", "mood": "hungry"}
    merged = await store.merge_memory("alice", "s1", {"cuisine": "sushi"})
    assert merged == {"location": "Paris", "mood": "hungry", "cuisine": "sushi"}
    record = await store.get_session("alice", "s1")
    assert record is not None and record.memory == merged


async def test_sessions_list_newest_first_per_user(store: SessionStore) -> None:
    for name in ("one", "two", "three"):
        await store.open_session("alice", name, f"title {name}")
        await store.add_message("alice", name, "user", name, "complete")
    await store.open_session("bob", "bobs", "bob's")
    await store.add_message("alice", "one", "user", "again", "complete")  # one is newest now
    listed = await store.list_sessions("alice")
    assert [s.session_id for s in listed] == ["one", "three", "two"]
    assert [s.session_id for s in await store.list_sessions("alice", limit=2)] == ["one", "three"]
    assert listed[0].title == "title one"
    assert [s.session_id for s in await store.list_sessions("bob")] == ["bobs"]


async def test_delete_takes_the_messages_too(store: SessionStore) -> None:
    await store.open_session("alice", "s1", "t")
    await store.add_message("alice", "s1", "user", "hi", "complete")
    assert await store.delete_session("alice", "s1") is True
    assert await store.get_session("alice", "s1") is None
    assert await store.messages("alice", "s1") == []
    assert await store.delete_session("alice", "s1") is False
    # A new session under the same id starts empty.
    await store.open_session("alice", "s1", "again")
    assert await store.messages("alice", "s1") == []


async def test_ping_answers(store: SessionStore) -> None:
    await store.ping()


async def _fill(store: SessionStore) -> None:
    await store.open_session("alice", "trip", "Tokyo")
    asked = await store.add_message("alice", "trip", "user", "Find me sushi", "complete")
    await store.add_message(
        "alice", "trip", "assistant", "Sushi Dai", "complete", reply_to=asked, facts=FACTS
    )
    asked = await store.add_message("alice", "trip", "user", "What time is it?", "complete")
    await store.add_message(
        "alice", "trip", "assistant", TOOL_TEXT, "complete", reply_to=asked, parts=TOOL_PARTS
    )
    await store.save_memory("alice", "trip", {"location": "Tokyo"})
    await store.open_session("bob", "b1", "Bob")
    asked = await store.add_message("bob", "b1", "user", "hi\nthere", "complete")
    await store.add_message("bob", "b1", "assistant", "Hel", "incomplete", reply_to=asked)
    await store.open_session("carol", "empty", "nothing yet")


async def _everything(store: SessionStore, user_id: str | None = None) -> list[ArchivedSession]:
    return [session async for session in store.export_sessions(user_id)]


def _comparable(sessions: list[ArchivedSession]) -> list[tuple[object, ...]]:
    """Sessions without the store-given message ids, with reply_to as a position instead."""
    result = []
    for session in sessions:
        positions = {m.id: i for i, m in enumerate(session.messages)}
        messages = [
            (
                m.role,
                m.content,
                m.status,
                m.created_at,
                None if m.reply_to is None else positions[m.reply_to],
                m.facts,
                m.parts,
            )
            for m in session.messages
        ]
        result.append(
            (
                session.user_id,
                session.session_id,
                session.title,
                session.memory,
                session.created_at,
                session.updated_at,
                messages,
            )
        )
    return sorted(result, key=lambda row: (str(row[0]), str(row[1])))


@pytest.mark.parametrize("source", BACKENDS)
@pytest.mark.parametrize("target", BACKENDS)
async def test_export_then_import_keeps_everything(
    source: str, target: str, make_store: MakeStore
) -> None:
    origin = make_store(source)
    await origin.open()
    await _fill(origin)
    exported = await _everything(origin)
    assert [s.session_id for s in exported] == ["trip", "b1", "empty"]  # oldest first
    assert [s.session_id for s in await _everything(origin, "bob")] == ["b1"]

    destination = make_store(target)
    await destination.open()
    await destination.open_session("dave", "d1", "already here")
    await destination.import_sessions(exported)
    assert _comparable(await _everything(destination, None)) == _comparable(
        [*exported, *await _everything(destination, "dave")]
    )
    # The copy is a working history: new messages get new ids after the imported ones.
    moved = await destination.messages("alice", "trip")
    assert moved[1].reply_to == moved[0].id
    later = await destination.add_message("alice", "trip", "user", "more", "complete")
    assert later > moved[-1].id


@pytest.mark.parametrize("backend", BACKENDS)
async def test_import_refuses_sessions_that_exist_unless_replacing(
    backend: str, make_store: MakeStore
) -> None:
    store = make_store(backend)
    await store.open()
    await _fill(store)
    exported = await _everything(store, "alice")
    await store.add_message("alice", "trip", "user", "said after the export", "complete")
    with pytest.raises(SessionExists) as refused:
        await store.import_sessions([*exported, ArchivedSession("erin", "e1", "t", {}, 1.0, 2.0)])
    assert refused.value.keys == [("alice", "trip")]
    assert await store.get_session("erin", "e1") is None  # nothing was written
    assert len(await store.messages("alice", "trip")) == 5

    await store.import_sessions(exported, replace=True)
    assert [m.content for m in await store.messages("alice", "trip")] == [
        "Find me sushi",
        "Sushi Dai",
        "What time is it?",
        TOOL_TEXT,
    ]


@pytest.mark.parametrize(("sslmode", "encrypted"), [("require", "t"), ("disable", "f")])
async def test_sslmode_in_the_url_is_honoured(
    postgres: PostgresServer, sslmode: str, encrypted: str
) -> None:
    """Platforms put sslmode in DATABASE_URL (Heroku's needs TLS): the store's connections
    follow it, as pg_stat_ssl sees them from the server's side."""
    url = postgres.new_database()
    store = PostgresSessionStore(f"{url}?sslmode={sslmode}")
    try:
        await store.open()
        await store.open_session("alice", "s1", "t")
        name = url.rsplit("/", 1)[1]
        seen = postgres.psql(
            "SELECT DISTINCT ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)"
            f" WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        assert seen == encrypted
    finally:
        await store.close()


async def test_a_users_pictures_are_kept_byte_for_byte(store: SessionStore) -> None:
    """Pictures sent with a message are stored with it, in SQLite and PostgreSQL alike, and
    come back (and go into an export) as the same bytes and type."""
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64
    gif = b"GIF89a" + b"\x00\xff" * 100
    pictures = (ImagePart(png, "image/png"), ImagePart(gif, "image/gif"))
    await store.open_session("alice", "pics", "t")
    await store.add_message("alice", "pics", "user", "What is this?", "complete", parts=pictures)
    [asked] = await store.messages("alice", "pics")
    assert asked.parts == pictures
    [archived] = [s async for s in store.export_sessions("alice")]
    assert archived.messages[0].parts == pictures
