"""A full-text index of every message's text: ``message_search``, for searching one's history.

A message's text is its ``content`` followed by its ``message_parts`` (revision 0003), so no
index on ``messages.content`` alone would find an answer saved as it streamed. A row per
message here holds the whole text, kept by triggers in the database itself, so every way a
message is written (a turn, an import, a recovered answer) is covered alike:

- a message inserted is indexed with its text so far;
- a message whose ``content`` or ``status`` changes is indexed again, parts and all: an
  answer's last save always sets its status (and facts), so the finished text is what is
  found, while the saves in between (a part each, no change to the message's row) cost
  nothing more here;
- a message deleted leaves the index.

SQLite: an FTS5 table (``unicode61``, accents folded) whose rowid is the message's id.
PostgreSQL: a table with a ``tsvector`` of the text (the ``simple`` configuration: no stemming
in a language the text may not be in) under a GIN index.

Titles are not indexed: they are short and few per user, and matched from ``sessions``.

Revision ID: 0006
Revises: 0004 (the integrator re-points this at 0005 when both are merged)
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# A message's whole text, as the triggers and the backfill read it ({m}: the message row).
_SQLITE_TEXT = (
    "{m}.content || COALESCE((SELECT group_concat(content, '') FROM (SELECT content"
    " FROM message_parts WHERE user_id = {m}.user_id AND session_id = {m}.session_id"
    " AND message_id = {m}.id ORDER BY seq)), '')"
)
_POSTGRES_TEXT = (
    "{m}.content || COALESCE((SELECT string_agg(content, '' ORDER BY seq) FROM message_parts"
    " WHERE user_id = {m}.user_id AND session_id = {m}.session_id AND message_id = {m}.id), '')"
)


def _upgrade_sqlite() -> None:
    op.execute(
        "CREATE VIRTUAL TABLE message_search USING fts5("
        "body, user_id UNINDEXED, session_id UNINDEXED,"
        " tokenize = 'unicode61 remove_diacritics 2')"
    )
    insert = (
        "INSERT INTO message_search (rowid, body, user_id, session_id)"
        f" VALUES (new.id, {_SQLITE_TEXT.format(m='new')}, new.user_id, new.session_id);"
    )
    op.execute(f"CREATE TRIGGER message_search_insert AFTER INSERT ON messages BEGIN {insert} END")
    op.execute(
        "CREATE TRIGGER message_search_update AFTER UPDATE OF content, status ON messages BEGIN"
        f" DELETE FROM message_search WHERE rowid = old.id; {insert} END"
    )
    op.execute(
        "CREATE TRIGGER message_search_delete AFTER DELETE ON messages BEGIN"
        " DELETE FROM message_search WHERE rowid = old.id; END"
    )
    op.execute(
        "INSERT INTO message_search (rowid, body, user_id, session_id)"
        f" SELECT m.id, {_SQLITE_TEXT.format(m='m')}, m.user_id, m.session_id FROM messages m"
    )


def _upgrade_postgres() -> None:
    op.execute(
        "CREATE TABLE message_search ("
        " message_id bigint PRIMARY KEY, user_id text NOT NULL, session_id text NOT NULL,"
        " body text NOT NULL,"
        " document tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED)"
    )
    op.execute("CREATE INDEX message_search_document ON message_search USING GIN (document)")
    op.execute("CREATE INDEX message_search_by_user ON message_search (user_id)")
    op.execute(
        "CREATE FUNCTION message_search_sync() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF TG_OP <> 'INSERT' THEN DELETE FROM message_search WHERE message_id = OLD.id;"
        " END IF;"
        " IF TG_OP <> 'DELETE' THEN"
        " INSERT INTO message_search (message_id, user_id, session_id, body)"
        f" VALUES (NEW.id, NEW.user_id, NEW.session_id, {_POSTGRES_TEXT.format(m='NEW')});"
        " END IF; RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER message_search_sync AFTER INSERT OR DELETE OR UPDATE OF content, status"
        " ON messages FOR EACH ROW EXECUTE FUNCTION message_search_sync()"
    )
    op.execute(
        "INSERT INTO message_search (message_id, user_id, session_id, body)"
        f" SELECT m.id, m.user_id, m.session_id, {_POSTGRES_TEXT.format(m='m')} FROM messages m"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _upgrade_postgres()
    else:
        _upgrade_sqlite()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER message_search_sync ON messages")
        op.execute("DROP FUNCTION message_search_sync()")
    else:
        for name in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER message_search_{name}")
    op.execute("DROP TABLE message_search")
