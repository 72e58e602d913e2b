"""A wrapper stage that rewrites the answer's text, whole words at a time.

Chunks cut text anywhere: ``"write to ann@exa"`` then ``"mple.com now"``. A filter that looked
at each chunk alone would miss what straddles the cut. :class:`TextFilter` holds back the
text after the last break (whitespace, by default) until the next chunk completes it, hands
each run of whole words to :meth:`TextFilter.transform`, and flushes what is left when the
answer ends (or fails). The pipeline then gives ``complete`` the filtered text as its
``message``, so a filter is only its transform::

    class Shout(TextFilter):
        def transform(self, text: str) -> str:
            return text.upper()
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import ClassVar

from server.contract.events import TERMINAL_TYPES, Chunk, Event
from server.contract.stages import Rest, Turn, WrapperStage

__all__ = ["TextFilter"]


class TextFilter(WrapperStage):
    """Subclass and implement :meth:`transform`.

    ``breaks`` says where text may be cut safely (after its last match); ``max_hold`` bounds
    how much text is held back waiting for one, so a long run without a break still flows.
    """

    breaks: ClassVar[re.Pattern[str]] = re.compile(r"\s")
    max_hold: ClassVar[int] = 200

    def transform(self, text: str) -> str:
        """The text to send instead of ``text`` (a run of whole words, with its breaks)."""
        raise NotImplementedError

    def _safe_end(self, text: str) -> int:
        """Where ``text`` can be cut: after its last break (0 when there is none)."""
        end = 0
        for match in self.breaks.finditer(text):
            end = match.end()
        return end

    async def wrap(self, turn: Turn, rest: Rest) -> AsyncIterator[Event]:
        held = ""
        async for event in rest(turn):
            if isinstance(event, Chunk):
                held += event.content
                cut = self._safe_end(held)
                if cut == 0 and len(held) > self.max_hold:
                    cut = len(held)
                if cut:
                    ready, held = held[:cut], held[cut:]
                    text = self.transform(ready)
                    if text:
                        yield Chunk(text)
                continue
            if event.type in TERMINAL_TYPES and held:
                text, held = self.transform(held), ""
                if text:
                    yield Chunk(text)
            yield event
