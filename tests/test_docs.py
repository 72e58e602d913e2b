"""Docs that cannot drift: every code block of the plugin guide is a file of
examples/plugin-guide, whose plugins run here in a real server and whose own tests pass."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import StartServer
from tests.support.packages import install_into
from tests.support.server import ROOT
from tests.support.sse import bearer, request

GUIDE = ROOT / "docs" / "plugins.md"
BLOCK = re.compile(r"(?:<!-- file: (?P<file>\S+) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)


def guide_blocks() -> list[tuple[str | None, str]]:
    text = GUIDE.read_text(encoding="utf-8")
    return [(m["file"], m["body"]) for m in BLOCK.finditer(text)]


def test_every_block_of_the_guide_is_a_file_of_the_examples() -> None:
    blocks = guide_blocks()
    assert len(blocks) >= 7
    for file, body in blocks:
        assert file is not None, f"a block with no <!-- file: --> marker:\n{body[:200]}"
        assert file.startswith("examples/")
        assert (ROOT / file).read_text(encoding="utf-8") == body, f"{file} differs from the guide"


@pytest.mark.parametrize("example", ["plugin-guide", "sluice-redact"])
def test_the_examples_own_tests_pass(example: str) -> None:
    folder = ROOT / "examples" / example
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder / "tests")],
        env={"PYTHONPATH": f"{folder}:{ROOT}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b[1-9]\d* passed", result.stdout)


@pytest.fixture(scope="module")
def installed_guide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_into(tmp_path_factory.mktemp("guide-site"), ROOT / "examples" / "plugin-guide")


def test_the_guide_package_enabled_as_the_guide_says(
    installed_guide: Path, start_server: StartServer
) -> None:
    server = start_server(
        {
            "SLUICE_CONFIG": str(ROOT / "examples" / "plugin-guide" / "enable.toml"),
            "PYTHONPATH": str(installed_guide),
        }
    )
    frames = request(
        server.url,
        "POST",
        "/api/conversation-stream/alice",
        body={"message": "what the heck is this"},
        headers=bearer("tok-alice"),
    ).read_all()
    events = [f.data for f in frames if f.data]
    started = [e["stage"] for e in events if e["type"] == "status" and e["state"] == "start"]
    assert started == [
        "rate_limit",
        "session",
        "intent",
        "remember_time",
        "context",
        "word_filter",
        "llm",
    ]
    complete = events[-1]
    assert complete["type"] == "complete" and complete["provider"] == "echo"
    text = "".join(e["content"] for e in events if e["type"] == "chunk")
    assert text == complete["message"] == "Echo: what the **** is this "
    context = next(e for e in events if e["type"] == "context")
    assert re.fullmatch(r"\d\d:\d\d", context["context"]["local_time"])


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize(
    "document",
    [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))],
    ids=lambda p: p.name,
)
def test_links_point_at_files_in_the_repository(document: Path) -> None:
    for target in LINK.findall(document.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        path = (document.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"{document.name} links outside the repo: {target}"
        assert path.exists(), f"{document.name} links to a missing file: {target}"
