"""``python -m bench run --workload throughput --systems sluice,tornado,fastapi,flask --repeat 3``

Workloads: latency (one stream at a time), throughput (50 concurrent streams x 500 tokens, no
delay), capacity (a ladder of concurrent streams at 40 tokens/s; the largest N whose p99 lag
stays under 50 ms with nothing lost), idle (N open streams with a token every 10 s; RSS per
stream). ``--quick`` runs a smoke size. Sizes can be overridden, see ``--help``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from bench import runner
from bench.runner import QUICK, WORKLOADS, run
from bench.systems import SYSTEMS


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run one workload against several systems")
    p.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    p.add_argument(
        "--systems",
        default="sluice,tornado,fastapi,flask",
        help=f"comma separated, in order; known: {', '.join(SYSTEMS)}",
    )
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="a smoke size, for tests")
    p.add_argument("--tokens", type=int, help="tokens per stream")
    p.add_argument("--interval-ms", type=float, help="pace of the upstream, ms between tokens")
    p.add_argument("--concurrency", type=int, help="concurrent streams (latency, throughput)")
    p.add_argument("--total", type=int, help="streams in all (latency, throughput)")
    p.add_argument("--ladder", type=_ints, help="capacity steps / idle sizes, e.g. 50,100,200")
    p.add_argument("--ramp-s", type=float, help="spread of stream starts (capacity)")
    p.add_argument(
        "--quiet-wait",
        type=float,
        help="before each load, wait up to this many s for the machine to be quiet "
        "(default 20; 0 with --quick)",
    )
    p.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args(argv)

    workload = (QUICK if args.quick else WORKLOADS)[args.workload]
    overrides = {
        k: getattr(args, k)
        for k in ("tokens", "interval_ms", "concurrency", "total", "ladder", "ramp_s")
        if getattr(args, k) is not None
    }
    workload = replace(workload, **overrides)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown systems {unknown}; known: {', '.join(SYSTEMS)}")

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    runner.QUIET_WAIT_S = (
        args.quiet_wait
        if args.quiet_wait is not None
        else (0.0 if args.quick else runner.QUIET_WAIT_S)
    )
    out = run(workload, systems, args.repeat, say)
    m = out["machine"]
    print(
        f"\n{args.workload}: {args.repeat} run(s) per system, alternated; median [min–max]\n"
        f"machine: {m['nproc']} x {m['cpu']}, {m['mem_gib']} GiB, Python {m['python']}, "
        f"server pinned to core 0: {m['pinned']}; 'foreign CPU' is what other jobs took from "
        f"the server's core during the load\n"
    )
    print(out["table"])
    for name, why in out["skipped"].items():
        print(f"\n{name}: skipped ({why})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
