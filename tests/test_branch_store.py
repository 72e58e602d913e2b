"""Conversations as trees in both history backends: edits and regenerations make siblings,
the current branch is what ``messages`` gives, switching moves the leaf, and export, import
and the schema upgrade keep (or make) the tree."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from server.contract import ArchivedSession, SessionStore
from server.stores.archive import export_history, import_history, read_archive
from server.stores.postgres import PostgresSessionStore
from server.stores.sqlite import SQLiteSessionStore
from tests.support import stores
from tests.support.postgres import PostgresServer
from tests.support.stores import MakeStore, postgres_history_at, sqlite_history_at

pytestmark = pytest.mark.anyio

# The fixtures of tests/support/stores.py, named here so that pytest finds them.
make_store = stores.make_store
store = stores.store


async def _tree_of_edits(store: SessionStore) -> dict[str, int]:
    """hi → hello; "what is 2+2" → "4", regenerated as "four"; then the question edited to
    "what is 3+3" → "6". Ids by name."""
    await store.open_session("alice", "s", "hi")
    ids: dict[str, int] = {}
    ids["hi"] = await store.add_message("alice", "s", "user", "hi", "complete")
    ids["hello"] = await store.add_message(
        "alice", "s", "assistant", "hello", "complete", reply_to=ids["hi"], parent=ids["hi"]
    )
    ids["q2"] = await store.add_message("alice", "s", "user", "what is 2+2", "complete")
    ids["4"] = await store.add_message(
        "alice", "s", "assistant", "4", "complete", reply_to=ids["q2"], parent=ids["q2"]
    )
    ids["four"] = await store.add_message(
        "alice", "s", "assistant", "four", "complete", reply_to=ids["q2"], parent=ids["q2"]
    )
    ids["q3"] = await store.add_message(
        "alice", "s", "user", "what is 3+3", "complete", parent=ids["hello"]
    )
    ids["6"] = await store.add_message(
        "alice", "s", "assistant", "6", "complete", reply_to=ids["q3"], parent=ids["q3"]
    )
    return ids


async def test_edits_and_regenerations_make_a_tree_whose_branch_is_the_history(
    store: SessionStore,
) -> None:
    ids = await _tree_of_edits(store)
    branch = await store.messages("alice", "s")
    assert [m.content for m in branch] == ["hi", "hello", "what is 3+3", "6"]
    assert [m.parent_id for m in branch] == [None, ids["hi"], ids["hello"], ids["q3"]]

    tree = await store.message_tree("alice", "s")
    assert tree.leaf_id == ids["6"] and len(tree.messages) == 7
    q3 = tree.get(ids["q3"])
    assert q3 is not None
    assert [m.content for m in tree.siblings(q3)] == ["what is 2+2", "what is 3+3"]
    four = tree.get(ids["four"])
    assert four is not None
    assert [m.content for m in tree.siblings(four)] == ["4", "four"]
    # Back to the first question: the branch goes on to its newest answer.
    assert tree.latest_leaf(ids["q2"]) == ids["four"]


async def test_switching_the_leaf_changes_the_branch_and_stays(store: SessionStore) -> None:
    ids = await _tree_of_edits(store)
    assert await store.set_leaf("alice", "s", ids["4"])
    assert [m.content for m in await store.messages("alice", "s")] == [
        "hi",
        "hello",
        "what is 2+2",
        "4",
    ]
    record = await store.get_session("alice", "s")
    assert record is not None and record.leaf_id == ids["4"]
    # A message carries on the branch switched to.
    more = await store.add_message("alice", "s", "user", "and 4+4?", "complete")
    assert (await store.messages("alice", "s"))[-1].parent_id == ids["4"]
    assert (await store.message_tree("alice", "s")).leaf_id == more
    # Another session's message (or none) is refused and changes nothing.
    await store.open_session("alice", "other", "t")
    elsewhere = await store.add_message("alice", "other", "user", "x", "complete")
    assert not await store.set_leaf("alice", "s", elsewhere)
    assert not await store.set_leaf("bob", "s", ids["6"])
    assert (await store.message_tree("alice", "s")).leaf_id == more


async def _everything(store: SessionStore) -> list[ArchivedSession]:
    return [session async for session in store.export_sessions(None)]


def _shape(session: ArchivedSession) -> tuple[object, ...]:
    """The tree by contents: each message with its parent's content, and the leaf's."""
    by_id = {m.id: m for m in session.messages}
    leaf = by_id[session.leaf_id].content if session.leaf_id is not None else None
    return (
        leaf,
        [
            (m.content, None if m.parent_id is None else by_id[m.parent_id].content)
            for m in session.messages
        ],
    )


@pytest.mark.parametrize(("source", "target"), [("sqlite", "postgres"), ("postgres", "sqlite")])
async def test_export_and_import_keep_the_tree_and_the_leaf(
    source: str, target: str, make_store: MakeStore
) -> None:
    origin = make_store(source)
    await origin.open()
    ids = await _tree_of_edits(origin)
    await origin.set_leaf("alice", "s", ids["4"])
    out = io.StringIO()
    await export_history(origin, out)
    sessions = read_archive(out.getvalue().splitlines())

    destination = make_store(target)
    await destination.open()
    await destination.open_session("dave", "d", "first, so that ids differ")
    await destination.add_message("dave", "d", "user", "shift the ids", "complete")
    await import_history(destination, sessions)
    [moved] = [s for s in await _everything(destination) if s.session_id == "s"]
    [original] = await _everything(origin)
    assert _shape(moved) == _shape(original)
    assert _shape(moved)[0] == "4"
    assert [m.content for m in await destination.messages("alice", "s")] == [
        "hi",
        "hello",
        "what is 2+2",
        "4",
    ]


def test_an_export_from_before_trees_reads_as_one_line() -> None:
    """Lines without ``parent_id`` (an older sluice's export) chain in order."""
    lines = [
        '{"type":"sluice.history","version":1}',
        '{"type":"session","user_id":"a","session_id":"s","title":"t","memory":{},'
        '"created_at":1,"updated_at":2}',
        *(
            f'{{"type":"message","user_id":"a","session_id":"s","id":{i},"role":"{role}",'
            f'"content":"{i}","status":"complete","created_at":1}}'
            for i, role in ((3, "user"), (5, "assistant"), (9, "user"))
        ),
    ]
    [session] = read_archive(lines)
    assert [m.parent_id for m in session.messages] == [None, 3, 5]
    assert session.leaf_id == 9


# Two turns of one session interleaved (two tabs), then a third, as revision 0004 kept them.
_AT_0004 = (
    "INSERT INTO sessions (user_id, session_id, title, memory, created_at, updated_at)"
    " VALUES ('alice', 'trip', 'Tokyo', '{}', 1.5, 2.5)",
    "INSERT INTO sessions (user_id, session_id, title, memory, created_at, updated_at)"
    " VALUES ('bob', 'empty', 'nothing', '{}', 1.5, 2.5)",
    *(
        "INSERT INTO messages (user_id, session_id, role, content, status, created_at)"
        f" VALUES ('alice', 'trip', '{role}', '{content}', 'complete', 2.0)"
        for role, content in (
            ("user", "one"),
            ("user", "two"),
            ("assistant", "1"),
            ("assistant", "2"),
            ("user", "three"),
        )
    ),
)


async def _check_chained(store: SessionStore) -> None:
    branch = await store.messages("alice", "trip")
    assert [m.content for m in branch] == ["one", "two", "1", "2", "three"]
    assert [m.parent_id for m in branch] == [None, *(m.id for m in branch[:-1])]
    assert (await store.message_tree("alice", "trip")).leaf_id == branch[-1].id
    assert await store.messages("bob", "empty") == []
    added = await store.add_message("alice", "trip", "assistant", "3", "complete")
    assert (await store.messages("alice", "trip"))[-1].id == added


async def test_a_sqlite_history_at_0004_upgrades_to_one_branch(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite3"
    sqlite_history_at(path, "0004", _AT_0004)
    store = SQLiteSessionStore(path)
    try:
        await _check_chained(store)
    finally:
        await store.close()


async def test_a_postgres_history_at_0004_upgrades_to_one_branch(
    postgres: PostgresServer,
) -> None:
    url = postgres.new_database()
    await postgres_history_at(url, "0004", _AT_0004)
    store = PostgresSessionStore(url, timeout=10)
    try:
        await store.open()
        await _check_chained(store)
    finally:
        await store.close()
