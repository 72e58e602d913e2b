"""The systems under test: how to launch each, where its stream endpoint is, how to tell it's up."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.fake_upstream import TOOL_NAME
from bench.litellm_proxy import (
    LITELLM_MASTER_KEY,
    LITELLM_VERSION,
    ensure_litellm,
    litellm_bin,
    litellm_config,
)

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


@dataclass(frozen=True)
class Launch:
    """What the runner needs to know about one run of a system."""

    port: int
    upstream_url: str  # http://127.0.0.1:<port>/v1
    data_dir: str
    workload: str
    database_url: str = ""  # a new, empty PostgreSQL database, for systems that need one
    redis_url: str = ""  # a redis-server the runner started for this run (System.redis)
    otlp_url: str = ""  # an OTLP/HTTP sink the runner started for this run (System.otlp)


@dataclass(frozen=True)
class System:
    name: str
    describe: str
    argv: Callable[[Launch], list[str]] | None  # None: no relay, the client hits the upstream
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    extra_env: Callable[[Launch], dict[str, str]] = lambda launch: {}
    health: str = "/healthz"
    # Where it runs from; None: this checkout.
    cwd: Callable[[], Path | None] = lambda: None
    # Needs a PostgreSQL database (bench.postgres gives each run a new one).
    database: bool = False
    # Speak OpenAI's Chat Completions to it (request and response), asking for this model.
    openai_model: str | None = None
    start_timeout_s: float = 60.0
    # Prepares what the system needs before it can run (LiteLLM's venv); returns why not.
    prepare: Callable[[], str | None] = lambda: None
    redis: bool = False  # the runner starts a redis-server (off the server's core) for it
    # Runs the model's tool calls itself (the "tools" workload); the others only relay text.
    tools: bool = False
    # Speak the Vercel AI SDK's chat transport and UI message stream protocol to it.
    ai_sdk: bool = False
    # In the "tools" workload, the load client declares this tool (OpenAI ``tools``) and runs
    # its calls itself, sending the results in a second request: the /v1 client-tool round.
    client_tool: str | None = None
    otlp: bool = False  # the runner starts an OTLP/HTTP sink (bench.otlp_sink) for its traces

    def available(self) -> str | None:
        """None when it can run here, else why not."""
        if self.name.startswith("sluice") and not (ROOT / "server" / "__main__.py").exists():
            return "server/__main__.py does not exist yet"
        if self.name == "sluice-baseline":
            folder = self.cwd()
            if folder is None or not (folder / "server" / "__main__.py").exists():
                return f"set {BASELINE_ENV} to a checkout of the commit to compare with"
        if self.otlp and importlib.util.find_spec("opentelemetry.sdk") is None:
            return "the OpenTelemetry SDK is not installed: pip install -e '.[otel]'"
        return self.prepare()

    def env(self, launch: Launch) -> dict[str, str]:
        return {
            "PORT": str(launch.port),
            "OPENAI_API_KEY": "bench",
            "OPENAI_BASE_URL": launch.upstream_url,
            **self.extra_env(launch),
        }


# A checkout of another commit (``git worktree add /tmp/base <commit>``), run as the system
# "sluice-baseline" beside "sluice" to compare two versions in one run.
BASELINE_ENV = "SLUICE_BENCH_BASELINE"


def _baseline_dir() -> Path | None:
    value = os.environ.get(BASELINE_ENV)
    return Path(value).resolve() if value else None


def _sluice_env(launch: Launch) -> dict[str, str]:
    env = {
        "SLUICE_LLM__PROVIDERS": "openai",
        "SLUICE_API_TOKENS": "bench:bench-user",
        "SLUICE_RATE_LIMIT__REQUESTS_PER_MINUTE": "100000000",
        "SLUICE_RATE_LIMIT__BURST": "100000000",
        "SLUICE_LIMITS__MAX_STREAMS_PER_USER": "100000",
        "SLUICE_DATA_DIR": launch.data_dir,
        "SLUICE_LOG__LEVEL": "warning",
        # Every load-generator connection comes from one loopback address.
        "SLUICE_SERVER__MAX_CONNECTIONS_PER_ADDRESS": "0",
    }
    if launch.workload == "idle":
        # Tokens come every 10 s in the idle workload: a 4 s heartbeat shows up in between.
        env["SLUICE_STREAM__HEARTBEAT_SECONDS"] = "4"
    return env


def _client_tool_env(launch: Launch) -> dict[str, str]:
    env = _sluice_env(launch)
    if launch.workload == "tools":
        # The upstream calls current_time: here the client's own tool, so the server offers
        # none of its own (a client tool may not take a server tool's name; on sluice's own
        # endpoint the call then ends the answer, and the client answers it).
        env["SLUICE_TOOLS__ENABLED"] = ""
    return env


def _sluice_traced_env(launch: Launch) -> dict[str, str]:
    return {
        **_sluice_env(launch),
        "OTEL_EXPORTER_OTLP_ENDPOINT": launch.otlp_url,
        # Exports while the load runs, so that their CPU is measured with it.
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }


def _sluice_sampled_env(launch: Launch) -> dict[str, str]:
    # A tenth of the turns traced, as docs/operations.md suggests for production.
    return {
        **_sluice_traced_env(launch),
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    }


def _litellm_argv(launch: Launch) -> list[str]:
    config = Path(launch.data_dir) / "litellm.yaml"
    config.write_text(litellm_config(launch.upstream_url))
    return [
        str(litellm_bin()),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(launch.port),
        "--num_workers",
        "1",
    ]


def _litellm_env(launch: Launch) -> dict[str, str]:
    return {
        # Use the cost map shipped in the package: no fetch from GitHub at start-up.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "DISABLE_SCHEMA_UPDATE": "True",
    }


def _baseline_env(launch: Launch) -> dict[str, str]:
    # The baseline may predate the setting, and an unknown setting stops sluice at start-up.
    env = _sluice_env(launch)
    env.pop("SLUICE_SERVER__MAX_CONNECTIONS_PER_ADDRESS")
    return env


def _sluice_redis_env(workers: int) -> Callable[[Launch], dict[str, str]]:
    def env(launch: Launch) -> dict[str, str]:
        return {
            **_sluice_env(launch),
            "REDIS_URL": launch.redis_url,
            "SLUICE_SERVER__WORKERS": str(workers),
        }

    return env


# The pipeline without the usage stage: no ledger, no budgets (the "off" of the usage runs).
_NO_USAGE = "rate_limit,session,intent,context,llm"


def _with_usage(
    base: Callable[[Launch], dict[str, str]], on: bool
) -> Callable[[Launch], dict[str, str]]:
    """``base``'s environment with the usage ledger and budgets on (a budget no load reaches,
    so every turn is admitted and settled, and prices, so every answer is costed) or off."""

    def env(launch: Launch) -> dict[str, str]:
        if not on:
            return {**base(launch), "SLUICE_PIPELINE__STAGES": _NO_USAGE}
        return {
            **base(launch),
            "SLUICE_BUDGETS__TOKENS_PER_USER": str(10**15),
            "SLUICE_BUDGETS__USD_PER_USER": str(10**9),
            "SLUICE_PRICING__GPT-4O-MINI__INPUT_PER_MILLION": "0.15",
            "SLUICE_PRICING__GPT-4O-MINI__CACHED_INPUT_PER_MILLION": "0.075",
            "SLUICE_PRICING__GPT-4O-MINI__OUTPUT_PER_MILLION": "0.60",
        }

    return env


def _usage_systems() -> list[System]:
    """sluice with the usage ledger and budgets off and on, embedded and on Redis."""
    found = []
    for redis, base in ((False, _sluice_env), (True, _sluice_redis_env(1))):
        for on in (False, True):
            name = "sluice" + ("-redis" if redis else "") + ("-budgets" if on else "-nousage")
            found.append(
                System(
                    name=name,
                    describe=(
                        "sluice"
                        + (" with REDIS_URL" if redis else "")
                        + (
                            ", the usage ledger and budgets on (priced, limits never reached)"
                            if on
                            else ", without the usage stage (no ledger, no budgets)"
                        )
                    ),
                    argv=lambda launch: [PY, "-m", "server"],
                    path="/api/conversation-stream/bench-user",
                    headers={"Authorization": "Bearer bench"},
                    extra_env=_with_usage(base, on),
                    redis=redis,
                    tools=True,
                )
            )
    return found


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in [
        System(
            name="direct",
            describe="no relay: the client reads the fake upstream's /chat (harness ceiling)",
            argv=None,
            path="/chat",
        ),
        System(
            name="sluice",
            describe="sluice full pipeline (python -m server)",
            argv=lambda launch: [PY, "-m", "server"],
            path="/api/conversation-stream/bench-user",
            headers={"Authorization": "Bearer bench"},
            extra_env=_sluice_env,
            tools=True,
        ),
        System(
            name="sluice-client-tool",
            describe="sluice's own stream endpoint, the client-tool round's two requests",
            argv=lambda launch: [PY, "-m", "server"],
            path="/api/conversation-stream/bench-user",
            headers={"Authorization": "Bearer bench"},
            extra_env=_client_tool_env,
            # The first turn ends at the model's call; the client sends the result as the
            # session's next message (bench.load_client), as /v1's client does in "messages".
            client_tool=TOOL_NAME,
        ),
        System(
            name="sluice-traced",
            describe="sluice with OpenTelemetry traces exported over OTLP/HTTP to a local sink",
            argv=lambda launch: [PY, "-m", "server"],
            path="/api/conversation-stream/bench-user",
            headers={"Authorization": "Bearer bench"},
            extra_env=_sluice_traced_env,
            tools=True,
            otlp=True,
        ),
        System(
            name="sluice-traced-10pct",
            describe="sluice-traced with a tenth of the turns sampled (parentbased_traceidratio)",
            argv=lambda launch: [PY, "-m", "server"],
            path="/api/conversation-stream/bench-user",
            headers={"Authorization": "Bearer bench"},
            extra_env=_sluice_sampled_env,
            tools=True,
            otlp=True,
        ),
        System(
            name="sluice-pg",
            describe="sluice full pipeline with history in PostgreSQL on loopback (DATABASE_URL)",
            argv=lambda launch: [PY, "-m", "server"],
            path="/api/conversation-stream/bench-user",
            headers={"Authorization": "Bearer bench"},
            extra_env=lambda launch: {**_sluice_env(launch), "DATABASE_URL": launch.database_url},
            database=True,
            tools=True,
        ),
        System(
            name="sluice-baseline",
            describe=f"sluice from the checkout in ${BASELINE_ENV}, for before/after runs",
            argv=lambda launch: [PY, "-m", "server"],
            path="/api/conversation-stream/bench-user",
            headers={"Authorization": "Bearer bench"},
            extra_env=_baseline_env,
            cwd=_baseline_dir,
            tools=True,  # when its checkout runs tools (the tools workload)
        ),
        System(
            name="direct-openai",
            describe="no relay: the client reads the fake upstream's /v1/chat/completions",
            argv=None,
            path="/v1/chat/completions",
            openai_model="bench-model",
        ),
        System(
            name="sluice-v1",
            describe="sluice's OpenAI-compatible /v1/chat/completions, full pipeline",
            argv=lambda launch: [PY, "-m", "server"],
            path="/v1/chat/completions",
            headers={"Authorization": "Bearer bench"},
            extra_env=_client_tool_env,
            openai_model="sluice",
            client_tool=TOOL_NAME,
        ),
        System(
            name="sluice-v1-server-tool",
            describe="sluice's /v1/chat/completions with the server's own tool, full pipeline",
            argv=lambda launch: [PY, "-m", "server"],
            path="/v1/chat/completions",
            headers={"Authorization": "Bearer bench"},
            extra_env=_sluice_env,
            openai_model="sluice",
            tools=True,  # the round runs inside the turn, as on sluice's own endpoint
        ),
        System(
            name="sluice-ai-sdk",
            describe="sluice's POST /api/chat (the AI SDK's protocol), full pipeline",
            argv=lambda launch: [PY, "-m", "server"],
            path="/api/chat",
            headers={"Authorization": "Bearer bench"},
            extra_env=_sluice_env,
            tools=True,
            ai_sdk=True,
        ),
        System(
            name="litellm",
            describe=f"LiteLLM proxy {LITELLM_VERSION} (1 uvicorn worker), its own venv",
            argv=_litellm_argv,
            path="/v1/chat/completions",
            headers={"Authorization": f"Bearer {LITELLM_MASTER_KEY}"},
            extra_env=_litellm_env,
            health="/health/liveliness",
            openai_model="bench",
            start_timeout_s=180.0,
            prepare=ensure_litellm,
        ),
        System(
            name="sluice-redis",
            describe="sluice with REDIS_URL: stream logs, limits, caps and leases in Redis",
            argv=lambda launch: [PY, "-m", "server"],
            path="/api/conversation-stream/bench-user",
            headers={"Authorization": "Bearer bench"},
            extra_env=_sluice_redis_env(1),
            redis=True,
            tools=True,
        ),
        System(
            name="sluice-redis-2w",
            describe="sluice with REDIS_URL and server.workers = 2 (two processes, one port)",
            argv=lambda launch: [PY, "-m", "server"],
            path="/api/conversation-stream/bench-user",
            headers={"Authorization": "Bearer bench"},
            extra_env=_sluice_redis_env(2),
            redis=True,
            tools=True,
        ),
        *_usage_systems(),
        System(
            name="tornado",
            describe="bare Tornado handler, AsyncOpenAI typed stream, write+flush per chunk",
            argv=lambda launch: [PY, "-m", "bench.baselines.tornado_relay"],
            path="/chat",
        ),
        System(
            name="tornado-lines",
            describe="bare Tornado handler, httpx2 stream read with aiter_lines (no SDK)",
            argv=lambda launch: [PY, "-m", "bench.baselines.tornado_lines_relay"],
            path="/chat",
        ),
        System(
            name="fastapi",
            describe="FastAPI + sse-starlette EventSourceResponse on uvicorn, AsyncOpenAI",
            argv=lambda launch: [PY, "-m", "bench.baselines.fastapi_relay"],
            path="/chat",
        ),
        System(
            name="flask",
            describe="Flask on gunicorn gthread (1 worker x 100 threads), sync OpenAI client",
            argv=lambda launch: [
                PY,
                "-m",
                "gunicorn",
                "-k",
                "gthread",
                "-w",
                "1",
                "--threads",
                "100",
                "--worker-connections",
                "20000",
                "--backlog",
                "4096",
                "--log-level",
                "warning",
                "--timeout",
                "120",
                "-b",
                f"127.0.0.1:{launch.port}",
                "bench.baselines.flask_relay:app",
            ],
            path="/chat",
        ),
    ]
}
