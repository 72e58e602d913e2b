"""``python -m server`` with tracemalloc on: SIGUSR1 writes a snapshot to the next
``$BENCH_SNAPSHOT_DIR/snapshot-<n>.bin``. Used by ``python -m bench.memory`` only.

Tracing starts once the server's code, its libraries and the configured plugins are
imported, as the server imports them before it forks workers: everything the server
allocates from its start on is traced, but not the 400,000 blocks of its imports, which
made the start five times slower and every snapshot seconds to dump, load and compare.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

import server.app  # noqa: F401  (imported untraced, with everything it imports)
from server.config import load_settings
from server.registry import import_plugins


def main() -> None:
    import_plugins(load_settings())
    tracemalloc.start(int(os.environ.get("BENCH_TRACE_DEPTH", "1")))
    directory = Path(os.environ["BENCH_SNAPSHOT_DIR"])
    taken = 0

    def snapshot(signum: int, frame: FrameType | None) -> None:
        nonlocal taken
        taken += 1
        path = directory / f"snapshot-{taken}.bin"
        tracemalloc.take_snapshot().dump(str(path.with_suffix(".tmp")))
        path.with_suffix(".tmp").rename(path)  # whole, or not there yet

    signal.signal(signal.SIGUSR1, snapshot)
    sys.argv = ["server"]
    runpy.run_module("server", run_name="__main__")


if __name__ == "__main__":
    main()
