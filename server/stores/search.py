"""What the history stores share to search a user's conversations: the words of a query,
how a title matches them, and how message hits and title hits become one list.

Messages are searched in each database's own full-text index (``message_search``, revision
0006); titles, short and few per user, are matched here, by the same rule as the index
applies to messages: every word of the query begins a word of the title, case and accents
aside (PostgreSQL's ``simple`` configuration keeps accents in messages: "cafe" finds
"Café" there only in a title).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence

from server.contract.stores import SessionMatch, SessionRecord

__all__ = ["MAX_WORDS", "query_words", "ranked", "title_matches"]

# A search of more words than this finds nothing more useful, and each costs the index a term.
MAX_WORDS = 8
# A "word" longer than this is no word anybody types; cut, it still finds what begins it.
_MAX_WORD_CHARS = 64
# Letters and digits only: what both indexes split text into, so a query word never holds
# an operator of either query language (FTS5's quotes and stars, tsquery's & | ! :).
_WORD = re.compile(r"[^\W_]+")


def _fold(text: str) -> str:
    """Lower case without accents ("Café" -> "cafe"), as FTS5's ``remove_diacritics``."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def query_words(query: str) -> list[str]:
    """The words a search looks for, in lower case, in order, without repeats (accents are
    kept: each index folds them as it folds its text)."""
    words: list[str] = []
    for word in _WORD.findall(query.casefold()):
        word = word[:_MAX_WORD_CHARS]
        if word not in words:
            words.append(word)
    return words[:MAX_WORDS]


def title_matches(title: str, words: Sequence[str]) -> bool:
    title_words = _WORD.findall(_fold(title))
    return all(any(t.startswith(_fold(word)) for t in title_words) for word in words)


def ranked(
    sessions: Iterable[SessionRecord],
    words: Sequence[str],
    snippets: Mapping[str, str],
    limit: int,
) -> list[SessionMatch]:
    """``sessions`` (the user's, newest first) that match by title or have a snippet from a
    matching message, newest first."""
    found = [
        SessionMatch(s.session_id, s.title, s.updated_at, snippets.get(s.session_id))
        for s in sessions
        if s.session_id in snippets or title_matches(s.title, words)
    ]
    return found[:limit]
