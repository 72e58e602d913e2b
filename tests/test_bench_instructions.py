"""How ``bench.instructions`` reads callgrind's dumps back into turns."""

from __future__ import annotations

from pathlib import Path

from bench.instructions import step_table, turn_steps


def _dump(folder: Path, part: int, trigger: str, count: int) -> None:
    (folder / f"callgrind.out.4242.{part}").write_text(
        f"version: 1\ncreator: callgrind-3.19.0\npid: 4242\npart: {part}\n\n"
        "desc: I1 cache: \ndesc: Timerange: Basic block 1 - 2\n"
        f"desc: Trigger: Client Request: {trigger}\n\npositions: line\n"
        f"events: Ir\nsummary: {count}\n\nfl=(1) x\nfn=(1) y\n0 {count}\n"
    )


def test_dumps_become_turns_in_the_order_written(tmp_path: Path) -> None:
    """Parts are ordered by number (part 10 after part 9, not after part 1), a health
    check's steps (ended by the next connection, not by a chunk) are dropped, and each
    turn ends at its chunk's dump."""
    dumps = [
        ("request read", 100),  # a health check: no chunk follows
        ("(discarded)", 5),
        ("request read", 1000),
        ("status rate_limit start", 200),
        ("turn", 300),
        ("request read", 1100),
        ("status rate_limit start", 210),
        ("(discarded)", 7),  # the client left before its chunk
        ("request read", 900),
        ("status rate_limit start", 190),
        ("turn", 310),
    ]
    for part, (trigger, count) in enumerate(dumps, start=1):
        _dump(tmp_path, part, trigger, count)
    (tmp_path / "callgrind.out.4242").write_text("desc: Trigger: Program termination\n")
    turns = turn_steps(tmp_path)
    assert turns == [
        [("request read", 1000), ("status rate_limit start", 200), ("turn", 300)],
        [("request read", 900), ("status rate_limit start", 190), ("turn", 310)],
    ]
    rows = step_table(turns).splitlines()[1:]
    assert [row.split() for row in rows] == [
        ["950", "request", "read", "(2)"],
        ["195", "status", "rate_limit", "start", "(2)"],
        ["305", "turn", "(2)"],
    ]
