"""The ``<think>`` splitter gives the same reasoning and answer however the content is cut
into pieces, and holds back no more of an ordinary answer than a partial tag needs."""

from __future__ import annotations

import pytest

from plugins.providers.think_tags import ThinkSplitter, split_whole

# (content, reasoning, answer)
SAMPLES = [
    ("<think>I should greet.</think>\n\nHello there", "I should greet.", "Hello there"),
    ("  \n<think>\nStep one.\nStep two.\n</think>\nAnswer.", "Step one.\nStep two.\n", "Answer."),
    ("<think></think>Just this.", "", "Just this."),
    ("<think>a < b and </thin is not the end</think>ok", "a < b and </thin is not the end", "ok"),
    ("<think>cut off at the length limit", "cut off at the length limit", ""),
    ("Hello <think>not a block</think>", "", "Hello <think>not a block</think>"),
    ("<thinking>is not the tag", "", "<thinking>is not the tag"),
    ("  indented answer", "", "  indented answer"),
    ("<thi", "", "<thi"),
    ("", "", ""),
    ("<think>مرحبا 👋🏽</think>\r\n🌍 سلام", "مرحبا 👋🏽", "🌍 سلام"),
    ("<think>x</think>\n\n<think>y</think>", "x", "<think>y</think>"),
]


def run(pieces: list[str]) -> tuple[str, str]:
    splitter = ThinkSplitter()
    thought: list[str] = []
    answer: list[str] = []
    for piece in pieces:
        t, a = splitter.feed(piece)
        thought.append(t)
        answer.append(a)
    t, a = splitter.finish()
    return "".join([*thought, t]), "".join([*answer, a])


@pytest.mark.parametrize(("content", "reasoning", "answer"), SAMPLES)
def test_every_split_gives_the_same_result(content: str, reasoning: str, answer: str) -> None:
    assert split_whole(content) == (reasoning, answer)
    assert run(list(content)) == (reasoning, answer)  # one character at a time
    for i in range(len(content) + 1):
        assert run([content[:i], content[i:]]) == (reasoning, answer), i
        for j in range(i, len(content) + 1):
            assert run([content[:i], content[i:j], content[j:]]) == (reasoning, answer), (i, j)


@pytest.mark.parametrize(
    "content", ["Hello", "  <b>bold</b>", "<thinking aloud", "\n\n<", "<th!nk>"]
)
def test_an_ordinary_answer_is_held_back_only_while_it_could_be_the_tag(content: str) -> None:
    splitter = ThinkSplitter()
    out = ""
    for i, char in enumerate(content, 1):
        out += splitter.feed(char)[1]
        start = content[:i].lstrip()
        could_be_tag = not start or "<think>".startswith(start)
        if not could_be_tag:
            assert out == content[:i]  # everything so far handed on, untouched
            assert splitter.passing
    assert out + splitter.finish()[1] == content


def test_the_tag_cut_anywhere_streams_reasoning_as_it_comes() -> None:
    splitter = ThinkSplitter()
    assert splitter.feed("<thi") == ("", "")
    assert splitter.feed("nk>Let me") == ("Let me", "")
    assert splitter.feed(" see</th") == (" see", "")  # the partial close tag held back
    assert splitter.feed("ink>\n") == ("", "")
    assert splitter.feed("\nHi") == ("", "Hi")
    assert splitter.passing
    assert splitter.feed("<think>") == ("", "<think>")
