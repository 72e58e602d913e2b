import re

from server import StageOptions, TextFilter


class WordFilterOptions(StageOptions):
    words: list[str] = ["darn"]
    mask: str = "*"


class WordFilter(TextFilter):
    """Masks listed words, even when a word arrives split across two chunks."""

    Options = WordFilterOptions
    options: WordFilterOptions

    async def startup(self) -> None:
        listed = "|".join(re.escape(word) for word in self.options.words)
        self.pattern = re.compile(rf"\b(?:{listed})\b", re.IGNORECASE)

    def transform(self, text: str) -> str:
        return self.pattern.sub(lambda match: self.options.mask * len(match[0]), text)
