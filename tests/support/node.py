"""Running one scenario of a Node client script (``tests/clients/``) against the server:
what the script printed on stdout, read as JSON. A script that fails fails the test with
its stderr."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["run_node_script"]


def run_node_script(
    script: Path, scenario: str, env: Mapping[str, str], given: Any | None = None
) -> Any:
    """Run ``node script scenario`` with ``env`` added to this process's environment, and
    ``given`` (when not None) as JSON on its stdin."""
    done = subprocess.run(
        ["node", str(script), scenario],
        input=None if given is None else json.dumps(given),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
