"""server/internals/lean_condition.py relies on how tornado's Condition keeps its waiters."""

from __future__ import annotations

import asyncio
import collections
import inspect
import sys

import pytest
from tornado.locks import Condition

from server.internals.lean_condition import LeanCondition


def test_tornado_keeps_waiters_in_a_deque_it_appends_to_and_pops_from_the_left() -> None:
    plain = Condition()
    assert isinstance(plain._waiters, collections.deque)
    source = inspect.getsource(Condition)
    assert "self._waiters.append(waiter)" in source
    assert "self._waiters.popleft()" in source
    assert "self._waiters = " not in source  # only the timeout clean-up rebuilds it


def test_the_list_is_much_smaller_than_the_deque() -> None:
    assert sys.getsizeof(LeanCondition()._waiters) * 4 < sys.getsizeof(Condition()._waiters)


@pytest.mark.gen_test
async def test_wait_and_notify_all_wake_every_waiter_once() -> None:
    condition = LeanCondition()
    woken: list[int] = []

    async def waiter(number: int) -> None:
        await condition.wait()
        woken.append(number)

    tasks = [asyncio.ensure_future(waiter(n)) for n in range(3)]
    await asyncio.sleep(0)
    assert len(condition._waiters) == 3
    condition.notify_all()
    await asyncio.gather(*tasks)
    assert sorted(woken) == [0, 1, 2]
    assert len(condition._waiters) == 0
    condition.notify(1)  # nobody waiting: nothing to do, nothing raised


@pytest.mark.gen_test
async def test_notify_one_wakes_the_first_waiter() -> None:
    condition = LeanCondition()
    first = condition.wait()
    second = condition.wait()
    condition.notify(1)
    await first
    assert not second.done()  # type: ignore[attr-defined]
    condition.notify_all()
    await second
