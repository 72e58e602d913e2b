"""Renaming and searching a user's conversations, against both history backends: SQLite's
FTS5 in a file, and PostgreSQL's full-text search on a real server."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.contract import AnswerFacts, SessionStore
from server.stores.search import query_words
from tests.support import stores
from tests.support.postgres import PostgresServer
from tests.support.stores import MakeStore, postgres_history_at, sqlite_history_at

pytestmark = pytest.mark.anyio

FACTS = AnswerFacts(provider="demo", model="demo-1", mode="stream")

# The fixtures of tests/support/stores.py, named here so that pytest finds them.
make_store = stores.make_store
store = stores.store


async def search(store: SessionStore, user: str, query: str) -> list[tuple[str, str | None]]:
    """``(session_id, snippet)`` of each match. Each database cuts its snippet in its own way
    (a few words either side of the match): compare with :func:`around`."""
    found = await store.search_sessions(user, query_words(query))
    return [(match.session_id, match.snippet) for match in found]


def around(snippet: str | None, *words: str) -> bool:
    """Whether ``snippet`` is a piece of the message holding ``words`` in that order."""
    return snippet is not None and " ".join(words) in snippet


async def streamed_answer(store: SessionStore, user: str, session: str, pieces: list[str]) -> int:
    """An answer saved as the session stage saves one: its first piece as the message, the
    next ones appended while it streams, the last with its facts."""
    asked = await store.add_message(user, session, "user", "tell me", "complete")
    answer = await store.add_message(
        user, session, "assistant", pieces[0], "incomplete", reply_to=asked
    )
    for piece in pieces[1:-1]:
        await store.append_to_message(user, session, answer, piece, "incomplete")
    await store.append_to_message(user, session, answer, pieces[-1], "complete", facts=FACTS)
    return answer


async def test_search_finds_a_streamed_answer_by_words_split_across_its_saves(
    store: SessionStore,
) -> None:
    await store.open_session("alice", "trip", "Planning a trip")
    # "Shinjuku" arrives in two saves: the index holds the whole text, not the pieces.
    await streamed_answer(
        store, "alice", "trip", ["Try the ramen near Shin", "juku station, then ", "walk east."]
    )
    await store.open_session("alice", "other", "Something else")
    await store.add_message("alice", "other", "user", "Nothing about noodles", "complete")

    [(session, snippet)] = await search(store, "alice", "shinjuku")
    assert session == "trip" and around(snippet, "near", "Shinjuku", "station")
    # Words are beginnings of words, in any case and order; every word must be there.
    assert [s for s, _ in await search(store, "alice", "STAT Ram")] == ["trip"]
    assert await search(store, "alice", "ramen pizza") == []
    # A query of punctuation and operators is words or nothing, never a syntax error.
    assert [s for s, _ in await search(store, "alice", '"ramen* (:* &|! -')] == ["trip"]
    assert await search(store, "alice", '"*" :* ()') == []
    # Another user's history is not searched.
    await store.open_session("bob", "bobs", "Bob's ramen")
    await store.add_message("bob", "bobs", "user", "ramen in Shinjuku", "complete")
    assert [s for s, _ in await search(store, "alice", "ramen")] == ["trip"]
    assert [s for s, _ in await search(store, "bob", "shinjuku")] == ["bobs"]


async def test_titles_match_and_a_rename_is_kept_and_searched(store: SessionStore) -> None:
    await store.open_session("alice", "s1", "Find me a restaurant")
    await store.add_message("alice", "s1", "user", "in Tokyo please", "complete")
    before = await store.get_session("alice", "s1")
    assert before is not None

    assert await store.rename_session("alice", "s1", "Café crawl in Kyōto") is True
    after = await store.get_session("alice", "s1")
    assert after is not None and after.title == "Café crawl in Kyōto"
    # Renaming is not news: the conversation keeps its place in the list.
    assert after.updated_at == before.updated_at
    # The title matches, accents aside; a title-only match has no snippet.
    assert await search(store, "alice", "cafe kyoto") == [("s1", None)]
    assert await search(store, "alice", "restaurant") == []
    # Someone else's session, or none: nothing renamed.
    assert await store.rename_session("bob", "s1", "mine now") is False
    assert await store.rename_session("alice", "nope", "x") is False
    again = await store.get_session("alice", "s1")
    assert again is not None and again.title == "Café crawl in Kyōto"


async def test_replaced_and_deleted_text_is_no_longer_found(store: SessionStore) -> None:
    await store.open_session("alice", "s1", "Answers")
    answer = await streamed_answer(
        store, "alice", "s1", ["The first ", "draft mentions ", "Osaka."]
    )
    await store.update_message("alice", "s1", answer, "The final text mentions Nagoya.", "complete")
    assert await search(store, "alice", "osaka") == []
    [(session, snippet)] = await search(store, "alice", "nagoya")
    assert session == "s1" and around(snippet, "text", "mentions", "Nagoya")
    # The newest matching message gives the snippet.
    await store.add_message("alice", "s1", "user", "And Nagoya castle?", "complete")
    [(session, snippet)] = await search(store, "alice", "nagoya")
    assert session == "s1" and around(snippet, "Nagoya", "castle")

    assert await store.delete_session("alice", "s1") is True
    assert await search(store, "alice", "nagoya") == []


async def test_newest_conversation_first_and_the_limit_holds(store: SessionStore) -> None:
    for name in ("old", "middle", "new"):
        await store.open_session("alice", name, f"About {name}")
        await store.add_message("alice", name, "user", f"ramen talk {name}", "complete")
    found = await store.search_sessions("alice", query_words("ramen"), limit=2)
    assert [m.session_id for m in found] == ["new", "middle"]


async def test_imported_history_is_searchable(store: SessionStore, tmp_path: Path) -> None:
    await store.open_session("alice", "s1", "Exported")
    await streamed_answer(store, "alice", "s1", ["Udon ", "in Takamatsu."])
    archived = [session async for session in store.export_sessions("alice")]
    await store.import_sessions(archived, replace=True)
    [(session, snippet)] = await search(store, "alice", "takamatsu")
    assert session == "s1" and around(snippet, "Udon", "in", "Takamatsu")


# A history as revision 0004 left it: an answer whose text was partly appended as it streamed.
OLD_ROWS = [
    "INSERT INTO sessions (user_id, session_id, title, created_at, updated_at)"
    " VALUES ('alice', 'old', 'Before search', 1, 1)",
    "INSERT INTO messages (id, user_id, session_id, role, content, status, created_at)"
    " VALUES (7, 'alice', 'old', 'assistant', 'Soba in Naga', 'complete', 1)",
    "INSERT INTO message_parts (user_id, session_id, message_id, seq, content)"
    " VALUES ('alice', 'old', 7, 1, 'no.')",
]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_history_written_before_the_index_is_searchable_after_the_upgrade(
    backend: str, make_store: MakeStore, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    database: Path | str
    if backend == "sqlite":
        database = tmp_path / "history.sqlite3"
        sqlite_history_at(database, "0004", OLD_ROWS)
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        database = server.new_database()
        await postgres_history_at(database, "0004", OLD_ROWS)
    upgraded = make_store(backend, database)  # brings the schema to the head
    await upgraded.open()
    [(session, snippet)] = await search(upgraded, "alice", "nagano")
    assert session == "old" and around(snippet, "Soba", "in", "Nagano")
