"""A wrapper stage that hides e-mail addresses in the answer as it streams.

An address can arrive split over several chunks ("bob@exa" + "mple.com"). ``TextFilter``
holds back the text after the last whitespace until the word is complete, so ``transform``
only ever sees whole words; the pipeline gives ``complete`` the redacted text as its
message.
"""

from __future__ import annotations

import re

from server import StageOptions, TextFilter

__all__ = ["RedactEmailStage"]

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


class RedactOptions(StageOptions):
    replacement: str = "[email hidden]"


class RedactEmailStage(TextFilter):
    Options = RedactOptions
    options: RedactOptions

    def transform(self, text: str) -> str:
        return EMAIL.sub(self.options.replacement, text)
