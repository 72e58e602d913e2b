"""``python -m server`` with tracemalloc on: SIGUSR1 writes a snapshot to the next
``$BENCH_SNAPSHOT_DIR/snapshot-<n>.bin``. Used by ``python -m bench.memory`` only."""

from __future__ import annotations

import os
import runpy
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType


def main() -> None:
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
