import time
from collections.abc import AsyncIterator

from server import Event, Stage, Turn


class RememberTime(Stage):
    """Lets the model know the time: the context stage puts memory into the prompt."""

    async def run(self, turn: Turn) -> AsyncIterator[Event]:
        turn.memory["local_time"] = time.strftime("%H:%M")
        return
        yield  # a stage with no events of its own is still an async generator
