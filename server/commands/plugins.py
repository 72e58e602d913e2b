"""``python -m server plugins``: the installed stages and providers, what the configuration
enables, and their options — as ``llm plugins`` and ``datasette plugins`` list theirs."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict
from typing import Any

from server.config import Settings
from server.llm.transport import provider_context
from server.registry import describe_plugins

__all__ = ["plugins_listing"]


def plugins_listing(settings: Settings) -> str:
    """JSON: one object per installed plugin (and per configured provider instance)."""
    environ = dict(os.environ)
    infos, providers = describe_plugins(settings, lambda name: provider_context(environ, name=name))

    async def close() -> None:
        for provider in providers:
            await provider.aclose()

    asyncio.run(close())
    listing: list[dict[str, Any]] = [asdict(info) for info in infos]
    return json.dumps(listing, indent=2, ensure_ascii=False, default=str)
