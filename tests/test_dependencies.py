"""What a fresh clone installs is what CI tested, and every import is declared.

``requirements/lock.txt`` pins every package the server, the tests and the bench install
(``scripts/lock`` compiles it from ``pyproject.toml``); the README's commands, ``.ci/run`` and a
PaaS build from ``requirements.txt`` install through it. These tests fail when the two files
drift apart, when the environment the suite runs in is not the lock's, and when code imports a
package no declared dependency provides (or a declared one is never used).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines.extend(extra)
    return [Requirement(line) for line in lines]


def _locked() -> dict[str, str]:
    """The lock's pins that apply here (its environment markers evaluated for this Python)."""
    pins: dict[str, str] = {}
    for raw in LOCK.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"not a pin: {line}"
        pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    """A range changed in pyproject.toml without ``scripts/lock`` leaves the lock behind."""
    pins = _locked()
    environment = default_environment()
    for requirement in _declared():
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is declared but not locked: run scripts/lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{requirement.name}=={pins[name]} in the lock is outside {requirement} in "
            "pyproject.toml: run scripts/lock"
        )


def test_the_lock_holds_nothing_the_project_does_not_need() -> None:
    """A dependency removed from pyproject.toml must leave the lock too."""
    output = LOCK.read_text()
    reasons = [line for line in output.splitlines() if "sluice (pyproject.toml)" in line]
    assert reasons, "the lock names no direct dependency: was it compiled from pyproject.toml?"
    direct = set()
    current = ""
    for raw in output.splitlines():
        if raw and not raw.startswith((" ", "#")):
            current = canonicalize_name(Requirement(raw).name)
        elif "sluice (pyproject.toml)" in raw:
            direct.add(current)
    declared = {canonicalize_name(r.name) for r in _declared()}
    assert direct == declared, (
        f"lock and pyproject.toml disagree: only in the lock {sorted(direct - declared)}, "
        f"only declared {sorted(declared - direct)}; run scripts/lock"
    )


def test_the_suite_runs_on_exactly_the_locked_versions() -> None:
    """What CI tested is what a fresh clone installs: every installed distribution the lock
    names is at the locked version (``scripts/test`` installs with ``-c requirements/lock.txt``)."""
    pins = _locked()
    installed = {}
    for name in pins:
        # metadata.version finds what an import would (the first on sys.path), not the copies
        # that setuptools vendors for itself.
        try:
            installed[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    wrong = {
        name: (installed[name], version)
        for name, version in pins.items()
        if name in installed and installed[name] != version
    }
    assert not wrong, f"installed (version, locked version) differ: {wrong}"
    missing = sorted(set(pins) - set(installed))
    assert not missing, f"locked but not installed: {missing}"


@pytest.mark.parametrize("path", ["requirements.txt", "scripts/test", "README.md"])
def test_installs_go_through_the_lock(path: str) -> None:
    assert "requirements/lock.txt" in (ROOT / path).read_text()


def test_every_import_is_a_declared_dependency() -> None:
    """deptry: no import without a declared package (an SDK's own dependency may change under
    it), and no declared package that nothing uses."""
    result = subprocess.run(
        [sys.executable, "-m", "deptry", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={"NO_COLOR": "1", "PATH": str(Path(sys.executable).parent)},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_scripts_lock_reproduces_the_committed_lock(tmp_path: Path) -> None:
    """The documented refresh command, run against today's index, keeps every pin (uv prefers
    the versions already in its output file) and writes the file byte for byte: the lock is
    exactly what ``scripts/lock`` makes of pyproject.toml."""
    output = tmp_path / "lock.txt"
    output.write_text(LOCK.read_text())
    script = (ROOT / "scripts" / "lock").read_text()
    assert "uv pip compile pyproject.toml" in script
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "uv",
            "pip",
            "compile",
            "pyproject.toml",
            "--extra",
            "test",
            "--extra",
            "bench",
            "--python-version",
            "3.11",
            "--universal",
            "--quiet",
            "-o",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    header = "#    uv pip compile pyproject.toml"
    produced = [line for line in output.read_text().splitlines() if not line.startswith(header)]
    committed = [line for line in LOCK.read_text().splitlines() if not line.startswith(header)]
    assert produced == committed, "requirements/lock.txt is stale: run scripts/lock"


def test_a_paas_build_from_requirements_txt_installs_the_locked_versions(tmp_path: Path) -> None:
    """What a buildpack runs (``pip install -r requirements.txt``), resolved from scratch as on
    a new machine: sluice and every dependency, each at its locked version."""
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            "-r",
            "requirements.txt",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    chosen = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert "sluice" in chosen
    pins = _locked()
    unlocked = sorted(set(chosen) - set(pins) - {"sluice"})
    assert not unlocked, f"installed without a pin: {unlocked}"
    wrong = {
        name: (v, pins[name]) for name, v in chosen.items() if name in pins and v != pins[name]
    }
    assert not wrong, f"(installed, locked) differ: {wrong}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    assert (ROOT / ".python-version").read_text().strip() == "3.11"
