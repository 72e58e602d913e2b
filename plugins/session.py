"""``session``: creates or resumes the conversation, and keeps what was said.

A wrapper: before the rest of the pipeline it loads the session's history and memory and
saves the user's message (so it survives whatever the model does next). While the answer
streams it is saved as it grows — every ``save_every_seconds`` from its first chunk, or
sooner whenever ``save_every_chars`` more arrived — with the status ``incomplete``, so that
a process killed mid-answer leaves what the user had seen in history, marked incomplete,
short of at most one save interval. (The first save waits for the interval too, rather than
coming with the first chunk: most answers end within a second, and then the final save is
their only write, at no moment when the user is waiting for text.) At the end the answer gets
its final text and status — ``complete``, ``incomplete`` (interrupted, stopped, timed out
with text) or ``error`` — its facts (provider, model, mode, fallback, tokens, time to first
token, duration, the user message it replies to), and what this turn changed in the
session's memory is merged into it (another turn of the session keeps its own changes).

What is saved is what was handed on towards the client: a chunk counts once the consumer
asks for the next event, so an event the stream log could not take (an overflowing log) is
not in history either.

A turn in which the model called tools keeps them: the ``tool_call`` and ``tool_result``
events handed on are saved with the answer as its ``parts``, in order between the text of
each round (read from the events, like the text, so history holds what the client was
shown). Later turns give them back to the model as it was given them: the assistant's text
and calls, then a ``tool`` message with the results, round by round. They are saved with
the final text; the drafts saved as the answer streams, and an answer kept after its process
died (``turn_lost``), are text only.

The model's reasoning is kept the same way, apart from the answer: the ``reasoning`` events
handed on become one ``ReasoningPart`` per block (the pieces between two other events
joined), in the answer's ``parts`` where it came, with its ``duration_ms``: from the block's
first piece to the next text, tool call or end of the turn. The message's ``content`` stays
the answer alone. Later turns give the blocks back with the round they belong to, and each
provider drops what it cannot use (none of them takes another's reasoning).

A conversation is a tree (edits and regenerations make alternatives): the model is given
the current branch only, the path to the message the new one follows. A turn that edits a
message (``turn.edit_of``) saves the new user message beside it, after the same earlier
messages; one that answers a message again (``turn.answer_again``) saves no user message and
adds the new answer beside that message's earlier answers. The new message becomes the
session's current leaf.

A turn whose process died mid-answer is kept by the instance that finds it (shared stores):
the same rules (``turn_lost``), with what the stream log says its client was sent.

History that cannot be reached (a shared database down) ends the turn before any model is
asked, with a retryable error: an answer the server could not keep would be lost history.

A turn whose client keeps the conversation itself (``turn.client_history`` is set: the
OpenAI-compatible API without ``X-Session-Id``) is not stored: its history is what the client
sent, and nothing is saved. Such a client sends the whole conversation again with every
request; storing each request would make one new session per call, each repeating the last.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog
from pydantic import Field

from server import (
    AnswerFacts,
    Chunk,
    Complete,
    Error,
    ErrorCode,
    Event,
    LostTurn,
    Message,
    Part,
    Reasoning,
    ReasoningPart,
    Rest,
    SessionStore,
    StageOptions,
    StoredMessage,
    StoreUnavailable,
    TextPart,
    ToolCall,
    ToolCallEvent,
    ToolErrorKind,
    ToolResult,
    ToolResultEvent,
    Turn,
    WrapperStage,
    error,
)

__all__ = ["SessionStage"]

log = structlog.get_logger("sluice.session")


# Errors that end a turn before any model is asked.
_NO_ANSWER = frozenset(
    {ErrorCode.RATE_LIMITED, ErrorCode.TOO_MANY_STREAMS, ErrorCode.BUDGET_EXHAUSTED}
)


class SessionOptions(StageOptions):
    # How many earlier messages to load for the prompt (the context stage trims further).
    history_messages: int = 40
    title_chars: int = 60
    # The answer in progress is saved at most this often, and whenever this many characters
    # arrived since the last save: what a crash can lose, against one small write each
    # (which adds only the text that arrived since the last save).
    save_every_seconds: float = Field(1.0, gt=0)
    save_every_chars: int = Field(16384, ge=1)


class _Draft:
    """The answer as it streams, and its row in history once it has text.

    The per-chunk path is two attribute updates and one comparison, inline in ``wrap``: at
    tens of thousands of chunks a second even a clock read per chunk shows. The time-based
    save is a timer that makes the next chunk's comparison true; so is a reasoning block, whose
    end (the first chunk after it) ``save`` notes before it decides whether to save.

    Each save after the first adds only the parts that arrived since the last one
    (``append_to_message``), and the final save only the rest: saving the whole text each
    time made a long answer cost the square of its length, and a 19 MB answer held the
    process (every other user's stream) for over a minute.
    """

    __slots__ = (
        "_timer",
        "asked",
        "chars",
        "due_chars",
        "every_chars",
        "every_seconds",
        "first_text",
        "leaf_before",
        "message_id",
        "parts",
        "resume_due",
        "saved_chars",
        "saved_parts",
        "session_id",
        "steps",
        "store",
        "thinking",
        "uncertain",
        "user_id",
    )

    def __init__(
        self, store: SessionStore, turn: Turn, session_id: str, asked: int, o: SessionOptions
    ) -> None:
        self.store = store
        self.user_id = turn.user_id
        self.session_id = session_id
        self.asked = asked  # the user message this answers
        self.parts: list[str] = []
        self.chars = 0
        self.first_text: float | None = None
        self.message_id: int | None = None
        # How much of ``parts`` the store has: the next save sends only what follows.
        self.saved_parts = 0
        self.saved_chars = 0
        # A save failed, perhaps after the store took it: the final save rewrites the whole
        # text rather than append to a text it cannot be sure of.
        self.uncertain = False
        self.every_seconds = o.save_every_seconds
        self.every_chars = o.save_every_chars
        self.due_chars = 0  # the first chunk starts the clocks
        self._timer: asyncio.TimerHandle | None = None
        # Tool calls and results and reasoning blocks handed on, each with how much text
        # came before it.
        self.steps: list[tuple[int, ToolCall | ToolResult | _Thought]] = []
        self.thinking: _Thought | None = None  # the reasoning block still going on
        self.resume_due = 0  # ``due_chars`` while a reasoning block holds it at 0
        # A regeneration moved the leaf to its question: where it was, to go back to when
        # no answer comes of it.
        self.leaf_before: int | None = None

    def tool_event(self, event: ToolCallEvent | ToolResultEvent) -> None:
        self.end_thinking()
        part: ToolCall | ToolResult
        if isinstance(event, ToolCallEvent):
            part = ToolCall(event.call_id, event.name, dict(event.arguments))
        else:
            part = ToolResult(event.call_id, event.name, event.ok, event.content, event.error)
        self.steps.append((self.chars, part))

    def reasoning_event(self, event: Reasoning) -> None:
        block = self.thinking
        if block is None:
            block = self.thinking = _Thought(time.monotonic())
            self.steps.append((self.chars, block))
            # The next chunk calls ``save``, which ends the block first.
            self.resume_due, self.due_chars = self.due_chars, 0
        block.pieces.append(event.content)

    def end_thinking(self) -> None:
        if self.thinking is not None:
            self.thinking.ended = time.monotonic()
            self.thinking = None

    def answer_parts(self, content: str) -> tuple[Part, ...]:
        """The answer in order, when tools were called or the model reasoned: its text cut
        where each call, result and reasoning block came. Neither: no parts (the text is the
        whole answer)."""
        self.end_thinking()
        if not self.steps:
            return ()
        parts: list[Part] = []
        said = 0
        for at, step in self.steps:
            at = min(at, len(content))  # a final text shorter than the streamed one
            if at > said:
                parts.append(TextPart(content[said:at]))
                said = at
            parts.append(step.part() if isinstance(step, _Thought) else step)
        if said < len(content):
            parts.append(TextPart(content[said:]))
        return tuple(parts)

    def _due(self) -> None:
        self._timer = None
        self.due_chars = self.resume_due = 0

    async def save(self) -> None:
        """Save the answer so far (``incomplete``), and set when the next save is due. At
        the first chunk only the clocks start: the first save is one interval later. The
        first chunk after reasoning ends its block, and saves only if a save was due."""
        if self.thinking is not None:
            self.end_thinking()
            if self.chars < self.resume_due:
                self.due_chars = self.resume_due
                return
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.every_seconds, self._due)
        if self.first_text is None:
            self.first_text = time.time()
            if self.chars < self.every_chars:
                self.due_chars = self.every_chars
                return
        self.due_chars = self.chars + self.every_chars
        upto = len(self.parts)  # more may arrive while the store works
        new = "".join(self.parts[self.saved_parts : upto])
        try:
            if self.message_id is None:
                self.message_id = await self.store.add_message(
                    self.user_id,
                    self.session_id,
                    "assistant",
                    new,
                    "incomplete",
                    reply_to=self.asked,
                    parent=self.asked,
                )
            else:
                await self.store.append_to_message(
                    self.user_id, self.session_id, self.message_id, new, "incomplete"
                )
        except StoreUnavailable as failure:
            # The stream goes on; the final save tries again.
            self.uncertain = True
            log.warning("answer_draft_not_saved", reason=failure.reason)
            return
        self.saved_parts = upto
        self.saved_chars += len(new)

    def text(self) -> str:
        return "".join(self.parts)

    def _extends_saved(self, content: str) -> bool:
        """Whether ``content`` begins with the text saved so far (compared part by part,
        without building that text again)."""
        if self.uncertain or len(content) < self.saved_chars:
            return False
        position = 0
        for part in self.parts[: self.saved_parts]:
            if not content.startswith(part, position):
                return False
            position += len(part)
        return True

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def finish(self, content: str, status: str, facts: AnswerFacts) -> None:
        self.close()
        parts = self.answer_parts(content)
        if self.message_id is None:
            await self.store.add_message(
                self.user_id,
                self.session_id,
                "assistant",
                content,
                status,
                reply_to=self.asked,
                facts=facts,
                parts=parts,
                parent=self.asked,
            )
        elif self._extends_saved(content):
            await self.store.append_to_message(
                self.user_id,
                self.session_id,
                self.message_id,
                content[self.saved_chars :],
                status,
                facts=facts,
                parts=parts or None,
            )
        else:  # the final text is not the streamed one carried on: replace it
            await self.store.update_message(
                self.user_id,
                self.session_id,
                self.message_id,
                content,
                status,
                facts=facts,
                parts=parts or None,
            )


class SessionStage(WrapperStage):
    Options = SessionOptions
    options: SessionOptions

    async def wrap(self, turn: Turn, rest: Rest) -> AsyncIterator[Event]:
        if turn.client_history is not None:
            turn.history = turn.client_history[-self.options.history_messages :]
            async for event in rest(turn):
                yield event
            return
        try:
            session_id, asked, remembered, leaf_before = await self._open(turn)
        except StoreUnavailable as failure:
            log.warning("history_unavailable", reason=failure.reason)
            yield error(
                ErrorCode.INTERNAL,
                "Conversation history is unavailable right now. Please try again shortly.",
                retryable=True,
                retry_after=failure.retry_after,
            )
            return
        draft = _Draft(self.services.sessions, turn, session_id, asked, self.options)
        draft.leaf_before = leaf_before
        terminal: Event | None = None
        try:
            async for event in rest(turn):
                if type(event) is Chunk:  # first: nearly every event is one
                    yield event
                    # Asked for the next event: this one was handed on towards the client.
                    content = event.content
                    draft.parts.append(content)
                    draft.chars += len(content)
                    if draft.chars >= draft.due_chars:
                        await draft.save()
                    continue
                if isinstance(event, ToolCallEvent | ToolResultEvent):
                    yield event
                    draft.tool_event(event)  # handed on, like a chunk
                    continue
                if isinstance(event, Reasoning):
                    yield event
                    draft.reasoning_event(event)
                    continue
                if isinstance(event, Complete):
                    event = dataclasses.replace(event, session_id=session_id)
                    terminal = event
                elif isinstance(event, Error):
                    terminal = event
                if terminal is not None:
                    await self._save(turn, session_id, draft, terminal, remembered)
                yield event
        finally:
            draft.close()
            if terminal is None:  # the turn was torn down around us: keep what was sent
                await self._save(turn, session_id, draft, None, remembered)

    async def _open(self, turn: Turn) -> tuple[str, int, dict[str, Any], int | None]:
        """Open (or create) the session, load its memory and recent history into ``turn``,
        and save the user's message; the session id, the message's id, the memory as
        loaded, and for a regeneration the leaf it moved from. A method of its own so that
        the session's stored messages are not kept, in ``wrap``'s frame, for as long as the
        answer streams."""
        store = self.services.sessions
        session_id = turn.session_id or "s_" + secrets.token_urlsafe(9)
        title = self._title(turn.message)
        if turn.answer_again is None and turn.edit_of is None:
            # The common turn: a new message after the current branch. One store call
            # opens the session, reads the tree and saves the message (before any model is
            # called), in one transaction where the store can.
            record, tree, asked = await store.open_with_message(
                turn.user_id, session_id, title, turn.message, parts=tuple(turn.images)
            )
            turn.session_id = record.session_id
            turn.memory = dict(record.memory)
            turn.history = self._history(tree.branch())
            return session_id, asked, dict(record.memory), None
        record = await store.open_session(turn.user_id, session_id, title)
        turn.session_id = record.session_id
        turn.memory = dict(record.memory)
        tree = await store.message_tree(turn.user_id, session_id)
        # The model is given the branch the new message continues, never its alternatives.
        again = None if turn.answer_again is None else tree.get(turn.answer_again)
        replaced = None if turn.edit_of is None else tree.get(turn.edit_of)
        if again is not None:  # a new variant of this message's answer
            earlier = tree.path_to(again.parent_id)
        elif replaced is not None:  # a new branch beside the edited message
            earlier = tree.path_to(replaced.parent_id)
        else:
            earlier = tree.branch()
        turn.history = self._history(earlier)
        if again is not None:
            # Until the new answer has a row the branch ends at the question, as for any
            # turn, rather than at the answer being replaced.
            await store.set_leaf(turn.user_id, session_id, again.id)
            return session_id, again.id, dict(record.memory), tree.leaf_id
        # Saved before any model is called: whatever happens next, the user's words are kept.
        asked = await store.add_message(
            turn.user_id,
            session_id,
            "user",
            turn.message,
            "complete",
            parts=tuple(turn.images),
            parent=earlier[-1].id if earlier else None,
        )
        return session_id, asked, dict(record.memory), None

    async def _save(
        self,
        turn: Turn,
        session_id: str,
        draft: _Draft,
        terminal: Event | None,
        remembered: dict[str, Any],
    ) -> None:
        store = self.services.sessions
        if isinstance(terminal, Complete):
            answer, status = terminal.message, "complete"
        elif isinstance(terminal, Error) and terminal.code in _NO_ANSWER:
            # No model was asked: there is no answer to record, and a regeneration leaves
            # the answer it would have replaced on the branch.
            if draft.leaf_before is not None:
                try:
                    await store.set_leaf(turn.user_id, session_id, draft.leaf_before)
                except StoreUnavailable as failure:
                    log.warning("branch_not_restored", reason=failure.reason)
            return
        else:
            answer = draft.text()
            status = _cut_short(answer)
        facts = _facts(turn, terminal, draft.first_text)
        # Only what this turn changed: a turn of the same session in another tab that
        # learnt something else meanwhile keeps it.
        changed = {k: v for k, v in turn.memory.items() if remembered.get(k, _ABSENT) != v}
        removed = [k for k in remembered if k not in turn.memory]
        try:
            await draft.finish(answer, status, facts)
            if changed or removed:
                await store.merge_memory(turn.user_id, session_id, changed, removed)
        except StoreUnavailable as failure:
            # The client has the answer already; the history lacks it. Say so in the log.
            log.warning("answer_not_saved", reason=failure.reason, status=status)

    def _history(self, earlier: list[StoredMessage]) -> list[Message]:
        """What the model is given of ``earlier`` (the branch before the new message)."""
        return [
            said
            for m in earlier[-self.options.history_messages :]
            if (m.content or m.parts) and m.role in ("user", "assistant")
            for said in _as_said(m)
        ]

    def _title(self, message: str) -> str:
        return " ".join(message.split())[: self.options.title_chars]

    async def turn_lost(self, lost: LostTurn) -> None:
        """The turn's process died: keep the user's message, if it had not been saved yet,
        and the answer as far as its client was sent it, marked as cut short. The answer was
        being saved as it streamed, up to one save interval behind: that draft is brought up
        to what was sent rather than a second answer added."""
        store = self.services.sessions
        user_id, session_id = lost.user_id, lost.session_id
        await store.open_session(user_id, session_id, self._title(lost.message))
        stored = await store.messages(user_id, session_id)
        question = next(
            (m for m in reversed(stored) if m.role == "user" and m.content == lost.message), None
        )
        if question is None:
            asked = await store.add_message(user_id, session_id, "user", lost.message, "complete")
        else:
            asked = question.id
        status = _cut_short(lost.partial)
        draft = next(
            (m for m in reversed(stored) if m.role == "assistant" and m.reply_to == asked), None
        )
        if draft is None:
            await store.add_message(
                user_id, session_id, "assistant", lost.partial, status, reply_to=asked, parent=asked
            )
        elif draft.status == "incomplete" and len(lost.partial) >= len(draft.content):
            await store.update_message(user_id, session_id, draft.id, lost.partial, status)


_ABSENT = object()


class _Thought:
    """A reasoning block as it streams: its pieces, and when it began and ended."""

    __slots__ = ("ended", "pieces", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.ended: float | None = None
        self.pieces: list[str] = []

    def part(self) -> ReasoningPart:
        ended = self.started if self.ended is None else self.ended
        duration = round((ended - self.started) * 1000, 1)
        return ReasoningPart("".join(self.pieces), duration_ms=duration)


def _as_said(stored: StoredMessage) -> list[Message]:
    """A stored message as the model was given it: an answer with tool rounds becomes, per
    round, the assistant's reasoning, text and calls, then a ``tool`` message with their
    results. A round of reasoning alone (an answer cut off while the model reasoned) is left
    out: no provider takes an assistant message without text or calls.

    Every call gets a result, as providers require: one whose turn was torn down before its
    result (nothing yielded the ``cancelled`` result) is given one saying so; a result whose
    call is not in its round is left out."""
    if stored.role == "user":  # its parts are its images
        return [Message("user", stored.content, stored.parts)]
    if not stored.parts:
        return [Message("assistant", stored.content)]
    said: list[Message] = []
    text: list[str] = []
    thoughts: list[ReasoningPart] = []
    calls: list[ToolCall] = []
    results: dict[str, ToolResult] = {}

    def end_round() -> None:
        if calls:
            answered = [results.get(call.call_id) or _never_answered(call) for call in calls]
            said.append(Message("assistant", "".join(text), (*thoughts, *calls)))
            said.append(Message("tool", "", tuple(answered)))
        elif text:
            said.append(Message("assistant", "".join(text), tuple(thoughts)))
        text.clear()
        thoughts.clear()
        calls.clear()
        results.clear()

    for part in stored.parts:
        if isinstance(part, ToolResult):
            results[part.call_id] = part
            continue
        if results:  # text or a call after results: the next round
            end_round()
        if isinstance(part, ToolCall):
            calls.append(part)
        elif isinstance(part, TextPart):
            text.append(part.text)
        elif isinstance(part, ReasoningPart):
            thoughts.append(part)
    end_round()
    return said


def _never_answered(call: ToolCall) -> ToolResult:
    return ToolResult(
        call.call_id, call.name, False, "The call was cancelled.", ToolErrorKind.CANCELLED
    )


def _cut_short(answer: str) -> str:
    """The status of an answer that did not complete: ``error`` when it has no text."""
    return "incomplete" if answer else "error"


def _facts(turn: Turn, terminal: Event | None, first_text: float | None) -> AnswerFacts:
    """What the ``complete`` event tells, or for an answer cut short who was writing it,
    and the times as the user saw them: from the request to the first text, and to the
    end."""
    now = time.time()
    ended = terminal if isinstance(terminal, Complete) else None
    usage = (ended.usage if ended is not None else None) or {}
    writer = ended if ended is not None else turn.answered_by
    return AnswerFacts(
        provider=writer.provider if writer is not None else None,
        model=writer.model if writer is not None else None,
        mode=writer.mode if writer is not None else None,
        fallback=writer.fallback if writer is not None else None,
        input_tokens=usage.get("input_tokens"),
        output_tokens=usage.get("output_tokens"),
        time_to_first_token_ms=(
            None if first_text is None else round((first_text - turn.started_at) * 1000, 1)
        ),
        duration_ms=round((now - turn.started_at) * 1000, 1),
    )
