from collections.abc import AsyncIterator

from server import Chunk, Event, Rest, Turn, WrapperStage, chunk


class Shout(WrapperStage):
    """Upper-cases the answer. The pipeline makes complete.message from what it let through."""

    async def wrap(self, turn: Turn, rest: Rest) -> AsyncIterator[Event]:
        async for event in rest(turn):
            if isinstance(event, Chunk):
                event = chunk(event.content.upper())
            yield event
