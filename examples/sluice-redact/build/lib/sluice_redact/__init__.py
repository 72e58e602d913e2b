"""A wrapper stage that hides e-mail addresses in the answer as it streams.

An address can arrive split over several chunks ("bob@exa" + "mple.com"), so the stage holds
back the text after the last whitespace until it knows the word is complete, and rewrites
``complete.message`` the same way: all chunks joined still equal the final message.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from server import Event, Rest, StageOptions, Turn, WrapperStage, chunk

__all__ = ["RedactEmailStage"]

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


class RedactOptions(StageOptions):
    replacement: str = "[email hidden]"


class RedactEmailStage(WrapperStage):
    Options = RedactOptions
    options: RedactOptions

    def redact(self, text: str) -> str:
        return EMAIL.sub(self.options.replacement, text)

    async def wrap(self, turn: Turn, rest: Rest) -> AsyncIterator[Event]:
        pending = ""  # text not yet sent: it may end in the middle of an address
        async for event in rest(turn):
            if event["type"] == "chunk":
                pending += event["content"]
                cut = max(pending.rfind(" "), pending.rfind("\n")) + 1
                if cut:
                    ready, pending = pending[:cut], pending[cut:]
                    yield chunk(self.redact(ready))
                continue
            if event["type"] in ("complete", "error") and pending:
                yield chunk(self.redact(pending))
                pending = ""
            if event["type"] == "complete":
                event["message"] = self.redact(event["message"])
            yield event
