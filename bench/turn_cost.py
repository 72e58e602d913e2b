"""What the usage ledger and traces add to one turn, measured in one process, alternated.

``python -m bench.turn_cost --blocks 30 --turns 20`` runs the default pipeline in-process
(rate limit, usage, session in SQLite, intent, context, llm) on a scripted 20-token answer, in
four variants, alternated block by block (``--turns`` turns each) so that the machine's
other jobs weigh on all alike, and prints the median CPU per turn of each (all the
process's threads, the exporter's included) and the ratios:

* ``plain``: the pipeline without the usage stage;
* ``usage``: with it: the ledger in SQLite, a budget no turn reaches, a price, Prometheus
  metrics;
* ``traced``: ``usage`` with every turn traced: a request span as the server makes, the
  OpenTelemetry SDK's spans, batched and encoded to OTLP protobuf by the exporter's thread as
  the OTLP/HTTP exporter does (not posted), flushed at the end of each block so that their
  encoding is counted with it;
* ``unsampled``: ``usage`` with tracing on but the sampler ``always_off``: what the
  instrumentation costs a turn that is not recorded (a sampled deployment's other turns).

No HTTP: what a request costs (Tornado, the event stream) is not in these figures, so the
ratios are larger than a server's.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from server.config import BudgetSettings, PriceSettings, Settings
from server.contract import Turn
from server.core.pipeline import Pipeline
from server.observability.metrics import PrometheusTelemetry
from server.testing import ScriptedProvider, _build, make_services, make_turn
from server.usage.book import UsageBook
from server.usage.budgets import MemoryBudgets
from server.usage.ledgers import ledger_for
from server.usage.pricing import Prices

STAGES = ["rate_limit", "usage", "session", "intent", "context", "llm"]
TOKENS = 20


def _tracer(sampled: bool = True) -> Any:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

    from server.observability.otel import OtelTracer

    class Encoding(SpanExporter):
        """The OTLP exporter's work but the POST: the spans encoded to protobuf bytes."""

        def export(self, spans: Any) -> SpanExportResult:
            encode_spans(spans).SerializePartialToString()
            return SpanExportResult.SUCCESS

    provider = TracerProvider(sampler=ALWAYS_ON if sampled else ALWAYS_OFF)
    provider.add_span_processor(BatchSpanProcessor(Encoding(), schedule_delay_millis=200))
    return OtelTracer(provider)


VARIANTS = ("plain", "usage", "traced", "unsampled")


async def _run(blocks: int, turns: int) -> dict[str, list[float]]:
    folder = Path(tempfile.mkdtemp(prefix="turn-cost-"))
    services = make_services(
        ScriptedProvider([f"w{i} " for i in range(TOKENS)]),
        data_dir=folder,
        requests_per_minute=10**9,
        burst=10**9,
    )
    telemetry = PrometheusTelemetry(Settings())
    services.usage = UsageBook(
        ledger=ledger_for(services.sessions),
        counters=MemoryBudgets(),
        prices=Prices({"scripted": PriceSettings(input_per_million=1, output_per_million=2)}),
        budgets=BudgetSettings(tokens_per_user=10**12),
        telemetry=telemetry,
        hold_seconds=600,
        max_output_tokens=256,
        models={"scripted": "scripted"},
    )
    without = [_build(name, None, services) for name in STAGES if name != "usage"]
    with_usage = [_build(name, None, services) for name in STAGES]
    for stage in (*without, *with_usage):
        await stage.startup()
    tracers = {"traced": _tracer(), "unsampled": _tracer(sampled=False)}
    pipelines = {
        "plain": Pipeline(without, telemetry=telemetry),
        "usage": Pipeline(with_usage, telemetry=telemetry),
        "traced": Pipeline(with_usage, telemetry=telemetry, tracer=tracers["traced"]),
        "unsampled": Pipeline(with_usage, telemetry=telemetry, tracer=tracers["unsampled"]),
    }
    count = 0

    async def one(variant: str) -> None:
        nonlocal count
        count += 1
        turn: Turn = make_turn("What is the weather like?", stream_id=f"st_{count}")
        tracer = tracers.get(variant)
        request = tracer.request("POST", "/api/x", "http", {}) if tracer is not None else None
        turn_scope = tracer.turn(turn) if tracer is not None else None
        events = pipelines[variant].run(turn)
        try:
            async for event in events:
                if event.type in ("complete", "error"):
                    assert event.type == "complete", event
                    break
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            if turn_scope is not None and request is not None:
                turn_scope.end()
                request.responded(200)
                request.end()

    for variant in VARIANTS:  # warm-up
        for _ in range(turns):
            await one(variant)
    tracers["traced"]._provider.force_flush()
    per_turn: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for block in range(blocks):
        # Rotated, so that no variant always follows another.
        shift = block % len(VARIANTS)
        order = VARIANTS[shift:] + VARIANTS[:shift]
        for variant in order:
            started = time.process_time()
            for _ in range(turns):
                await one(variant)
            if variant == "traced":
                tracers["traced"]._provider.force_flush()  # the exporter's share of this block
            per_turn[variant].append((time.process_time() - started) / turns)
    return per_turn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=30)
    parser.add_argument("--turns", type=int, default=20, help="turns per block")
    args = parser.parse_args()
    per_turn = asyncio.run(_run(args.blocks, args.turns))
    medians = {variant: statistics.median(values) for variant, values in per_turn.items()}
    for variant, value in medians.items():
        spread = per_turn[variant]
        print(
            f"{variant:7} {value * 1e6:7.0f} us of CPU per turn"
            f" [{min(spread) * 1e6:.0f}-{max(spread) * 1e6:.0f}]"
        )
    print(f"usage against plain:  {medians['usage'] / medians['plain'] - 1:+.1%}")
    print(f"traced against usage: {medians['traced'] / medians['usage'] - 1:+.1%}")
    print(f"unsampled against usage: {medians['unsampled'] / medians['usage'] - 1:+.1%}")


if __name__ == "__main__":
    main()
