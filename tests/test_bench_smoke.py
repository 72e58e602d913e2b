"""Smoke test for bench/: every workload runs end to end at a tiny size, nothing is lost.

No timing is asserted: these are benchmarks, and this only keeps the harness from rotting.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.systems import SYSTEMS
from tests.support.postgres import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
# What a system costs a smoke is mostly its start (a Python server's imports), so each
# workload runs on as few systems as keep it covered, and each sluice variant the smoke
# covers runs in one workload only. The latency workload's: every system sluice is compared
# with (LiteLLM's needs a venv of its own: not smoked here) and sluice on PostgreSQL.
LATENCY_SYSTEMS = [
    "sluice-pg",
    "direct-openai",
    "tornado",
    "tornado-lines",
    "fastapi",
    "flask",
]
# Capacity's and idle's two: one whose streams have a first status, one whose do not. The
# sluice is one of the usage ledger's systems (with it on; off and on Redis), which would
# otherwise start once more for the throughput workload alone.
TWO_SYSTEMS = {
    "capacity": ["sluice-budgets", "tornado-lines"],
    "idle": ["sluice-redis-nousage", "tornado-lines"],
}
USAGE_SYSTEMS = ["sluice-nousage", "sluice-budgets", "sluice-redis-nousage", "sluice-redis-budgets"]
# Systems whose streams have no first event before the text: every sluice has its first
# status, and OpenAI's format its role chunk (direct-openai); the bare relays have neither.
NO_FIRST_STATUS = {"tornado", "tornado-lines", "fastapi", "flask"}


def run_bench(
    tmp_path: Path,
    workload: str,
    systems: list[str],
    *options: str,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``python -m bench run`` at the smoke size, once per system: its output and figures."""
    out = tmp_path / "out.json"
    argv = ["run", "--workload", workload, "--quick", "--repeat", "1", *options]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *argv, "--systems", ",".join(systems), "--json", str(out)],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done, json.loads(out.read_text())


def assert_clean(done: subprocess.CompletedProcess[str], result: dict[str, Any]) -> None:
    """Every system of the run ran (none skipped), is in the table, and every load of it
    delivered every token, once and in order, with its first chunk (and its first status,
    for the systems that send one) timed; only the traced systems count spans."""
    assert result["skipped"] == {}
    table = done.stdout.splitlines()
    workload = result["workload"]["name"]
    for system, runs in result["results"].items():
        assert any(line.startswith(f"| {system} |") for line in table), done.stdout
        (run,) = runs
        if workload == "capacity":
            measured = run["steps"]
        elif workload == "idle":
            measured = run["sizes"]
        else:
            measured = [run]
        for r in measured:
            assert r["errors"] == 0, (system, r["error_kinds"])
            assert (r["lost"], r["duplicated"], r["out_of_order"]) == (0, 0, 0), (system, r)
            each = r.get("tokens_each", result["workload"]["tokens"])
            assert r["tokens"] == r["streams"] * each, (system, r)
            assert r["ttfc_p50_ms"] is not None
            assert (r["ttfs_p50_ms"] is None) == (system in NO_FIRST_STATUS), (system, r)
            assert ("spans" in r) == SYSTEMS[system].otlp, (system, r)


def test_latency_workload_runs_clean_on_the_baselines_and_on_postgres(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    """Each system sluice is compared with, relays and direct reads, runs end to end, beside
    ``sluice-pg``, which keeps its history in PostgreSQL (the tests' server,
    named by SLUICE_BENCH_DATABASE_URL; without it the bench starts one the same way): every
    turn of the run, warm-up included, is in the database it was given."""
    done, result = run_bench(
        tmp_path,
        "latency",
        LATENCY_SYSTEMS,
        # Enough turns for the server's CPU time to pass a clock tick (10 ms): below it,
        # tokens per CPU-second is unknown (None), not measured.
        "--total",
        "40",
        env={"SLUICE_BENCH_DATABASE_URL": postgres.url()},
    )
    assert sorted(result["results"]) == sorted(LATENCY_SYSTEMS)
    assert_clean(done, result)
    (run,) = result["results"]["sluice-pg"]
    assert run["tokens_per_cpu_s"], run
    (database,) = postgres.psql(
        "SELECT datname FROM pg_database WHERE datname LIKE 'bench%'"
    ).splitlines()
    questions = postgres.psql("SELECT count(*) FROM messages WHERE role = 'user'", database)
    assert int(questions) == 8 + 40  # the warm-up's 8 turns and the run's 40


@pytest.mark.parametrize("workload", ["capacity", "idle"])
def test_workload_runs_clean(workload: str, tmp_path: Path) -> None:
    """The other workloads on two systems, one with a first status and one without: enough
    to keep each workload's own steps (capacity's ladder, idle's held streams) running."""
    systems = TWO_SYSTEMS[workload]
    done, result = run_bench(tmp_path, workload, systems)
    assert sorted(result["results"]) == sorted(systems)
    assert_clean(done, result)
    if workload == "capacity":
        for system in systems:
            (run,) = result["results"][system]
            assert [step["n"] for step in run["steps"]] == [2, 4], (system, run)
    if workload == "idle":
        for system in systems:
            (size,) = result["results"][system][0]["sizes"]
            assert size["max_open"] == size["n"]


def test_throughput_workload_runs_clean_on_sluices_variants(tmp_path: Path) -> None:
    """The throughput workload on a system without a first status and on the variants of
    sluice that only this workload smokes, all in one run:

    * ``sluice-ai-sdk`` sends ``POST /api/chat`` as the AI SDK's transport does and reads the
      UI message stream protocol: every token arrives through ``text-delta`` chunks,
      ``start`` is its first status, and each stream ends with ``finish``;
    * ``sluice-traced`` sends its traces to the bench's OTLP sink, and the run counts what
      arrived while the load was measured: each turn's request (the turn's root), its five
      stages that are not quiet and one model call (the warm-up's spans are not counted);
    * the systems docs/performance.md compares for the usage ledger's cost: with it and
      budgets on (every turn reserved, settled and costed) and off, embedded and on Redis
      (those capacity and idle do not run)."""
    usage = [s for s in USAGE_SYSTEMS if s not in TWO_SYSTEMS["capacity"] + TWO_SYSTEMS["idle"]]
    systems = ["tornado-lines", "sluice-ai-sdk", "sluice-traced", *usage]
    done, result = run_bench(tmp_path, "throughput", systems)
    assert sorted(result["results"]) == sorted(systems)
    assert_clean(done, result)
    (traced,) = result["results"]["sluice-traced"]
    assert traced["spans_per_turn"] == 7 and traced["spans"] == 7 * traced["streams"]


def test_memory_breakdown_runs() -> None:
    """``python -m bench.memory`` opens its streams and prints a per-stream breakdown."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--streams", "4", "--top", "40"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    first = done.stdout.splitlines()[0]
    assert first.startswith("traced per open stream: ") and first.endswith("(4 streams)"), first
    assert "server/" in done.stdout  # sluice's own lines are among those measured


def test_anthropic_stream_memory_comparison_runs() -> None:
    """``python -m bench.provider_memory`` (the figures in docs/providers.md) measures every
    path: ours holds less per open stream than the SDK's stream on the same client."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.provider_memory",
            "--streams",
            "8",
            "--rounds",
            "1",
            # One round before the measured one: the warm-up still runs, and ours holds a
            # third of what the SDK's stream does, far from the line this checks.
            "--warmup",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {
        line.rsplit(None, 2)[0].strip(): float(line.split()[-2])
        for line in done.stdout.splitlines()[1:]
    }
    assert len(rows) == 4, done.stdout
    ours = rows["ours (aiohttp transport, streamed bytes + jiter)"]
    assert 0 < ours < rows["SDK AsyncStream (same pooled client)"], done.stdout


def test_json_frames_comparison_runs() -> None:
    """``python -m bench.json_frames`` first checks that orjson's frames are the server's,
    byte for byte: it fails here if the frame encoding changes and the comparison no longer
    times the same output."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.json_frames", "--frames", "50", "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split()[0] for line in done.stdout.splitlines()[2:5]]
    assert rows == ["chunk", "status", "complete"], done.stdout
    assert "identical output on every frame above" in done.stdout


def test_turn_cost_measures_every_variant() -> None:
    """``python -m bench.turn_cost`` (the usage and tracing figures in docs/performance.md)
    runs every variant's turns to a ``complete`` (it fails otherwise) and prints each one's
    CPU per turn and the two ratios."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.turn_cost", "--blocks", "2", "--turns", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    names = [line.split()[0] for line in lines[:4]]
    assert names == ["plain", "usage", "traced", "unsampled"], done.stdout
    assert lines[4].startswith("usage against plain:") and lines[5].startswith("traced against")
    assert lines[6].startswith("unsampled against usage:")


def test_tool_round_workload_measures_each_round(tmp_path: Path) -> None:
    """``--workload tools``: the fake upstream answers each turn's first request with a streamed
    tool call (OpenAI's ``delta.tool_calls``) and records, per call, the gap until the request
    carrying its result; every turn runs its round and still delivers all its tokens. Systems
    that do not run tools are skipped, not run into a failure. ``sluice-v1`` is the /v1
    client-tool round: the load client declares the tool, runs the call sluice hands back and
    sends its result in a second request, which the upstream sees the same way;
    ``sluice-client-tool`` is the same two requests on sluice's own endpoint (the result as
    the session's next message). ``sluice-ai-sdk`` reads the AI SDK's protocol, where the
    round's ``tool-output-available`` chunks are counted as results."""
    systems = ["sluice", "sluice-v1", "sluice-client-tool", "sluice-v1-server-tool"]
    done, result = run_bench(tmp_path, "tools", [*systems, "sluice-ai-sdk", "tornado"])
    assert result["skipped"] == {"tornado": "does not run tools"}
    # Through /v1 with the server's own tool: the upstream sees each turn's round (the
    # client sees no tool events on /v1, so it counts none).
    (server_tool,) = result["results"]["sluice-v1-server-tool"]
    assert server_tool["errors"] == 0 and server_tool["lost"] == 0, server_tool
    assert server_tool["tool_rounds"] == server_tool["streams"] == 3
    for system in ("sluice", "sluice-v1", "sluice-client-tool"):
        (run,) = result["results"][system]
        assert run["errors"] == 0 and (run["lost"], run["duplicated"]) == (0, 0), run
        assert run["tokens"] == run["streams"] * result["workload"]["tokens"]
        # One round per turn, each seen by the upstream (the warm-up's are not counted).
        assert run["tool_rounds"] == run["tool_results"] == run["streams"] == 3
        assert run["tool_failures"] == 0
        assert 0 < run["tool_gap_p50_ms"] <= run["tool_gap_p99_ms"] <= run["tool_gap_max_ms"]
        assert any(line.startswith(f"| {system} | 3 |") for line in done.stdout.splitlines())
    (ai_sdk,) = result["results"]["sluice-ai-sdk"]
    assert ai_sdk["errors"] == 0 and ai_sdk["lost"] == 0, ai_sdk
    assert ai_sdk["tool_results"] == ai_sdk["streams"] == 3 and ai_sdk["tool_failures"] == 0
