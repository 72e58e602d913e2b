"""The Vercel AI SDK from npm, at pinned versions, and a way to run it from Node.

``ai`` 6 is the newest major release that runs on the Node these tests use (7 wants Node 22);
``@ai-sdk/react`` 3.0.328 is built on ``ai`` 6.0.325, so both are pinned there, with the
React, zod and esbuild they need, installed together once into the user's cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tests.support.node import run_node_script
from tests.support.packages import cached_npm_packages
from tests.support.server import ROOT

__all__ = ["AI_SDK_PACKAGES", "ai_sdk_modules", "run_node"]

AI_SDK_PACKAGES = {
    "ai": "6.0.325",
    "@ai-sdk/react": "3.0.328",
    "react": "19.2.1",
    "react-dom": "19.2.1",
    "zod": "4.1.8",
    "esbuild": "0.28.2",
}
SCRIPT = ROOT / "tests" / "clients" / "ai_sdk_node.mjs"


def ai_sdk_modules() -> Path:
    """The ``node_modules`` directory holding :data:`AI_SDK_PACKAGES`, cached under a name
    that changes with any of their versions (a new pin is a new install, never a mix)."""
    pins = hashlib.sha256(json.dumps(AI_SDK_PACKAGES, sort_keys=True).encode()).hexdigest()
    return cached_npm_packages(f"ai-sdk-{pins[:12]}", AI_SDK_PACKAGES)


def run_node(
    modules: Path, base_url: str, scenario: str, token: str = "tok-alice", **given: Any
) -> Any:
    """Run one scenario of ``tests/clients/ai_sdk_node.mjs``; what it printed, as JSON."""
    env = {"NODE_MODULES": str(modules), "BASE_URL": base_url, "TOKEN": token}
    return run_node_script(SCRIPT, scenario, env, given)
