"""Installing a plugin package the way its users would, without touching the environment the
tests run in: into a folder that the server under test gets on its ``PYTHONPATH``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["install_into"]


def install_into(target: Path, package: Path) -> Path:
    """``pip install`` the package at ``package`` into ``target``; returns ``target``."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(package),
        ],
        check=True,
    )
    return target
