"""Finding stages, providers and tools through their entry point groups, and checking them.

Built-ins are registered in this project's own ``pyproject.toml`` under the same groups a
third-party package uses (``sluice.stages``, ``sluice.providers``, ``sluice.tools``): there is
no private door.

Only the entry points that the configuration uses are imported, so an installed package that
is broken but not enabled cannot stop the server. Each problem found is one line that names
the package and what to fix (a :class:`ConfigError`; the command line prints it and exits
with status 2).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import ValidationError

from server.config import ConfigError, Settings, format_validation_error
from server.contract import (
    AnyStage,
    Provider,
    ProviderContext,
    Services,
    Stage,
    Tool,
    WrapperStage,
)
from server.contract.toolset import ToolSet

__all__ = [
    "PROVIDER_GROUP",
    "STAGE_GROUP",
    "TOOL_GROUP",
    "PluginInfo",
    "describe_plugins",
    "import_plugins",
    "installed",
    "load_providers",
    "load_stages",
    "load_tools",
]

STAGE_GROUP = "sluice.stages"
PROVIDER_GROUP = "sluice.providers"
TOOL_GROUP = "sluice.tools"

# Provider types tried, in this order, when llm.providers is empty; then other installed
# types, then instances with an explicit type.
_DEFAULT_ORDER = ("openai", "gemini", "anthropic")


def installed(group: str) -> dict[str, EntryPoint]:
    """Name -> entry point (not loaded) for every plugin in ``group``."""
    return {point.name: point for point in entry_points(group=group)}


def _package(point: EntryPoint) -> str:
    dist = point.dist
    if dist is None:
        return point.value.split(":")[0].split(".")[0]
    return f"{dist.metadata['Name']} {dist.version}"


def _load(group: str, name: str, point: EntryPoint) -> Any:
    try:
        return point.load()
    except Exception as error:
        raise ConfigError(
            f"plugin error: {group} {name!r} from {_package(point)} ({point.value}) failed to"
            f" import: {type(error).__name__}: {error}; fix or uninstall that package, or"
            " remove it from the configuration"
        ) from error


def _check_stage_class(name: str, point: EntryPoint, cls: Any) -> None:
    where = f"stage {name!r} from {_package(point)} ({point.value})"
    if not (isinstance(cls, type) and issubclass(cls, Stage | WrapperStage)):
        raise ConfigError(
            f"plugin error: {where} must be a class subclassing server.Stage or server.WrapperStage"
        )
    method: Any
    if issubclass(cls, WrapperStage):
        method = cls.wrap
        if method is WrapperStage.wrap:
            raise ConfigError(f"plugin error: {where} must define wrap(self, turn, rest)")
        parameters = list(inspect.signature(method).parameters)
        if len(parameters) != 3:
            raise ConfigError(
                f"plugin error: {where}: wrap must take (self, turn, rest), not"
                f" ({', '.join(parameters)})"
            )
        kind = "wrap(self, turn, rest)"
    else:
        method = cls.run
        if method is Stage.run:
            raise ConfigError(f"plugin error: {where} must define run(self, turn)")
        kind = "run(self, turn)"
    if not inspect.isasyncgenfunction(method):
        raise ConfigError(
            f"plugin error: {where}: {kind} must be an async generator: 'async def' with at"
            " least one 'yield' (a stage with nothing to say can end with 'return; yield')"
        )


def load_stages(settings: Settings, services: Services) -> list[AnyStage]:
    points = installed(STAGE_GROUP)
    # Options of an installed stage left out of the pipeline are fine (switched off for
    # now); a section naming no installed stage at all is a typo.
    unknown_options = set(settings.stages) - set(points)
    if unknown_options:
        name = sorted(unknown_options)[0]
        raise ConfigError(
            f"config error: stages.{name}: no installed stage is called {name!r}"
            f" (installed: {', '.join(sorted(points)) or 'none'})"
        )
    stages: list[AnyStage] = []
    ended_by: str | None = None
    for name in settings.pipeline.stages:
        point = points.get(name)
        if point is None:
            known = ", ".join(sorted(points)) or "none"
            raise ConfigError(
                f"config error: pipeline.stages: unknown stage {name!r} (installed: {known});"
                " install the package that provides it or remove it from the list"
            )
        if ended_by is not None:
            raise ConfigError(
                f"config error: pipeline.stages: {name!r} comes after {ended_by!r}, which"
                f" always ends the turn, so it would never run; move {name!r} before"
                f" {ended_by!r}"
            )
        cls = _load(STAGE_GROUP, name, point)
        _check_stage_class(name, point, cls)
        try:
            options = cls.Options.model_validate(settings.stage_options(name))
        except ValidationError as error:
            raise ConfigError(format_validation_error(f"stages.{name}", error)) from None
        stage = cls(options, services)
        stage.name = name
        stages.append(stage)
        if cls.ends_turn:
            ended_by = name
    return stages


@dataclass(frozen=True)
class _Instance:
    name: str  # configured name
    type: str  # entry point name
    options: dict[str, Any]


def _instances(settings: Settings, points: Iterable[str]) -> tuple[list[_Instance], bool]:
    """The provider instances to build, in fallback order, and whether the order was given."""
    llm = settings.llm
    tables = llm.provider_tables()
    explicit = list(llm.providers)
    if explicit:
        names = explicit
    else:
        typed = [name for name, table in tables.items() if "type" in table]
        names = [t for t in _DEFAULT_ORDER if t in points]
        names += sorted(t for t in points if t not in (*_DEFAULT_ORDER, "demo"))
        names += [name for name in typed if name not in names]
    instances = []
    for name in names:
        table = dict(tables.get(name, {}))
        kind = table.pop("type", name)
        if not isinstance(kind, str):
            raise ConfigError(f"config error: llm.{name}.type = {kind!r}: must be a string")
        instances.append(_Instance(name, kind, table))
    return instances, bool(explicit)


def load_providers(
    settings: Settings, make_context: Callable[[str], ProviderContext]
) -> tuple[list[Provider], list[str]]:
    """The configured provider instances in fallback order, and one-line problems found on
    the way (a provider left out because its key is not set).

    With ``llm.providers`` empty (the default), every installed provider type with its
    configuration present is used, real ones first, then instances with an explicit
    ``type``; with none of them, the demo.
    """
    points = installed(PROVIDER_GROUP)
    instances, explicit = _instances(settings, points)
    for instance in instances:
        if instance.type not in points:
            known = ", ".join(sorted(points)) or "none"
            where = (
                f"llm.{instance.name}.type" if instance.type != instance.name else "llm.providers"
            )
            raise ConfigError(
                f"config error: {where}: unknown provider {instance.type!r} (installed:"
                f" {known}); install the package that provides it"
            )
    providers: list[Provider] = []
    problems: list[str] = []
    for instance in instances:
        provider = _build(instance, points[instance.type], make_context)
        missing = provider.missing_configuration()
        if missing is None:
            providers.append(provider)
        elif explicit:
            raise ConfigError(f"config error: llm.providers includes {instance.name!r}: {missing}")
        else:
            problems.append(missing)
    if not providers and "demo" in points:
        demo = _Instance("demo", "demo", settings.llm.provider_tables().get("demo", {}))
        providers.append(_build(demo, points["demo"], make_context))
    return providers, problems


def _build(
    instance: _Instance, point: EntryPoint, make_context: Callable[[str], ProviderContext]
) -> Provider:
    cls = _load(PROVIDER_GROUP, instance.type, point)
    options_class = getattr(cls, "Options", None)
    if options_class is None or not callable(getattr(cls, "missing_configuration", None)):
        raise ConfigError(
            f"plugin error: provider {instance.type!r} from {_package(point)} ({point.value})"
            " must be a class with an Options model and the methods of server.Provider"
        )
    _check_provider_methods(instance.type, point, cls)
    try:
        options = options_class.model_validate(instance.options)
    except ValidationError as error:
        raise ConfigError(format_validation_error(f"llm.{instance.name}", error)) from None
    built = cls(options, make_context(instance.name))
    if not getattr(options, "vision", True):
        # ``vision = false`` in the instance's table: the chain reads it as the class's own
        # ``sees_images`` (see server.llm.chain).
        built.sees_images = False
    provider: Provider = built
    provider.name = instance.name
    return provider


def _check_provider_methods(kind: str, point: EntryPoint, cls: Any) -> None:
    """Refuse at start-up a provider whose ``stream`` or ``complete`` cannot be given the
    client's sampling parameters, rather than fail the first turn that sets one."""
    for method in ("stream", "complete"):
        try:
            parameters = inspect.signature(getattr(cls, method)).parameters.values()
        except (AttributeError, TypeError, ValueError):
            parameters = None
        if parameters is None or not any(
            p.name == "params" or p.kind is p.VAR_KEYWORD for p in parameters
        ):
            raise ConfigError(
                f"plugin error: provider {kind!r} from {_package(point)} ({point.value}):"
                f" {method} must take (self, messages, *, max_output_tokens, timeout,"
                " params=None), as server.Provider says"
            )


def _tools_of(name: str, point: EntryPoint) -> list[Tool]:
    """The tools one ``sluice.tools`` entry point offers: it names a :class:`Tool`, a typed
    function (made into one), or a list of either (a package's toolbox)."""
    target = _load(TOOL_GROUP, name, point)
    items = list(target) if isinstance(target, list | tuple) else [target]
    tools: list[Tool] = []
    for item in items:
        try:
            made = item if isinstance(item, Tool) else Tool.from_function(item)
        except (TypeError, ValueError) as error:
            raise ConfigError(
                f"plugin error: tool {name!r} from {_package(point)} ({point.value}): {error}"
            ) from None
        tools.append(made if made.source else _with_source(made, _package(point)))
    return tools


def _with_source(tool: Tool, source: str) -> Tool:
    return replace(tool, source=source)


def load_tools(settings: Settings) -> ToolSet:
    """The tools of every entry point ``tools.enabled`` names, in that order."""
    points = installed(TOOL_GROUP)
    toolset = ToolSet()
    for name in settings.tools.enabled:
        point = points.get(name)
        if point is None:
            known = ", ".join(sorted(points)) or "none"
            raise ConfigError(
                f"config error: tools.enabled: unknown tool {name!r} (installed: {known});"
                " install the package that provides it or remove it from the list"
            )
        for item in _tools_of(name, point):
            try:
                toolset.add(item)
            except ValueError as error:
                raise ConfigError(f"config error: tools.enabled: {error}") from None
    return toolset


@dataclass(frozen=True)
class PluginInfo:
    """One installed plugin, as ``python -m server plugins`` lists it."""

    group: str
    name: str
    package: str  # distribution name and version
    value: str  # the entry point's target (a provider instance: its type)
    enabled: bool
    options: dict[str, Any]


def import_plugins(settings: Settings) -> None:
    """Import the modules of every configured stage, provider and tool, and nothing more.

    The supervisor calls this before forking its workers: the providers' SDKs take seconds
    to import (``openai`` and ``google.genai`` about four each under load), and imported once
    they are shared by every worker instead of imported again in each, so workers start in
    the time one takes and share those pages. A plugin that fails to import is left for
    each worker's start-up to report, as it would be without this.
    """
    wanted = [(STAGE_GROUP, name) for name in settings.pipeline.stages]
    wanted += [(TOOL_GROUP, name) for name in settings.tools.enabled]
    providers = installed(PROVIDER_GROUP)
    with contextlib.suppress(ConfigError):
        instances, _ = _instances(settings, providers)
        wanted += [(PROVIDER_GROUP, instance.type) for instance in instances]
    for group, name in wanted:
        point = installed(group).get(name)
        if point is not None:
            with contextlib.suppress(Exception):
                point.load()


def describe_plugins(
    settings: Settings, make_context: Callable[[str], ProviderContext]
) -> tuple[list[PluginInfo], list[Provider]]:
    """Every installed stage, tool and provider type, whether the configuration enables it, and
    its options (defaults merged with the configuration), then one entry per provider
    instance in the fallback chain. The providers built on the way are returned too, for the
    caller to close."""
    infos: list[PluginInfo] = []
    enabled_stages = set(settings.pipeline.stages)
    for name, point in sorted(installed(STAGE_GROUP).items()):
        options: dict[str, Any] = {}
        if name in enabled_stages:
            cls = _load(STAGE_GROUP, name, point)
            try:
                options = cls.Options.model_validate(settings.stage_options(name)).model_dump()
            except ValidationError as error:
                raise ConfigError(format_validation_error(f"stages.{name}", error)) from None
        infos.append(
            PluginInfo("stage", name, _package(point), point.value, name in enabled_stages, options)
        )
    enabled_tools = set(settings.tools.enabled)
    for name, point in sorted(installed(TOOL_GROUP).items()):
        described: dict[str, Any] = {}
        if name in enabled_tools:
            described = {
                "tools": [
                    {**item.schema(), "requires_approval": item.requires_approval}
                    for item in _tools_of(name, point)
                ]
            }
        infos.append(
            PluginInfo("tool", name, _package(point), point.value, name in enabled_tools, described)
        )
    providers, _ = load_providers(settings, make_context)
    points = installed(PROVIDER_GROUP)
    types = {provider.name: _type_of(settings, provider.name) for provider in providers}
    for name, point in sorted(points.items()):
        used = name in types.values()
        infos.append(PluginInfo("provider", name, _package(point), point.value, used, {}))
    for provider in providers:
        kind = types[provider.name]
        model: Any = getattr(provider, "options", None)
        shown: dict[str, Any] = model.model_dump() if hasattr(model, "model_dump") else {}
        infos.append(
            PluginInfo(
                "provider instance",
                provider.name,
                _package(points[kind]),
                kind,
                True,
                shown,
            )
        )
    return infos, providers


def _type_of(settings: Settings, name: str) -> str:
    kind = settings.llm.provider_tables().get(name, {}).get("type", name)
    return str(kind)
