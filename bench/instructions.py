"""Instructions a server runs before a turn's first chunk: ``python -m bench.instructions``.

Wall-clock latency on a shared machine moves with whatever else runs; the instructions a turn
costs do not. This runs each system of the latency workload (one stream at a time) under
``valgrind --tool=callgrind``, instrumenting nothing until the first connection (start-up
runs several times faster) and counting nothing outside a turn. The server itself
(``--serve``, this module run as the server) switches counting on when Tornado accepts a
connection and off once the first ``chunk`` frame has been handed to the socket, dumping the
count: the server's own work on a turn's critical path to its first chunk, whatever the
machine is doing. The wait for the upstream costs almost nothing (the process sleeps in
``epoll``), and the kernel's side of each system call is not counted.

The switch is valgrind's client request (``valgrind/callgrind.h``), compiled into a small
library with ``cc`` on first use. The server runs ~50 times slower under callgrind, so the
default is 60 turns.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import runpy
import statistics
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

_SWITCH_C = r"""
#include <valgrind/callgrind.h>
void start_instrumentation(void) { CALLGRIND_START_INSTRUMENTATION; }
void collect_from_zero(void) { CALLGRIND_ZERO_STATS; CALLGRIND_TOGGLE_COLLECT; }
void collect_stop_and_dump(void) { CALLGRIND_TOGGLE_COLLECT; CALLGRIND_DUMP_STATS_AT("turn"); }
void dump_step(const char *name) { CALLGRIND_DUMP_STATS_AT(name); }
"""

_DISCARDED = b"(discarded)"
_LAST_STEP = "turn"  # the dump at the chunk's write: the turn's last step


def _switch_library(folder: Path) -> ctypes.CDLL:
    source = folder / "callgrind_switch.c"
    library = folder / "callgrind_switch.so"
    if not library.exists():
        source.write_text(_SWITCH_C)
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", library, source], check=True)
    return ctypes.CDLL(str(library))


def _instrument(switch: ctypes.CDLL, steps: bool, sluice: bool) -> None:
    """Collect from each accepted connection to the first write of a ``chunk`` frame; with
    ``steps``, also dump the count at each of ``bench.timeline``'s marks on the way (for
    sluice; another Tornado server, at its request read)."""
    import tornado.httpserver
    import tornado.iostream

    collecting = False
    instrumenting = False
    seen: set[str] = set()

    def step(name: str) -> None:
        if collecting and name not in seen:
            seen.add(name)
            switch.dump_step(name.encode())

    if steps and sluice:
        from bench import timeline

        timeline._instrument()
        timeline._mark = step
    elif steps:  # any Tornado server: its request read, then the handler's own work
        import tornado.web

        finish = tornado.web._HandlerDelegate.finish

        def read(self: Any) -> Any:
            step("request read")
            return finish(self)

        tornado.web._HandlerDelegate.finish = read  # type: ignore[method-assign]

    handle_stream = tornado.httpserver.HTTPServer.handle_stream

    def accepted(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal collecting, instrumenting
        if not instrumenting:  # start-up ran without (several times faster)
            switch.start_instrumentation()
            instrumenting = True
        seen.clear()
        if collecting:  # a connection that sent no chunk (a health check): not counted
            switch.dump_step(_DISCARDED)
        else:
            switch.collect_from_zero()
            collecting = True
        return handle_stream(self, *args, **kwargs)

    tornado.httpserver.HTTPServer.handle_stream = accepted  # type: ignore[method-assign]
    write = tornado.iostream.BaseIOStream.write

    def written(self: Any, data: Any) -> Any:
        nonlocal collecting
        result = write(self, data)
        if collecting and b"event: chunk" in bytes(data):
            switch.collect_stop_and_dump()
            collecting = False
        return result

    tornado.iostream.BaseIOStream.write = written  # type: ignore[method-assign]


def serve(module: str, steps: bool) -> None:
    # Run as a file (a baseline checkout may not have this module): the server's own
    # checkout, the working directory, is where its modules are, not this file's folder.
    sys.path[0] = os.getcwd()
    _instrument(_switch_library(Path(os.environ["BENCH_CALLGRIND_DIR"])), steps, module == "server")
    sys.argv = [module]
    runpy.run_module(module, run_name="__main__")


def turn_steps(folder: Path) -> list[list[tuple[str, int]]]:
    """Each counted turn's steps, in order: the name of each dump and the instructions run
    since the dump before it (the last, ``turn``, ends at the chunk's write). Dumps of
    connections that sent no chunk (health checks) are left out."""
    dumps: list[tuple[int, str, int]] = []
    for dump in folder.glob("callgrind.out.*.*"):
        name = count = None
        with dump.open(errors="replace") as lines:
            for line in lines:
                if line.startswith("desc: Trigger: Client Request: "):
                    name = line.split(": ", 3)[-1].strip()
                elif line.startswith("summary:"):
                    count = int(line.split()[1])
                    break
        if name is not None and count is not None:
            dumps.append((int(dump.name.rsplit(".", 1)[-1]), name, count))
    turns: list[list[tuple[str, int]]] = []
    current: list[tuple[str, int]] = []
    for _, name, count in sorted(dumps):
        if name == _DISCARDED.decode():
            current = []
            continue
        current.append((name, count))
        if name == _LAST_STEP:
            turns.append(current)
            current = []
    return turns


def measure(system_name: str, total: int, folder: Path, steps: bool) -> list[list[tuple[str, int]]]:
    """Run ``total`` turns of the latency workload through ``system_name`` under callgrind;
    each measured turn's steps (:func:`turn_steps`)."""
    from bench.runner import WORKLOADS, Session
    from bench.systems import PY, SYSTEMS

    system = SYSTEMS[system_name]
    assert system.argv is not None
    out = folder / system_name
    out.mkdir(parents=True, exist_ok=True)
    _switch_library(out)

    def argv(launch: Any) -> list[str]:
        inner = system.argv(launch)  # type: ignore[misc]
        module = inner[inner.index("-m") + 1]
        return [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--collect-atstart=no",
            f"--callgrind-out-file={out}/callgrind.out.%p",
            PY,
            str(Path(__file__).resolve()),
            "--serve",
            module,
            *(["--steps"] if steps else []),
        ]

    def env(launch: Any) -> dict[str, str]:
        return {**system.extra_env(launch), "BENCH_CALLGRIND_DIR": str(out)}

    wrapped = replace(system, argv=argv, extra_env=env, start_timeout_s=1800.0)
    workload = replace(WORKLOADS["latency"], total=total)
    with Session(wrapped, workload, folder) as session:
        session.load(1, total)
    return turn_steps(out)[-total:]  # the warm-up's turns left out


def step_table(turns: list[list[tuple[str, int]]]) -> str:
    """Median instructions of each step, in the order they came."""
    order: dict[str, int] = {}
    counts: dict[str, list[int]] = {}
    for turn in turns:
        for at, (name, count) in enumerate(turn):
            order.setdefault(name, at)
            counts.setdefault(name, []).append(count)
    lines = [f"{'instructions':>12}  step (ended by), median of the turns that had it"]
    for name in sorted(order, key=order.__getitem__):
        lines.append(f"{int(statistics.median(counts[name])):>12,}  {name} ({len(counts[name])})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", metavar="MODULE", help=argparse.SUPPRESS)
    parser.add_argument("--total", type=int, default=60, help="turns per system")
    parser.add_argument("--systems", default="sluice,tornado-lines", help="comma-separated")
    parser.add_argument(
        "--steps", action="store_true", help="also each step (bench.timeline's, for sluice)"
    )
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.steps)
        return
    from bench.runner import raise_nofile

    raise_nofile()
    folder = Path(tempfile.mkdtemp(prefix="bench-instructions-"))
    print(f"{'system':<16} {'turns':>5} {'median':>12} {'min':>12} {'max':>12}")
    for name in args.systems.split(","):
        turns = measure(name, args.total, folder, args.steps)
        totals = [sum(count for _, count in turn) for turn in turns]
        print(
            f"{name:<16} {len(totals):>5} {int(statistics.median(totals)):>12,}"
            f" {min(totals):>12,} {max(totals):>12,}",
            flush=True,
        )
        if args.steps:
            print(step_table(turns), flush=True)
    print(f"\n(dumps in {folder})")


if __name__ == "__main__":
    main()
