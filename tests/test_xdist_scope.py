"""The test command's pytest-xdist distribution keeps each module on one worker.

pytest 9.2 silently broke ``--dist loadgroup`` (pytest-xdist 3.8 renames the items' node
ids, which pytest no longer reads), and the suite spread every test of a module over the
workers, each starting the module's servers and Chromium again. ``--dist loadscope`` groups
by module without renaming anything. This module runs first (tests/conftest.py), where a
scheduler that spreads tests deals its two to two workers, and the second fails.
"""

from __future__ import annotations

import os

_ran_here: list[int] = []


def test_the_first_of_a_module() -> None:
    _ran_here.append(os.getpid())


def test_the_second_runs_where_the_first_ran() -> None:
    assert _ran_here == [os.getpid()], "this module's tests ran on different workers"
