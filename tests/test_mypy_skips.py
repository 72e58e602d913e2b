"""mypy's skipped SDK subtrees (``follow_imports = "skip"`` in pyproject.toml) stay ones that
sluice never imports: to mypy, whatever a skipped module defines is Any, so code importing
from one would be checked against nothing, and no error would say so."""

from __future__ import annotations

import ast
import importlib.util
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _skipped() -> list[str]:
    """The packages the overrides skip, without their ``.*``."""
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    return [
        pattern.removesuffix(".*")
        for override in mypy["overrides"]
        if override.get("follow_imports") == "skip"
        for pattern in override["module"]
    ]


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every absolute module name ``path`` imports (for ``from m import n``, both ``m`` and
    ``m.n``: ``n`` may be a submodule), with its line."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module
            yield from ((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_skipped_subtrees_exist_in_the_installed_sdks() -> None:
    """A pattern naming nothing is a leftover of an SDK that moved its modules."""
    skipped = _skipped()
    assert "openai.types.responses" in skipped  # the list is read, not empty
    assert [name for name in skipped if importlib.util.find_spec(name) is None] == []


def test_no_module_mypy_checks_imports_a_skipped_subtree() -> None:
    skipped = _skipped()
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for folder in ("server", "plugins")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for line, module in _imports(path)
        if any(_within(module, package) for package in skipped)
    ]
    assert found == []
