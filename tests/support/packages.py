"""Installing packages the way their users would, without touching the environment the tests
run in: a plugin into a folder that the server under test gets on its ``PYTHONPATH``, an npm
package into a cache folder shared by every run (and every pytest-xdist worker)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

__all__ = ["cached_npm_package", "cached_npm_packages", "install_into"]


def install_into(target: Path, package: Path) -> Path:
    """``pip install`` the package at ``package`` into ``target``; returns ``target``.

    From a copy: pip builds in the source folder (``build/``, ``*.egg-info``), and two
    pytest-xdist workers building the same example at once would write over each other.
    """
    source = target.with_name(f"{target.name}-source")
    shutil.copytree(package, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
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
            str(source),
        ],
        check=True,
    )
    return target


def cached_npm_package(name: str, version: str) -> Path:
    """The directory of npm package ``name`` at ``version``, installed from the registry the
    first time into the user's cache; later calls and runs reuse it."""
    return cached_npm_packages(f"{name}-{version}", {name: version}) / name


def cached_npm_packages(label: str, packages: Mapping[str, str]) -> Path:
    """A ``node_modules`` directory holding ``packages`` (name: exact version), installed
    together from the registry the first time into the user's cache under ``label``; later
    calls and runs reuse it.

    Two workers may both find it missing: each installs into a folder of its own and renames
    it into place, which is atomic, so the first rename wins, the other's copy is dropped, and
    nobody ever sees a half-written install.
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sluice-tests"
    prefix = cache / f"npm-{label}"
    modules = prefix / "node_modules"

    def installed() -> bool:
        return all((modules / name / "package.json").exists() for name in packages)

    if not installed():
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed (scripts/test installs it)"
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".npm-{label}-", dir=cache))
        specs = [f"{name}@{version}" for name, version in packages.items()]
        try:
            subprocess.run(
                [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(staging),
                 *specs],
                check=True,
                capture_output=True,
                timeout=300,
            )  # fmt: skip
            if prefix.exists() and not installed():
                shutil.rmtree(prefix)  # left half-written by an interrupted install
            try:
                staging.rename(prefix)
            except OSError:
                assert installed(), f"could not install {', '.join(specs)}"
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    for name, version in packages.items():
        found = json.loads((modules / name / "package.json").read_text(encoding="utf-8"))
        assert found["version"] == version, (name, found["version"], version)
    return modules
