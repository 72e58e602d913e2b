"""Settings: ``config.toml``, then ``SLUICE_<SECTION>__<KEY>`` overrides, then well-known names.

Every setting has a default here and a comment in the shipped ``config.toml``. A bad value
stops start-up with :class:`ConfigError`, whose message is one line naming the key, the value
and what is allowed.

Why not pydantic-settings (tried with 2.16.3; the in-process tests of ``tests/test_config.py``,
``tests/test_provider_instances.py`` and ``tests/test_openapi.py`` passed on it): it does the
``SLUICE_<SECTION>__<KEY>`` split and reads TOML, but keeping our contract took as much code
around it:

* ``load_settings(environ)`` takes a mapping (the tests pass one); its env source reads
  ``os.environ``, so it needed a subclass overriding a private method (``_load_env_vars``)
  and the mapping and file path passed to ``settings_customise_sources`` through module state;
* its env source JSON-decodes list and dict fields, so ``SLUICE_PIPELINE__STAGES=a,b`` failed
  with a ``SettingsError`` naming no value; off (``enable_decoding=False``), values stay text
  and errors said ``= '0'`` where ours say ``= 0``, so the TOML reading of values stayed ours;
* the well-known names (``PORT``, ``OPENAI_MODEL`` into ``[llm.openai]`` ...) map onto nested
  keys, which its aliases do not reach: a custom source, the same table as ``_WELL_KNOWN``;
* ``Settings()`` would read the environment, so tests and callers building one from values
  needed a second class (``class Loaded(BaseSettings, Settings)``) and a copy back;
* the missing-file and bad-TOML errors and ``format_validation_error`` stayed as they are.

Its loading code came to 55 non-blank lines that still used ``_parse_env_value``,
``_set_path`` and ``_WELL_KNOWN`` from here, against 48 here from ``_parse_env_value`` to the
end, plus two packages (pydantic-settings, python-dotenv). It was also slower, on this 2-core
machine while other jobs ran:
``import pydantic_settings`` after this module added 47 ms (best of 5,
``python -c "import time, server.config; t=time.perf_counter(); import pydantic_settings;
print(time.perf_counter()-t)"``), and ``load_settings`` of the shipped file with three
variables took 7.5 and 6.0 ms against 3.6 and 3.9 ms here (two alternated runs, each the
best of 5 x 20 calls, ``timeit.repeat``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = ["ConfigError", "Settings", "format_validation_error", "load_settings"]


# The values SLUICE_ENV may take.
KNOWN_ENVS = ("development", "production")


class ConfigError(Exception):
    """A configuration problem, already phrased as one line for a person."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _split_list(value: Any) -> Any:
    """Accept ``"a,b"`` from an environment variable as well as a TOML list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # 0: $WEB_CONCURRENCY with shared stores, else 1 (server/commands/serve.py).
    workers: int = Field(0, ge=0)
    data_dir: str = "./data"
    trust_proxy: bool = False
    cors_origins: list[str] = []
    shutdown_grace_seconds: float = Field(25.0, ge=0)
    header_timeout_seconds: float = Field(10.0, gt=0)
    body_timeout_seconds: float = Field(10.0, gt=0)
    max_connections: int = Field(0, ge=0)
    max_connections_per_address: int = Field(256, ge=0)

    _split = field_validator("cors_origins", mode="before")(_split_list)


class StreamSettings(_Section):
    heartbeat_seconds: float = Field(15.0, gt=0)
    retry_ms: int = Field(2000, ge=0)
    padding_bytes: int = Field(0, ge=0, le=65536)
    log_ttl_seconds: float = Field(300.0, gt=0)
    on_disconnect: Literal["continue", "cancel"] = "continue"
    max_duration_seconds: float = Field(300.0, gt=0)
    send_timeout_seconds: float = Field(30.0, gt=0)
    max_log_events: int = Field(20000, ge=16)


class LimitSettings(_Section):
    max_body_bytes: int = Field(65536, ge=64)
    max_header_bytes: int = Field(32768, ge=1024)
    max_message_chars: int = Field(8000, ge=1)
    max_streams_per_user: int = Field(3, ge=1)
    # POST /api/chat: the AI SDK's transport sends the whole conversation every time (the
    # server reads only its last user message, bounded by max_message_chars).
    max_chat_body_bytes: int = Field(1048576, ge=64)
    # Images sent with a message (the stream endpoint's ``images``, /v1's ``image_url`` data
    # URLs): each at most max_image_bytes decoded, at most max_images in one request. The
    # requests that may carry images are let grow past max_body_bytes by their images'
    # base64 alone: the rest of the body (the text) is still held to max_body_bytes.
    max_image_bytes: int = Field(5 * 1024 * 1024, ge=1)
    max_images: int = Field(4, ge=0)

    def image_allowance_bytes(self) -> int:
        """How much larger than ``max_body_bytes`` a body carrying images may be: the
        base64 of ``max_images`` images of ``max_image_bytes``, with room for their wrapping
        (a data URL's prefix, the JSON around it)."""
        base64_size = 4 * -(-self.max_image_bytes // 3)
        return self.max_images * (base64_size + 256)


class RateLimitSettings(_Section):
    requests_per_minute: float = Field(30.0, gt=0)
    burst: int = Field(10, ge=1)


class PipelineSettings(_Section):
    stages: list[str] = ["rate_limit", "usage", "session", "intent", "context", "llm"]

    _split = field_validator("stages", mode="before")(_split_list)

    @field_validator("stages")
    @classmethod
    def _unique(cls, stages: list[str]) -> list[str]:
        if not stages:
            raise ValueError("at least one stage is needed")
        if len(set(stages)) != len(stages):
            raise ValueError("a stage may appear only once")
        return stages


class LLMSettings(BaseModel):
    # Sub-tables ([llm.openai], [llm.gemini], [llm.anthropic], [llm.demo], third-party names)
    # are validated by each provider's own Options model once the providers are loaded.
    model_config = ConfigDict(extra="allow", validate_default=True)

    providers: list[str] = []
    first_token_timeout_seconds: float = Field(20.0, gt=0)
    idle_timeout_seconds: float = Field(30.0, gt=0)
    max_output_tokens: int = Field(1024, ge=1)
    max_answer_chars: int = Field(100_000, ge=1)
    circuit_failures: int = Field(3, ge=1)
    circuit_cooldown_seconds: float = Field(30.0, ge=0)
    allow_demo: bool = False

    _split = field_validator("providers", mode="before")(_split_list)

    def provider_tables(self) -> dict[str, dict[str, Any]]:
        """Every ``[llm.<name>]`` table, in the order the configuration gives them."""
        tables: dict[str, dict[str, Any]] = {}
        for name, value in (self.model_extra or {}).items():
            if not isinstance(value, dict):
                raise ConfigError(f"config error: llm.{name} = {value!r}: must be a table")
            tables[name] = value
        return tables


class ToolSettings(_Section):
    # Entry point names in the "sluice.tools" group whose tools the model may call.
    enabled: list[str] = ["current_time"]
    timeout_seconds: float = Field(30.0, gt=0)
    max_result_chars: int = Field(16000, ge=100)
    max_rounds: int = Field(8, ge=1)
    approval_timeout_seconds: float = Field(300.0, gt=0)

    _split = field_validator("enabled", mode="before")(_split_list)


class MCPServerSettings(_Section):
    """One ``[mcp.<name>]`` table: an MCP server whose tools become server tools."""

    # The command that starts a stdio server (argv, no shell), or a Streamable HTTP URL.
    command: list[str] = []
    url: str = ""
    # Given to the command's process (over a minimal inherited environment) / sent with
    # every HTTP request. Secrets: never logged or shown in errors.
    env: dict[str, str] = {}
    headers: dict[str, str] = {}
    cwd: str = ""
    require_approval: bool = True
    # First connection, and each reconnection, must finish within this.
    connect_timeout_seconds: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServerSettings:
        if bool(self.command) == bool(self.url):
            raise ValueError(
                'set exactly one of command = ["program", "arg", ...] (stdio) or'
                ' url = "https://..." (Streamable HTTP)'
            )
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return self


class AuthSettings(_Section):
    secret_key: str = ""
    api_tokens: dict[str, str] = {}
    # Operators' bearer tokens ("token:name,..."): they may read anyone's usage.
    admin_tokens: dict[str, str] = {}
    jwt_secret: str = ""
    cookie_name: str = "sluice_uid"
    cookie_max_age_days: int = Field(365, ge=1)

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        # HS256 wants a key of at least 256 bits (RFC 7518 section 3.2); a short one can be
        # brute-forced from any token it signed.
        if value and len(value) < 32:
            raise ValueError(
                "must be at least 32 characters; make one with"
                " python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

    @field_validator("api_tokens", "admin_tokens", mode="before")
    @classmethod
    def _parse_tokens(cls, value: Any) -> Any:
        # SLUICE_API_TOKENS="token:user_id,token:user_id" (SLUICE_ADMIN_TOKENS: token:name)
        if isinstance(value, str):
            tokens: dict[str, str] = {}
            for pair in filter(None, (p.strip() for p in value.split(","))):
                token, sep, user_id = pair.partition(":")
                if not sep or not token or not user_id:
                    raise ValueError("expected token:user_id pairs separated by commas")
                tokens[token] = user_id
            return tokens
        return value


class PriceSettings(_Section):
    """One model's prices in USD per million tokens (``[pricing."<model>"]``)."""

    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)
    # Prompt tokens read from a cache; unset: charged as any other input.
    cached_input_per_million: float | None = Field(None, ge=0)


class BudgetLimits(_Section):
    """What one user may spend in a period; unset: no limit of that kind."""

    tokens_per_user: int | None = Field(None, ge=0)
    usd_per_user: float | None = Field(None, ge=0)


class BudgetSettings(BudgetLimits):
    # When budgets reset: midnight UTC ("day") or the first of the month ("month").
    period: Literal["day", "month"] = "month"
    # A group's table is that group's budget whole (chosen by the JWT claim budget_group).
    groups: dict[str, BudgetLimits] = {}


class StoreSettings(_Section):
    sqlite_file: str = "sessions.sqlite3"
    redis_url: str = ""
    # With Redis, each running turn's lease: its instance renews it four times a lease, and
    # when an instance dies mid-answer, another ends that turn (error, the partial answer
    # saved) within about this long. Shorter finds a dead instance sooner; a lease shorter
    # than a pause of the process (a long GC, a stalled disk) would end turns that still run.
    redis_lease_seconds: float = Field(10.0, ge=1, le=600)
    # PostgreSQL for history when set (DATABASE_URL); SQLite in the data directory otherwise.
    database_url: str = ""
    # Connections one process keeps to PostgreSQL at most.
    database_pool_size: int = Field(10, ge=1, le=1000)
    # Bound on connecting, on waiting for a pooled connection, and on each statement: a slow
    # or unreachable database gives a clear error in this time, never a hang.
    database_timeout_seconds: float = Field(5.0, gt=0, le=600)

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str) -> str:
        scheme = value.partition("://")[0].lower()
        if value and (not value.partition("://")[1] or scheme not in ("postgres", "postgresql")):
            raise ValueError(
                "must start with postgres:// or postgresql:// (empty: history in SQLite)"
            )
        return value


class LogSettings(_Section):
    # "auto": readable lines on a terminal, JSON lines otherwise (a PaaS, a file, a pipe).
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"
    include_content: bool = False

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    server: ServerSettings = ServerSettings()
    stream: StreamSettings = StreamSettings()
    limits: LimitSettings = LimitSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    pipeline: PipelineSettings = PipelineSettings()
    stages: dict[str, dict[str, Any]] = {}
    llm: LLMSettings = LLMSettings()
    tools: ToolSettings = ToolSettings()
    mcp: dict[str, MCPServerSettings] = {}
    auth: AuthSettings = AuthSettings()
    store: StoreSettings = StoreSettings()
    log: LogSettings = LogSettings()
    pricing: dict[str, PriceSettings] = {}
    budgets: BudgetSettings = BudgetSettings()
    # SLUICE_ENV: "production" turns on the demo guard.
    env: str = "development"

    @field_validator("env")
    @classmethod
    def _known_env(cls, value: str) -> str:
        # A typo ("prod", "Production") silently meant "not production": the guard off.
        if value not in KNOWN_ENVS:
            raise ValueError(f"must be one of {', '.join(map(repr, KNOWN_ENVS))} (lower case)")
        return value

    @property
    def data_dir(self) -> Path:
        return Path(self.server.data_dir)

    def stage_options(self, name: str) -> dict[str, Any]:
        return self.stages.get(name, {})


# Well-known environment names, honoured as they are.
_WELL_KNOWN: dict[str, tuple[str, ...]] = {
    "PORT": ("server", "port"),
    "OPENAI_BASE_URL": ("llm", "openai", "base_url"),
    "OPENAI_MODEL": ("llm", "openai", "model"),
    "GEMINI_BASE_URL": ("llm", "gemini", "base_url"),
    "GEMINI_MODEL": ("llm", "gemini", "model"),
    "ANTHROPIC_BASE_URL": ("llm", "anthropic", "base_url"),
    "ANTHROPIC_MODEL": ("llm", "anthropic", "model"),
    "REDIS_URL": ("store", "redis_url"),
    "DATABASE_URL": ("store", "database_url"),
    "SLUICE_PROVIDERS": ("llm", "providers"),
    "SLUICE_SECRET_KEY": ("auth", "secret_key"),
    "SLUICE_API_TOKENS": ("auth", "api_tokens"),
    "SLUICE_JWT_SECRET": ("auth", "jwt_secret"),
    "SLUICE_ADMIN_TOKENS": ("auth", "admin_tokens"),
    "SLUICE_DATA_DIR": ("server", "data_dir"),
    "SLUICE_ENV": ("env",),
}

_SECRET_KEYS = {
    "secret_key",
    "api_tokens",
    "admin_tokens",
    "jwt_secret",
    "api_key",
    "database_url",
}
# An MCP server's environment and HTTP headers carry its keys and tokens.
_MCP_SECRET_KEYS = {"env", "headers"}


def _parse_env_value(raw: str) -> Any:
    """Read a value as TOML when it is one (``1``, ``true``, ``["a"]``), else as text."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _set_path(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = tree
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[tuple[str, ...], Any]]:
    overrides: list[tuple[tuple[str, ...], Any]] = []
    for name, raw in environ.items():
        if name.startswith("SLUICE_") and "__" in name:
            path = tuple(part.lower() for part in name[len("SLUICE_") :].split("__"))
            if all(path):
                overrides.append((path, _parse_env_value(raw)))
    for name, path in _WELL_KNOWN.items():
        if environ.get(name):
            raw = environ[name]
            # Ports and secrets stay text-shaped: "007" is a token, not a number.
            overrides.append((path, int(raw) if name == "PORT" and raw.isdigit() else raw))
    return overrides


def _shown(path: tuple[str | int, ...], value: Any) -> str:
    secret = _SECRET_KEYS | (_MCP_SECRET_KEYS if path[:1] == ("mcp",) else set())
    if any(str(part) in secret for part in path):
        return "'***'"
    if path[:1] == ("mcp",) and isinstance(value, dict):  # a whole [mcp.<name>] table
        value = {k: "***" if k in _MCP_SECRET_KEYS else v for k, v in value.items()}
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def format_validation_error(prefix: str, error: ValidationError) -> str:
    """The first problem as one line: ``key = value: what is allowed``."""
    first = error.errors()[0]
    loc = tuple(first["loc"])
    key = ".".join(str(part) for part in (prefix, *loc) if part != "")
    if key == "env":
        key = "SLUICE_ENV"  # set from the environment only
    if first["type"] == "extra_forbidden":
        return f"config error: {key}: unknown setting (check the spelling against config.toml)"
    if first["type"] == "missing":
        return f"config error: {key}: required setting is missing"
    message = first["msg"].removeprefix("Value error, ")
    return f"config error: {key} = {_shown(loc, first.get('input'))}: {message}"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from the config file and the environment."""
    environ = os.environ if environ is None else environ
    explicit = environ.get("SLUICE_CONFIG")
    path = Path(explicit or "config.toml")
    tree: dict[str, Any] = {}
    if path.is_file():
        try:
            tree = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"config error: {path}: not valid TOML ({error})") from None
    elif explicit:
        raise ConfigError(f"config error: SLUICE_CONFIG = {explicit!r}: no such file")
    for key_path, value in _env_overrides(environ):
        _set_path(tree, key_path, value)
    try:
        return Settings.model_validate(tree)
    except ValidationError as error:
        raise ConfigError(format_validation_error("", error)) from None
