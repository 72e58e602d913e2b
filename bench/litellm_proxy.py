"""LiteLLM's proxy as a baseline: the OpenAI-compatible proxy people put in front of several
providers. It relays the same fake upstream as every other system.

It runs from a virtual environment of its own, made on first use: ``litellm[proxy]`` pins its
own versions of FastAPI, uvicorn, the ``openai`` SDK and more, which would move the versions
sluice and the other baselines are measured on if it shared theirs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = [
    "LITELLM_MASTER_KEY",
    "LITELLM_VERSION",
    "ensure_litellm",
    "litellm_bin",
    "litellm_config",
    "venv_dir",
]

# The newest release whose "proxy" extra installs from PyPI here (later ones need a
# litellm-proxy package that is not published).
LITELLM_VERSION = "1.108.7"
# The proxy refuses to start without a strong master key; clients send it as their bearer.
LITELLM_MASTER_KEY = "sk-bench-0123456789abcdef0123456789abcdef"


def venv_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "sluice-bench" / f"litellm-{LITELLM_VERSION}"


def litellm_bin() -> Path:
    return venv_dir() / "bin" / "litellm"


def ensure_litellm() -> str | None:
    """Make the venv with ``litellm[proxy]`` if it is not there; None when ready, else why."""
    if litellm_bin().exists():
        return None
    venv = venv_dir()
    print(f"installing litellm[proxy]=={LITELLM_VERSION} into {venv} …", file=sys.stderr)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as error:
        return f"could not install litellm[proxy]: {error}"
    return None


def litellm_config(upstream_url: str) -> str:
    """One model, ``bench``, relayed to the fake upstream; LiteLLM's extras kept quiet."""
    return f"""\
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench-model
      api_base: {upstream_url}
      api_key: bench
litellm_settings:
  telemetry: false
  set_verbose: false
  num_retries: 0
  request_timeout: 600
general_settings:
  master_key: {LITELLM_MASTER_KEY}
"""
