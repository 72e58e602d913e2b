"""Finding stages and providers through their entry point groups.

Built-ins are registered in this project's own ``pyproject.toml`` under the same groups a
third-party package uses (``sluice.stages``, ``sluice.providers``): there is no private door.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from server.config import ConfigError, Settings, format_validation_error
from server.plugin_api import AnyStage, Services, Stage, WrapperStage
from server.providers import Provider, ProviderContext

__all__ = ["PROVIDER_GROUP", "STAGE_GROUP", "available", "load_providers", "load_stages"]

STAGE_GROUP = "sluice.stages"
PROVIDER_GROUP = "sluice.providers"


def available(group: str) -> dict[str, Any]:
    """Name -> loaded object for every entry point in ``group``."""
    found: dict[str, Any] = {}
    for point in entry_points(group=group):
        try:
            found[point.name] = point.load()
        except Exception as error:
            raise ConfigError(
                f"plugin error: {group} entry point {point.name!r} ({point.value}) failed to"
                f" load: {type(error).__name__}: {error}"
            ) from error
    return found


def load_stages(settings: Settings, services: Services) -> list[AnyStage]:
    classes = available(STAGE_GROUP)
    # Options of an installed stage left out of the pipeline are fine (switched off for
    # now); a section naming no installed stage at all is a typo.
    unknown_options = set(settings.stages) - set(classes)
    if unknown_options:
        name = sorted(unknown_options)[0]
        raise ConfigError(
            f"config error: stages.{name}: no installed stage is called {name!r}"
            f" (installed: {', '.join(sorted(classes))})"
        )
    stages: list[AnyStage] = []
    for name in settings.pipeline.stages:
        cls = classes.get(name)
        if cls is None:
            known = ", ".join(sorted(classes)) or "none"
            raise ConfigError(
                f"config error: pipeline.stages: unknown stage {name!r} (installed: {known});"
                " install the package that provides it or remove it from the list"
            )
        if not (isinstance(cls, type) and issubclass(cls, Stage | WrapperStage)):
            raise ConfigError(
                f"plugin error: stage {name!r} must subclass server.Stage or server.WrapperStage"
            )
        try:
            options = cls.Options.model_validate(settings.stage_options(name))
        except ValidationError as error:
            raise ConfigError(format_validation_error(f"stages.{name}", error)) from None
        stage = cls(options, services)
        stage.name = name
        stages.append(stage)
    return stages


def load_providers(
    settings: Settings, context: ProviderContext
) -> tuple[list[Provider], list[str]]:
    """The providers of ``llm.providers`` in order, and one-line problems found on the way.

    With ``llm.providers`` empty (the default), every installed provider with its
    configuration present is used, real ones first; with none, the demo.
    """
    classes = available(PROVIDER_GROUP)
    explicit = list(settings.llm.providers)
    for name in explicit:
        if name not in classes:
            known = ", ".join(sorted(classes))
            raise ConfigError(
                f"config error: llm.providers: unknown provider {name!r} (installed: {known})"
            )
    names = explicit or [n for n in ("openai", "gemini") if n in classes] + sorted(
        n for n in classes if n not in ("openai", "gemini", "demo")
    )
    providers: list[Provider] = []
    problems: list[str] = []
    for name in names:
        cls = classes[name]
        try:
            options = cls.Options.model_validate(settings.llm.provider_options(name))
        except ValidationError as error:
            raise ConfigError(format_validation_error(f"llm.{name}", error)) from None
        provider: Provider = cls(options, context)
        missing = provider.missing_configuration()
        if missing is None:
            providers.append(provider)
        elif explicit:
            raise ConfigError(f"config error: llm.providers includes {name!r}: {missing}")
        else:
            problems.append(missing)
    if not providers and "demo" in classes:
        options = classes["demo"].Options.model_validate(settings.llm.provider_options("demo"))
        providers.append(classes["demo"](options, context))
    return providers, problems
