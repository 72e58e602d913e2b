"""A ``<think>…</think>`` block that opens a streamed answer, split off as reasoning.

Some OpenAI-compatible servers (llama.cpp and vLLM without a reasoning parser, Ollama's
older versions, many DeepSeek-R1 and Qwen3 deployments) put the model's reasoning into the
answer's ``content`` itself, wrapped in ``<think>`` tags. :class:`ThinkSplitter` takes the
content as it streams, in pieces cut anywhere (``<thi`` + ``nk>``, ``</th`` + ``ink>``), and
hands back, for each piece, the reasoning and the answer text it can tell apart so far:

* whitespace before ``<think>`` is allowed; the newlines that follow either tag are trimmed
  (templates put them there for the tokenizer, not for the reader);
* content that does not open with ``<think>`` is answer text, untouched: only as many
  characters are held back as could still be the start of the tag, and once the first
  character that cannot be is seen, :attr:`ThinkSplitter.passing` is true and every later
  piece is the answer as it came (the caller may then stop feeding the splitter);
* a ``<think>`` that appears later in the answer is text: only an opening block counts;
* content that ends inside the block (the answer cut at its length limit) was all reasoning.
"""

from __future__ import annotations

__all__ = ["ThinkSplitter", "split_whole"]

OPEN = "<think>"
CLOSE = "</think>"

_START = 0  # nothing but whitespace, or a prefix of <think>, seen so far
_THINKING = 1  # inside the block
_AFTER = 2  # the block closed; newlines after it are trimmed
_PASSING = 3  # answer text from here on, as it comes


def _partial_tail(text: str, tag: str) -> int:
    """How many characters at the end of ``text`` could be the start of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ThinkSplitter:
    """Splits one answer's content stream: ``feed`` each piece, ``finish`` at the end; each
    returns ``(reasoning, answer)``, either possibly empty."""

    __slots__ = ("_held", "_state", "_trim")

    def __init__(self) -> None:
        self._state = _START
        self._held = ""  # characters not handed back yet: a partial tag, leading whitespace
        self._trim = False  # trim the newlines that open the reasoning

    @property
    def passing(self) -> bool:
        """Every piece from now on is answer text, as it comes."""
        return self._state == _PASSING

    def feed(self, piece: str) -> tuple[str, str]:
        state = self._state
        if state == _PASSING:
            return "", piece
        if state == _START:
            held = self._held + piece
            opening = held.lstrip()
            if not opening or (len(opening) < len(OPEN) and OPEN.startswith(opening)):
                self._held = held  # still maybe the tag
                return "", ""
            if not opening.startswith(OPEN):
                self._held = ""
                self._state = _PASSING
                return "", held  # not a think block: the content as it came
            self._held = ""
            self._state = _THINKING
            self._trim = True
            piece = opening[len(OPEN) :]
            if not piece:
                return "", ""
            return self._think(piece)
        if state == _THINKING:
            return self._think(piece)
        return "", self._after(piece)

    def _think(self, piece: str) -> tuple[str, str]:
        text = self._held + piece
        if self._trim:
            text = text.lstrip("\r\n")
            if not text:
                self._held = ""
                return "", ""
            self._trim = False
        end = text.find(CLOSE)
        if end < 0:
            keep = _partial_tail(text, CLOSE)
            self._held = text[len(text) - keep :] if keep else ""
            return text[: len(text) - keep], ""
        self._held = ""
        self._state = _AFTER
        return text[:end], self._after(text[end + len(CLOSE) :])

    def _after(self, piece: str) -> str:
        answer = piece.lstrip("\r\n")
        if answer:
            self._state = _PASSING
        return answer

    def finish(self) -> tuple[str, str]:
        """What was held back, at the end of the content."""
        held, self._held = self._held, ""
        state = self._state
        self._state = _PASSING
        if state == _THINKING:
            return held, ""  # the answer ended inside the block: it was all reasoning
        return "", held  # a bare prefix of the tag, or whitespace: the answer's own


def split_whole(content: str) -> tuple[str, str]:
    """``(reasoning, answer)`` of a whole answer's content (a plain call's)."""
    splitter = ThinkSplitter()
    thought, answer = splitter.feed(content)
    more_thought, more_answer = splitter.finish()
    return thought + more_thought, answer + more_answer
