"""``intent``: what the user wants, from rules in ``[stages.intent]``.

Each intent has regular-expression ``patterns`` (Python's ``re`` matches Unicode words, so
Arabic patterns work as written) and ``entities``, each a list of patterns with a named group
of the entity's name. Confidence grows with the patterns and entities that match::

    confidence = min(1, 0.5 + 0.25 * patterns matched + 0.1 * entities found)

The best intent wins if it reaches ``threshold``; otherwise the ``fallback`` intent is used.
Each intent may carry follow-up ``suggestions``, which the llm stage puts on ``complete``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from pydantic import Field, field_validator

from server import Event, Stage, StageOptions, Turn

__all__ = ["IntentStage"]


class IntentRule(StageOptions):
    patterns: list[str] = Field(min_length=1)
    entities: dict[str, list[str]] = {}
    suggestions: list[str] = []

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"pattern {pattern!r} is not a valid regex: {error}") from None
        return patterns

    @field_validator("entities")
    @classmethod
    def _named_groups(cls, entities: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, patterns in entities.items():
            for pattern in patterns:
                try:
                    compiled = re.compile(pattern)
                except re.error as error:
                    raise ValueError(f"entity {name!r}: {pattern!r}: {error}") from None
                if name not in compiled.groupindex:
                    raise ValueError(f"entity {name!r}: pattern {pattern!r} needs (?P<{name}>…)")
        return entities


class IntentOptions(StageOptions):
    threshold: float = Field(0.6, ge=0, le=1)
    fallback: str = "chat"
    fallback_suggestions: list[str] = []
    intents: dict[str, IntentRule] = {}


class _CompiledIntent:
    def __init__(self, name: str, rule: IntentRule) -> None:
        self.name = name
        self.patterns = [re.compile(p, re.IGNORECASE) for p in rule.patterns]
        # Entity patterns keep their own case rules: a capitalised place name is a signal.
        self.entities = {k: [re.compile(p) for p in v] for k, v in rule.entities.items()}
        self.suggestions = rule.suggestions


class IntentStage(Stage):
    Options = IntentOptions
    options: IntentOptions

    def __init__(self, options: IntentOptions, services: Any) -> None:
        super().__init__(options, services)
        self._intents = [_CompiledIntent(n, r) for n, r in options.intents.items()]

    def classify(self, text: str) -> tuple[dict[str, Any], list[str]]:
        best: tuple[float, str, dict[str, str], list[str]] = (0.0, "", {}, [])
        for intent in self._intents:
            hits = sum(1 for pattern in intent.patterns if pattern.search(text))
            if not hits:
                continue
            entities = _extract(intent.entities, text)
            confidence = min(1.0, 0.5 + 0.25 * hits + 0.1 * len(entities))
            if confidence > best[0]:
                best = (confidence, intent.name, entities, intent.suggestions)
        confidence, name, entities, suggestions = best
        if not name or confidence < self.options.threshold:
            fallback = {"name": self.options.fallback, "confidence": round(confidence, 2)}
            return fallback | {"entities": {}}, list(self.options.fallback_suggestions)
        return {"name": name, "confidence": round(confidence, 2), "entities": entities}, list(
            suggestions
        )

    async def run(self, turn: Turn) -> AsyncIterator[Event]:
        turn.intent, turn.suggestions = self.classify(turn.message)
        nothing: tuple[Event, ...] = ()  # no events of its own: the context stage reports it
        for event in nothing:
            yield event


def _extract(entities: dict[str, list[re.Pattern[str]]], text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, patterns in entities.items():
        for pattern in patterns:
            match = pattern.search(text)
            if match and match.group(name):
                found[name] = match.group(name).strip(" \t.,!?؟،")
                break
    return found
