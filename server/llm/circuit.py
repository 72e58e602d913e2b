"""A circuit breaker per provider, with Retry-After honoured.

States follow the usual pattern:

* ``closed``: calls go through; consecutive failures are counted.
* ``open``: after ``failures`` consecutive failures the provider is skipped for ``cooldown``
  seconds.
* ``half_open``: after the cooldown exactly one trial call is let through; its success closes
  the circuit, its failure opens it again for another cooldown. Other turns skip the provider
  while the trial is in flight.

Independently of the state, a ``Retry-After`` from a 429 blocks the provider until then: the
upstream told us when to come back, so asking earlier only earns another 429.

The circuit knows nothing about asyncio: it is driven by the chain and a clock, so tests can
move time by hand.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

__all__ = ["MAX_RETRY_AFTER", "Circuit", "CircuitState"]

# A Retry-After is honoured up to this many seconds: a misconfigured proxy saying "come back
# tomorrow" should not silence a provider for a day.
MAX_RETRY_AFTER = 3600.0


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Circuit:
    """Failure accounting for one provider; see the module docstring."""

    def __init__(
        self,
        name: str,
        *,
        failures: int,
        cooldown: float,
        clock: Callable[[], float],
        on_change: Callable[[str, CircuitState], None] | None = None,
    ) -> None:
        self.name = name
        self.failures_to_open = max(1, failures)
        self.cooldown = cooldown
        self._clock = clock
        self._on_change = on_change
        self.state = CircuitState.CLOSED
        self.consecutive_failures = 0
        self._opened_at = 0.0
        self._blocked_until = 0.0
        self._trial_in_flight = False

    def _set_state(self, state: CircuitState) -> None:
        if state is not self.state:
            self.state = state
            if self._on_change is not None:
                self._on_change(self.name, state)

    def acquire(self) -> bool:
        """May a call go through now? A True in half-open state claims the single trial:
        the caller must then call exactly one of ``record_success``, ``record_failure`` or
        ``release``."""
        now = self._clock()
        if now < self._blocked_until:
            return False
        if self.state is CircuitState.OPEN:
            if now < self._opened_at + self.cooldown:
                return False
            self._set_state(CircuitState.HALF_OPEN)
        if self.state is CircuitState.HALF_OPEN:
            if self._trial_in_flight:
                return False
            self._trial_in_flight = True
        return True

    def record_success(self) -> None:
        self._trial_in_flight = False
        self.consecutive_failures = 0
        self._set_state(CircuitState.CLOSED)

    def record_failure(self, retry_after: float | None = None) -> None:
        now = self._clock()
        self._trial_in_flight = False
        if retry_after is not None and retry_after > 0:
            self._blocked_until = max(self._blocked_until, now + min(retry_after, MAX_RETRY_AFTER))
        self.consecutive_failures += 1
        if (
            self.state is CircuitState.HALF_OPEN
            or self.consecutive_failures >= self.failures_to_open
        ):
            self._opened_at = now
            # Re-opening from half-open is a state change too; report it as one.
            if self.state is CircuitState.OPEN:
                return
            self._set_state(CircuitState.OPEN)

    def release(self) -> None:
        """Give back a claimed trial without a verdict (the turn was cancelled)."""
        self._trial_in_flight = False

    def available_in(self) -> float:
        """Seconds until ``acquire`` could succeed (0 when it could now)."""
        now = self._clock()
        wait = max(0.0, self._blocked_until - now)
        if self.state is CircuitState.OPEN:
            wait = max(wait, self._opened_at + self.cooldown - now)
        return wait
