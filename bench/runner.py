"""Runs one workload against several systems, alternated and repeated, and tabulates medians.

For every (repetition, system) — systems alternated A B C A B C … — the runner starts a fresh
fake upstream (pinned with the runner and the load client to the last core) and the system
under test (``taskset -c 0``), waits for ``GET /healthz``, runs a short warm-up, then the load
client as a subprocess while a sampler thread follows the server's process tree (RSS peak, CPU
seconds; gunicorn's worker included). Then everything is stopped.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from bench.load_client import percentile
from bench.systems import PY, ROOT, SYSTEMS, Launch, System

SERVER_CPU = 0


@dataclass(frozen=True)
class Workload:
    name: str
    tokens: int
    interval_ms: float
    concurrency: int = 1
    total: int = 1
    ladder: tuple[int, ...] = ()  # capacity: concurrency steps; idle: sizes
    ramp_s: float = 0.0
    lag_limit_ms: float = 50.0
    # A stream that waits for a free worker (Flask's thread pool) is not being served, but
    # its tokens' lag cannot show it: the upstream is only called once a worker takes it.
    first_chunk_limit_ms: float = 1000.0
    warmup: bool = True
    open_rate: float = 250.0  # idle: new streams per second while opening
    # The upstream answers each turn's first request with a tool call (bench.fake_upstream's
    # --tool-round): one tool round per turn, for systems that run tools (System.tools).
    tool_round: bool = False


WORKLOADS: dict[str, Workload] = {
    "latency": Workload("latency", tokens=20, interval_ms=0, concurrency=1, total=200),
    "throughput": Workload("throughput", tokens=500, interval_ms=0, concurrency=50, total=100),
    "capacity": Workload(
        "capacity",
        tokens=240,
        interval_ms=25,
        ladder=(25, 50, 75, 100, 125, 150, 200, 250, 300, 400, 500, 600, 800, 1000, 1200, 1600),
        ramp_s=2.0,
    ),
    "idle": Workload("idle", tokens=3, interval_ms=10_000, ladder=(1000, 5000, 10_000)),
    "tools": Workload("tools", tokens=20, interval_ms=0, concurrency=1, total=200, tool_round=True),
}
QUICK: dict[str, Workload] = {
    "latency": replace(WORKLOADS["latency"], total=3),
    "throughput": replace(WORKLOADS["throughput"], tokens=20, concurrency=2, total=2),
    # A smoke measures nothing: the ladder climbs unless a step loses, duplicates or fails
    # streams, or hangs. Its real limits (50 ms of lag at p99) fail on a loaded machine.
    "capacity": replace(
        WORKLOADS["capacity"],
        tokens=8,
        ladder=(2, 4),
        ramp_s=0.05,
        lag_limit_ms=60_000,
        first_chunk_limit_ms=60_000,
    ),
    # Each stream is to outlive the opening of all four: a token a second leaves the opening
    # 3 s on a loaded machine, where 100 ms left it 0.3 s and streams ended before the
    # last one opened.
    "idle": replace(WORKLOADS["idle"], interval_ms=1000, ladder=(4,)),
    "tools": replace(WORKLOADS["tools"], total=3),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_nofile() -> None:
    """Children inherit this: 10,000 streams need ~20,000 descriptors in the relay."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (max(hard, 65_536), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return
        except (ValueError, OSError):
            continue


def pin_runner() -> bool:
    """Server on core 0, this process (and so upstream and client) on the others."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or SERVER_CPU not in cpus:
        return False
    os.sched_setaffinity(0, [c for c in cpus if c != SERVER_CPU])
    return True


class Proc:
    """A child process in its own session, logging to a file; stopped by its pid."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_dir: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd or ROOT,
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def tail(self, lines: int = 15) -> str:
        self.log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        self.log.close()


def wait_ready(proc: Proc, port: int, path: str | None, timeout_s: float = 60.0) -> None:
    """Poll the port (and the health URL, if any) until it answers; no fixed sleeps."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.tail()}")
        try:
            if path is None:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} not ready on port {port} after {timeout_s}s:\n{proc.tail()}")


class Sampler:
    """Follows a process tree: peak RSS and CPU seconds, sampled every ``period`` s."""

    def __init__(self, pid: int, period: float = 0.1) -> None:
        self.root = psutil.Process(pid)
        self.period = period
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tree(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def rss(self) -> int:
        total = 0
        for p in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self.peak_rss = max(self.peak_rss, self.rss())

    @contextlib.contextmanager
    def running(self) -> Iterator[dict[str, float]]:
        out: dict[str, float] = {}
        self.peak_rss = self.rss()
        out["rss_before_mib"] = self.peak_rss / 2**20
        cpu0, t0 = self.cpu_seconds(), time.perf_counter()
        core0 = _core_busy(SERVER_CPU)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        try:
            yield out
        finally:
            self._stop.set()
            self._thread.join()
            self.peak_rss = max(self.peak_rss, self.rss())
            wall = time.perf_counter() - t0
            out["server_cpu_s"] = round(self.cpu_seconds() - cpu0, 3)
            out["server_cpu_pct"] = round(100 * out["server_cpu_s"] / wall, 1)
            # Anything else that ran on the server's core meanwhile (other jobs on the machine).
            foreign = _core_busy(SERVER_CPU) - core0 - out["server_cpu_s"]
            out["foreign_cpu_pct"] = round(max(0.0, 100 * foreign / wall), 1)
            out["rss_peak_mib"] = round(self.peak_rss / 2**20, 1)
            out["rss_before_mib"] = round(out["rss_before_mib"], 1)


def _core_busy(cpu: int) -> float:
    """CPU seconds core ``cpu`` has spent busy since boot."""
    t = psutil.cpu_times(percpu=True)[cpu]
    return float(t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0))


QUIET_WAIT_S = 20.0
QUIET_BUSY_PCT = 20.0


def wait_quiet(max_wait_s: float) -> float:
    """Wait (bounded) until every core is below QUIET_BUSY_PCT busy; the waited seconds.

    Other jobs sharing the machine distort latency figures; this gives them a chance to end.
    """
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_wait_s:
        if max(psutil.cpu_percent(interval=0.5, percpu=True)) < QUIET_BUSY_PCT:
            break
    return round(time.monotonic() - t0, 1)


def run_client(
    url: str,
    headers: dict[str, str],
    concurrency: int,
    total: int,
    tokens: int,
    ramp_s: float = 0.0,
    timeout_s: float = 120.0,
    message: str | None = None,
    openai_model: str | None = None,
    ai_sdk: bool = False,
    client_tool: str | None = None,
) -> dict[str, Any]:
    argv = [PY, "-m", "bench.load_client", "--url", url, "--tokens", str(tokens)]
    if openai_model is not None:
        argv += ["--openai-model", openai_model]
    if ai_sdk:
        argv.append("--ai-sdk")
    if client_tool is not None:
        argv += ["--client-tool", client_tool]
    argv += ["--concurrency", str(concurrency), "--total", str(total)]
    argv += ["--ramp-s", str(ramp_s), "--timeout-s", str(timeout_s)]
    for k, v in headers.items():
        argv += ["--header", f"{k}: {v}"]
    if message:
        argv += ["--message", message]
    # The client bounds every stream itself; this outer bound only guards against a hang.
    limit = timeout_s * max(1, -(-total // max(1, concurrency))) + ramp_s + 60
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=limit)
    if done.returncode != 0:
        raise RuntimeError(f"load client failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


class RedisProbe:
    """A redis-server for one run, and what it costs: CPU seconds and memory (INFO)."""

    def __init__(self, proc: Proc, port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"

    @classmethod
    def start(cls, log_dir: Path, data_dir: str) -> RedisProbe:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        port = free_port()
        argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", data_dir]
        argv += ["--save", "", "--appendonly", "no", "--maxclients", "20000"]
        proc = Proc(f"redis-{port}", argv, {}, log_dir)
        wait_ready(proc, port, None)
        return cls(proc, port)

    def used_memory(self) -> int:
        import redis  # only the Redis-backed systems need it

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        try:
            return int(client.info("memory")["used_memory"])
        finally:
            client.close()

    @contextlib.contextmanager
    def watching(self) -> Iterator[dict[str, Any]]:
        out: dict[str, Any] = {}
        sampler = Sampler(self.proc.popen.pid)
        cpu0 = sampler.cpu_seconds()
        out["redis_used_before"] = peak = self.used_memory()
        stop = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not stop.wait(0.2):
                with contextlib.suppress(Exception):
                    peak = max(peak, self.used_memory())

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        try:
            yield out
        finally:
            stop.set()
            thread.join()
            out["redis_used_after"] = self.used_memory()
            out["redis_used_peak"] = max(peak, out["redis_used_after"])
            out["redis_cpu_s"] = round(sampler.cpu_seconds() - cpu0, 3)


class OtlpSink:
    """bench.otlp_sink for one run of a traced system (System.otlp), on the runner's cores."""

    # The traced systems' OTEL_BSP_SCHEDULE_DELAY is 200 ms: a count unchanged across this
    # long has had every export due.
    SETTLED_S = 0.6

    def __init__(self, proc: Proc, port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.port = port

    @classmethod
    def start(cls, log_dir: Path) -> OtlpSink:
        port = free_port()
        proc = Proc(
            f"otlp-sink-{port}", [PY, "-m", "bench.otlp_sink", "--port", str(port)], {}, log_dir
        )
        wait_ready(proc, port, "/spans")
        return cls(proc, port)

    def spans(self) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/spans")
            count: int = json.loads(conn.getresponse().read())["spans"]
        finally:
            conn.close()
        return count

    def settled(self, timeout_s: float = 30.0) -> int:
        """The span count once the server has exported what it had (it stops growing)."""
        deadline = time.monotonic() + timeout_s
        last, since = self.spans(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.spans()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= self.SETTLED_S:
                break
        return last


@dataclass
class Session:
    """One system up with its upstream, for one repetition (or one idle size)."""

    system: System
    workload: Workload
    log_dir: Path
    port: int = field(default_factory=free_port)
    upstream_port: int = field(default_factory=free_port)
    procs: list[Proc] = field(default_factory=list)
    sampler: Sampler | None = None
    data_dir: str = ""
    redis: RedisProbe | None = None
    otlp: OtlpSink | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.system.path}"

    def __enter__(self) -> Session:
        try:
            return self._start()
        except BaseException:
            self.__exit__()  # stop what did start, whatever interrupted the start
            raise

    def _start(self) -> Session:
        w = self.workload
        upstream = Proc(
            f"upstream-{self.system.name}",
            [
                PY,
                "-m",
                "bench.fake_upstream",
                "--port",
                str(self.upstream_port),
                "--tokens",
                str(w.tokens),
                "--interval-ms",
                str(w.interval_ms),
                *(["--tool-round"] if w.tool_round else []),
            ],
            {},
            self.log_dir,
        )
        self.procs.append(upstream)
        wait_ready(upstream, self.upstream_port, None)
        if self.system.argv is None:
            # No relay: measure the harness itself; the "server" figures are the upstream's.
            self.port = self.upstream_port
            self.sampler = Sampler(upstream.popen.pid)
        else:
            self.data_dir = tempfile.mkdtemp(prefix=f"bench-{self.system.name}-")
            database_url = ""
            if self.system.database:
                from bench.postgres import new_database

                database_url = new_database()
            redis_url = ""
            if self.system.redis:
                # On the runner's cores (this process left core 0): never the server's.
                self.redis = RedisProbe.start(self.log_dir, self.data_dir)
                self.procs.append(self.redis.proc)
                redis_url = self.redis.url
            otlp_url = ""
            if self.system.otlp:
                self.otlp = OtlpSink.start(self.log_dir)
                self.procs.append(self.otlp.proc)
                otlp_url = self.otlp.url
            launch = Launch(
                self.port,
                f"http://127.0.0.1:{self.upstream_port}/v1",
                self.data_dir,
                w.name,
                database_url,
                redis_url,
                otlp_url,
            )
            argv = self.system.argv(launch)
            if SERVER_CPU not in os.sched_getaffinity(0):  # the runner left the server's core
                argv = ["taskset", "-c", str(SERVER_CPU), *argv]
            server = Proc(
                self.system.name,
                argv,
                self.system.env(launch),
                self.log_dir,
                cwd=self.system.cwd(),
            )
            self.procs.append(server)
            wait_ready(server, self.port, self.system.health, self.system.start_timeout_s)
            self.sampler = Sampler(server.popen.pid)
        if w.warmup:
            # First requests pay for lazy imports and pool set-up; keep them out of the figures.
            run_client(
                self.url,
                self.system.headers,
                4,
                8,
                5,
                timeout_s=30,
                message="warm-up bench:tokens=5,interval_ms=0",
                openai_model=self.system.openai_model,
                ai_sdk=self.system.ai_sdk,
                client_tool=self.client_tool,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def client_tool(self) -> str | None:
        """The tool the load client declares and runs itself, in the tools workload."""
        return self.system.client_tool if self.workload.tool_round else None

    def tool_gaps_us(self) -> list[float]:
        """The upstream's tool gaps recorded since the last call (bench.fake_upstream)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=10)
        try:
            conn.request("GET", "/bench/tool-gaps")
            gaps: list[float] = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        return gaps

    def load(self, concurrency: int, total: int, ramp_s: float = 0.0) -> dict[str, Any]:
        assert self.sampler is not None
        w = self.workload
        stream_s = w.tokens * w.interval_ms / 1000
        waited = wait_quiet(QUIET_WAIT_S)
        if w.tool_round:
            self.tool_gaps_us()  # the warm-up's rounds: not measured
        redis = self.redis
        otlp = self.otlp
        spans_before = otlp.settled() if otlp is not None else 0  # the warm-up's
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(self.sampler.running())
            shared = stack.enter_context(redis.watching()) if redis is not None else {}
            client = run_client(
                self.url,
                self.system.headers,
                concurrency,
                total,
                w.tokens,
                ramp_s=ramp_s,
                timeout_s=max(120.0, 3 * stream_s + ramp_s + 60),
                openai_model=self.system.openai_model,
                ai_sdk=self.system.ai_sdk,
                client_tool=self.client_tool,
            )
            if otlp is not None:
                # Still measured: the CPU of exporting this load's spans is the load's.
                server["spans"] = otlp.settled() - spans_before
                server["spans_per_turn"] = round(server["spans"] / max(1, total), 1)
        if w.tool_round:
            server.update(_tool_gap_figures(self.tool_gaps_us()))
        cpu_s = server["server_cpu_s"]
        # Robust to a noisy machine: what a token costs the server, whatever CPU it was given.
        server["tokens_per_cpu_s"] = round(client["tokens"] / cpu_s) if cpu_s > 0 else None
        server["quiet_wait_s"] = waited
        if redis is not None:
            # Redis's CPU counted too: what a token costs the deployment, not just sluice.
            both = cpu_s + shared["redis_cpu_s"]
            shared["tokens_per_cpu_s_with_redis"] = round(client["tokens"] / both) if both else None
            opened = max(1, client.get("max_open") or concurrency)
            shared["redis_kib_per_open_stream"] = round(
                (shared["redis_used_peak"] - shared["redis_used_before"]) / 1024 / opened, 1
            )
            # Every stream's log stays for stream.log_ttl_seconds (300 s) after its end.
            shared["redis_kib_per_finished_log"] = round(
                (shared["redis_used_after"] - shared["redis_used_before"]) / 1024 / max(1, total),
                1,
            )
        return {**client, **server, **shared}


def _tool_gap_figures(gaps_us: list[float]) -> dict[str, Any]:
    """From the end of the model's tool-call response to the request with the tool's result,
    as the upstream saw it: the relay's own cost of a tool round (the tool's run included;
    the load client's ``tool_ms_max`` says how long that was)."""
    ms = [g / 1000 for g in gaps_us]

    def pct(q: float) -> float | None:
        value = percentile(ms, q)
        return None if value is None else round(value, 3)

    return {
        "tool_rounds": len(ms),
        "tool_gap_p50_ms": pct(50),
        "tool_gap_p99_ms": pct(99),
        "tool_gap_max_ms": round(max(ms), 3) if ms else None,
    }


# -- workloads ---------------------------------------------------------------------------


def passes_capacity(result: dict[str, Any], w: Workload) -> bool:
    lag = result.get("lag_p99_ms")
    first_chunk = result.get("ttfc_p99_ms")
    return (
        result["errors"] == 0
        and result["lost"] == 0
        and result["duplicated"] == 0
        and lag is not None
        and lag < w.lag_limit_ms
        and first_chunk is not None
        and first_chunk < w.first_chunk_limit_ms
    )


def run_one(system: System, w: Workload, log_dir: Path, say: Callable[[str], None]) -> Any:
    if w.name in ("latency", "throughput", "tools"):
        with Session(system, w, log_dir) as s:
            return s.load(w.concurrency, w.total)
    if w.name == "capacity":
        steps: list[dict[str, Any]] = []
        best = 0
        with Session(system, w, log_dir) as s:
            for n in w.ladder:
                r = s.load(n, n, ramp_s=w.ramp_s)
                r["n"] = n
                r["pass"] = passes_capacity(r, w)
                steps.append(r)
                say(
                    f"    N={n}: lag p99 {r['lag_p99_ms']} ms, "
                    f"first chunk p99 {r['ttfc_p99_ms']} ms, lost {r['lost']}, "
                    f"errors {r['errors']} -> {'pass' if r['pass'] else 'FAIL'}"
                )
                if not r["pass"]:
                    break
                best = n
        at_best = next((r for r in steps if r["n"] == best), steps[0])
        return {**at_best, "best_n": best, "steps": steps}
    if w.name == "idle":
        sizes: list[dict[str, Any]] = []
        for n in w.ladder:
            # Open at a pace a server can set streams up at (this is a hold test, not a
            # connection storm) and make each stream outlive the opening by w.tokens tokens.
            ramp_s = max(0.05, n / w.open_rate)
            sized = replace(w, tokens=w.tokens + math.ceil(ramp_s * 1000 / w.interval_ms))
            # A fresh server per size: RSS per stream is measured from its idle baseline.
            with Session(system, sized, log_dir) as s:
                r = s.load(n, n, ramp_s=ramp_s)
            opened = max(1, r["max_open"])
            r["n"] = n
            r["tokens_each"] = sized.tokens
            r["rss_per_stream_kib"] = round(
                (r["rss_peak_mib"] - r["rss_before_mib"]) * 1024 / opened, 1
            )
            sizes.append(r)
            say(
                f"    N={n}: open {r['max_open']}, {r['rss_per_stream_kib']} KiB/stream, "
                f"lag p99 {r['lag_p99_ms']} ms, silence max {r['silence_max_s']} s, "
                f"errors {r['errors']}"
            )
        return {"sizes": sizes}
    raise ValueError(w.name)


# -- tables ------------------------------------------------------------------------------

Column = tuple[str, str, int]  # header, key, decimals

# Filled for the systems with a redis-server (System.redis), n/a for the others.
_REDIS_COLUMNS: list[Column] = [
    ("redis CPU s", "redis_cpu_s", 2),
    ("tokens/CPU-s incl. Redis", "tokens_per_cpu_s_with_redis", 0),
    ("Redis KiB/finished log", "redis_kib_per_finished_log", 1),
]

COLUMNS: dict[str, list[Column]] = {
    "latency": [
        ("1st status p50 ms", "ttfs_p50_ms", 2),
        ("1st status p99 ms", "ttfs_p99_ms", 2),
        ("1st chunk p50 ms", "ttfc_p50_ms", 2),
        ("1st chunk p99 ms", "ttfc_p99_ms", 2),
        ("lag p50 ms", "lag_p50_ms", 2),
        ("lag p99 ms", "lag_p99_ms", 2),
        ("lost/dup/ooo/err", "_integrity", 0),
        ("srv CPU %", "server_cpu_pct", 0),
        # One short answer at a time: what a turn's own work (history included) costs.
        ("tokens/CPU-s", "tokens_per_cpu_s", 0),
        *_REDIS_COLUMNS,
        ("spans/turn", "spans_per_turn", 1),  # the traced systems' (System.otlp)
        ("peak RSS MiB", "rss_peak_mib", 0),
        ("foreign CPU % core 0", "foreign_cpu_pct", 0),
    ],
    "throughput": [
        ("events/s", "events_per_s", 0),
        ("tokens/s", "tokens_per_s", 0),
        ("tokens/CPU-s", "tokens_per_cpu_s", 0),
        ("spans/turn", "spans_per_turn", 1),
        ("1st status p50 ms", "ttfs_p50_ms", 1),
        ("1st status p99 ms", "ttfs_p99_ms", 1),
        ("1st chunk p50 ms", "ttfc_p50_ms", 0),
        ("1st chunk p99 ms", "ttfc_p99_ms", 0),
        ("lag p50 ms", "lag_p50_ms", 0),
        ("lag p90 ms", "lag_p90_ms", 0),
        ("lag p99 ms", "lag_p99_ms", 0),
        ("lag max ms", "lag_max_ms", 0),
        ("lost/dup/ooo/err", "_integrity", 0),
        ("srv CPU %", "server_cpu_pct", 0),
        *_REDIS_COLUMNS,
        ("peak RSS MiB", "rss_peak_mib", 0),
        ("client CPU %", "client_cpu_pct", 0),
        ("foreign CPU % core 0", "foreign_cpu_pct", 0),
    ],
    "capacity": [
        ("max N (p99 lag<50ms)", "best_n", 0),
        ("lag p50 ms @N", "lag_p50_ms", 1),
        ("lag p99 ms @N", "lag_p99_ms", 1),
        ("lag max ms @N", "lag_max_ms", 0),
        ("held lag p99 ms @N", "held_lag_p99_ms", 1),
        ("1st chunk p99 ms @N", "ttfc_p99_ms", 0),
        ("1st status p50 ms @N", "ttfs_p50_ms", 1),
        ("lost/dup/ooo/err @N", "_integrity", 0),
        ("srv CPU % @N", "server_cpu_pct", 0),
        ("tokens/CPU-s @N", "tokens_per_cpu_s", 0),
        *_REDIS_COLUMNS,
        ("peak RSS MiB @N", "rss_peak_mib", 0),
        ("foreign CPU % core 0", "foreign_cpu_pct", 0),
    ],
    "tools": [
        ("tool rounds", "tool_rounds", 0),
        ("tool gap p50 ms", "tool_gap_p50_ms", 3),
        ("tool gap p99 ms", "tool_gap_p99_ms", 3),
        ("tool gap max ms", "tool_gap_max_ms", 2),
        ("tool run max ms", "tool_ms_max", 0),
        ("1st status p50 ms", "ttfs_p50_ms", 2),
        ("1st chunk p50 ms", "ttfc_p50_ms", 2),
        ("1st chunk p99 ms", "ttfc_p99_ms", 2),
        ("lag p50 ms", "lag_p50_ms", 2),
        ("lost/dup/ooo/err", "_integrity", 0),
        ("srv CPU %", "server_cpu_pct", 0),
        ("tokens/CPU-s", "tokens_per_cpu_s", 0),
        ("foreign CPU % core 0", "foreign_cpu_pct", 0),
    ],
    "idle": [
        ("open", "max_open", 0),
        ("RSS/stream KiB", "rss_per_stream_kib", 1),
        ("lag p99 ms", "lag_p99_ms", 1),
        ("held lag p99 ms", "held_lag_p99_ms", 1),
        ("held lag max ms", "held_lag_max_ms", 0),
        ("silence max s", "silence_max_s", 1),
        ("lost/dup/ooo/err", "_integrity", 0),
        ("Redis KiB/open stream", "redis_kib_per_open_stream", 1),
        ("peak RSS MiB", "rss_peak_mib", 0),
        ("foreign CPU % core 0", "foreign_cpu_pct", 0),
    ],
}


def _value(result: dict[str, Any], key: str) -> Any:
    if key == "_integrity":
        return "/".join(str(result[k]) for k in ("lost", "duplicated", "out_of_order", "errors"))
    return result.get(key)


def _cell(values: list[Any], decimals: int) -> str:
    if any(isinstance(v, str) for v in values):
        worst = max(values, key=lambda v: sum(int(x) for x in str(v).split("/")))
        return str(worst) if len(set(values)) == 1 else f"{worst} (worst)"
    nums = [float(v) for v in values if v is not None]
    if not nums:
        return "n/a"

    def fmt(x: float) -> str:
        return f"{x:,.{decimals}f}"

    med = statistics.median(nums)
    if len(nums) == 1 or min(nums) == max(nums):
        return fmt(med)
    return f"{fmt(med)} [{fmt(min(nums))}–{fmt(max(nums))}]"


def table(workload: str, rows: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown table: one row per system (per size for idle), median [min–max] per cell."""
    cols = COLUMNS[workload]
    head = ["system", *([] if workload != "idle" else ["N"]), *(c[0] for c in cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for system, results in rows.items():
        groups: list[tuple[list[str], list[dict[str, Any]]]]
        if workload == "idle":
            sizes = sorted({s["n"] for r in results for s in r["sizes"]})
            groups = [
                ([system, str(n)], [s for r in results for s in r["sizes"] if s["n"] == n])
                for n in sizes
            ]
        else:
            groups = [([system], results)]
        for label, rs in groups:
            cells = [_cell([_value(r, key) for r in rs], dec) for _, key, dec in cols]
            lines.append("| " + " | ".join(label + cells) + " |")
    return "\n".join(lines)


def run(
    workload: Workload,
    systems: list[str],
    repeat: int,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    raise_nofile()
    # Stop cleanly (servers and upstreams are in their own sessions) on SIGTERM, and on SIGINT
    # even when started in the background with SIGINT ignored.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    pinned = pin_runner()
    chosen: list[System] = []
    skipped: dict[str, str] = {}
    for name in systems:
        system = SYSTEMS[name]
        why = system.available()
        if not why and workload.tool_round and not (system.tools or system.client_tool):
            why = "does not run tools"
        if why:
            skipped[name] = why
            say(f"skipping {name}: {why}")
        else:
            chosen.append(system)
    rows: dict[str, list[dict[str, Any]]] = {s.name: [] for s in chosen}
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    say(
        f"workload {workload.name}: {workload}; pinned={pinned}; logs in {log_dir}\n"
        f"order: {' '.join(s.name for s in chosen)} x {repeat}"
    )
    for rep in range(repeat):
        for system in chosen:
            load = os.getloadavg()[0]
            say(f"  [{rep + 1}/{repeat}] {system.name} … (load average {load:.2f})")
            t0 = time.perf_counter()
            result = run_one(system, workload, log_dir, say)
            result["loadavg_before"] = round(load, 2)
            rows[system.name].append(result)
            say(f"  [{rep + 1}/{repeat}] {system.name} done in {time.perf_counter() - t0:.1f}s")
    machine = {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "mem_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "pinned": pinned,
    }
    shutil.rmtree(log_dir, ignore_errors=True)
    return {
        "workload": workload.__dict__,
        "repeat": repeat,
        "machine": machine,
        "skipped": skipped,
        "results": rows,
        "table": table(workload.name, rows),
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"
