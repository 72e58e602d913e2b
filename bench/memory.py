"""Where an open stream's memory goes: ``python -m bench.memory --streams 1000``.

Starts the fake upstream and sluice under tracemalloc (``bench/traced_server.py``), opens
``--streams`` idle streams (the idle workload's shape: a token every 10 minutes here, so none
ends), and compares a snapshot taken after the warm-up with one taken once all are open. It
prints the traced KiB per open stream, by package and by line. Traced memory is what Python
allocated; RSS adds the allocator's own overhead (a few KiB per stream, see
docs/performance.md), so use ``python -m bench run --workload idle`` for the RSS figure and
this for what to cut. Slow (tracemalloc): 1,000 streams take about a minute.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import os
import signal
import subprocess
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import psutil

from bench.runner import Session, Workload
from bench.systems import PY, ROOT, SYSTEMS

HOLD = Workload("idle", tokens=3, interval_ms=600_000)


def _streams_open(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    body = conn.getresponse().read().decode()
    conn.close()
    for line in body.splitlines():
        if line.startswith("sluice_streams_open "):
            return int(float(line.split()[1]))
    return 0


def _snapshot(pid: int, directory: Path, n: int, timeout_s: float = 300) -> tracemalloc.Snapshot:
    os.kill(pid, signal.SIGUSR1)
    path = directory / f"snapshot-{n}.bin"
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the server wrote no snapshot")
        time.sleep(0.2)
    return tracemalloc.Snapshot.load(str(path))


def _where(filename: str, package_only: bool = True) -> str:
    if "site-packages/" in filename:
        inside = filename.split("site-packages/")[1]
        return inside.split("/")[0] if package_only else inside
    if filename.startswith(str(ROOT)):
        return os.path.relpath(filename, ROOT)
    return "stdlib:" + Path(filename).name


def measure(streams: int, depth: int, top: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    system = replace(SYSTEMS["sluice"], argv=lambda launch: [PY, "-m", "bench.traced_server"])
    base_env = system.extra_env
    system = replace(
        system,
        extra_env=lambda launch: {
            **base_env(launch),
            "BENCH_SNAPSHOT_DIR": str(directory),
            "BENCH_TRACE_DEPTH": str(depth),
            # The held turns never end (a token every 10 minutes): stopping waits for none
            # of them, where the default grace outlasts the runner's 10 s before SIGKILL.
            # Only the stop: the snapshots are taken before it.
            "SLUICE_SERVER__SHUTDOWN_GRACE_SECONDS": "0",
        },
    )
    with Session(system, HOLD, directory) as session:
        server = session.procs[-1].popen
        before = _snapshot(server.pid, directory, 1)
        argv = [PY, "-m", "bench.load_client", "--url", session.url, "--tokens", "3"]
        argv += ["--concurrency", str(streams), "--ramp-s", str(streams / 250)]
        argv += ["--timeout-s", "3600"]
        for name, value in system.headers.items():
            argv += ["--header", f"{name}: {value}"]
        client = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60 + streams / 50
            while (opened := _streams_open(session.port)) < streams:
                if time.monotonic() > deadline or client.poll() is not None:
                    raise RuntimeError(f"only {opened} of {streams} streams opened")
                time.sleep(0.5)
            # Open readers are counted at once; their upstream calls settle after. Idle means
            # every turn is waiting on its upstream's next token.
            process = psutil.Process(server.pid)
            while process.cpu_percent(interval=1.0) > 5:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server never went idle")
            after = _snapshot(server.pid, directory, 2)
        finally:
            client.kill()
            client.wait()
    stats = after.compare_to(before, "lineno")
    total = sum(s.size_diff for s in stats)
    print(f"traced per open stream: {total / 1024 / streams:.1f} KiB ({streams} streams)\n")
    by_package: collections.Counter[str] = collections.Counter()
    for stat in stats:
        by_package[_where(stat.traceback[0].filename)] += stat.size_diff
    print("KiB/stream  where")
    for where, size in by_package.most_common(top):
        print(f"{size / 1024 / streams:10.2f}  {where}")
    print("\nKiB/stream  blocks/stream  line")
    for stat in stats[:top]:
        frame = stat.traceback[0]
        print(
            f"{stat.size_diff / 1024 / streams:10.2f}  {stat.count_diff / streams:13.1f}  "
            f"{_where(frame.filename, package_only=False)}:{frame.lineno}"
        )
    if depth > 1:  # who made them: the allocations grouped by their whole traceback
        print("\nKiB/stream  blocks/stream  traceback (innermost first)")
        for stat in after.compare_to(before, "traceback")[:top]:
            where = " < ".join(
                f"{_where(f.filename, package_only=False)}:{f.lineno}"
                for f in reversed(stat.traceback)
            )
            size, count = stat.size_diff / 1024 / streams, stat.count_diff / streams
            print(f"{size:10.2f}  {count:13.1f}  {where}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--depth", type=int, default=1, help="tracemalloc frames kept")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    measure(args.streams, args.depth, args.top)


if __name__ == "__main__":
    main()
