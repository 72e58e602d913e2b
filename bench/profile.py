"""Where a system spends its core under a workload: py-spy samples the server during the load.

``python -m bench.profile --system tornado --workload throughput`` starts the upstream and the
server like the runner does, runs the workload's load once while ``py-spy record`` samples the
server's process tree, and prints the functions with the most samples, by own time and by
inclusive time (grouped by package). Needs ``py-spy`` (``pip install py-spy``) and root or
ptrace permission.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.runner import QUICK, WORKLOADS, Session, pin_runner, raise_nofile
from bench.systems import SYSTEMS

ROOT = Path(__file__).resolve().parents[1]
# Path prefixes cut from a frame's file, leaving the package path: installed packages, the
# standard library of the Python running this, and this checkout wherever it is.
_TRIMMED = (
    "site-packages/",
    f"lib/python{sys.version_info.major}.{sys.version_info.minor}/",
    f"{ROOT}/",
)
_FRAME = re.compile(r"^(?P<func>[^ ]+) \((?P<file>[^:]+)(?::\d+)?\)$")


def _where(frame: str) -> tuple[str, str]:
    """(function, short module path) of a py-spy frame ``func (path/to/file.py:12)``."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), "?"
    path = m.group("file")
    for marker in _TRIMMED:
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return m.group("func"), path


def summarize(raw: str, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    pkg: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        func, path = _where(frames[-1])
        own[f"{func} ({path})"] += count
        # Inclusive by top-level package: each package once per stack.
        for p in {_where(f)[1].split("/")[0] for f in frames}:
            pkg[p] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "own time:"]
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in own.most_common(top)]
    lines += ["", "inclusive, by package or module:"]
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in pkg.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=sorted(SYSTEMS), required=True)
    parser.add_argument("--workload", choices=["latency", "throughput", "capacity"])
    parser.add_argument("--concurrency", type=int, help="override (capacity: N streams)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--raw", type=Path, help="also keep py-spy's raw stacks in this file")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(ROOT / ".venv/bin/py-spy")
    raise_nofile()
    pin_runner()
    w = (QUICK if args.quick else WORKLOADS)[args.workload or "throughput"]
    if args.concurrency:
        w = replace(w, concurrency=args.concurrency, total=args.concurrency)
    n = w.concurrency if w.name != "capacity" else (args.concurrency or 100)
    total = w.total if w.name != "capacity" else n
    log_dir = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    out = log_dir / "profile.txt"
    result: dict[str, Any] = {}
    with Session(SYSTEMS[args.system], w, log_dir) as session:
        assert session.sampler is not None
        pid = session.sampler.root.pid
        spy_argv = [py_spy, "record", "--pid", str(pid), "--subprocesses"]
        spy_argv += ["--rate", str(args.rate), "--format", "raw", "--output", str(out)]
        spy = subprocess.Popen(
            [*spy_argv, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def load() -> None:
            result.update(session.load(n, total, ramp_s=w.ramp_s))

        worker = threading.Thread(target=load)
        worker.start()
        worker.join()
        spy.send_signal(2)  # SIGINT: py-spy writes what it has and exits
        spy.wait(30)
    print(
        f"{args.system} / {w.name}: {result.get('tokens_per_s')} tokens/s, server CPU "
        f"{result.get('server_cpu_pct')}%, lag p99 {result.get('lag_p99_ms')} ms\n"
    )
    raw = out.read_text() if out.exists() else ""
    if args.raw:
        args.raw.write_text(raw)
    print(summarize(raw, args.top))
    shutil.rmtree(log_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
