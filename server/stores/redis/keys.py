"""The Redis keys sluice uses, in one place (docs/operations.md lists them for operators).

A user id and a session id are checked before they get here (letters, digits, ``_``,
``-``), so they cannot run into one another's keys.
"""

from __future__ import annotations

__all__ = [
    "CANCEL_CHANNEL",
    "LIVE",
    "active_key",
    "approval_key",
    "budget_keys",
    "cancel_key",
    "log_key",
    "meta_key",
    "rate_key",
    "slots_key",
    "wake_key",
]

PREFIX = "sluice:"
# Stream ids of running turns, scored by the time (ms) their producer's lease runs out.
LIVE = PREFIX + "live"
CANCEL_CHANNEL = PREFIX + "cancel"


def log_key(stream_id: str) -> str:
    """The turn's Redis Stream: entry ``0-<n>`` is event ``n``, field ``f`` its frame."""
    return f"{PREFIX}log:{stream_id}"


def meta_key(stream_id: str) -> str:
    """Hash: user, session, message, started, owner (the producing instance), last, fin."""
    return f"{PREFIX}meta:{stream_id}"


def slots_key(user_id: str) -> str:
    """Sorted set: the user's running stream ids, scored by lease expiry (ms)."""
    return f"{PREFIX}slots:{user_id}"


def active_key(user_id: str, session_id: str) -> str:
    """``"<stream id> <started_at>"`` of the answer being written in the session."""
    return f"{PREFIX}active:{user_id}:{session_id}"


def cancel_key(stream_id: str) -> str:
    return f"{PREFIX}cancel:{stream_id}"


def approval_key(stream_id: str, call_id: str) -> str:
    """A tool call's approval state: ``pending``, then ``approved``, ``denied``, ``expired``
    or ``cancelled`` for good."""
    return f"{PREFIX}approval:{stream_id}:{call_id}"


def rate_key(bucket: str) -> str:
    return f"{PREFIX}rl:{bucket}"


def wake_key(instance: str) -> str:
    """A stream the process's tail also reads, to be woken when it has a new log to follow."""
    return f"{PREFIX}wake:{instance}"


def budget_keys(counter: str) -> list[str]:
    """A user's budget in one period (``counter`` is ``<user>:<period start>``): a hash of
    what was spent (``tokens``, ``usd``); the running turns' holds, a sorted set of stream
    ids by expiry (ms); and a hash of what each holds (``"<tokens> <usd>"``)."""
    base = f"{PREFIX}budget:{counter}"
    return [base, base + ":holds", base + ":held"]
