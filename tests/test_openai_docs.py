"""The README's OpenAI-client examples cannot drift: each code block of its "Talk to it with
an OpenAI client" section is a file of examples/openai, and each file runs, as written but
for the server's address, against a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import StartServer
from tests.support.server import ROOT

README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- file: (?P<file>examples/openai/\S+) -->\n```\w*\n(?P<body>.*?)```", re.S)
LOCAL = "http://localhost:8000"


def test_every_block_is_a_file_of_the_examples() -> None:
    blocks = {m["file"]: m["body"] for m in BLOCK.finditer(README.read_text(encoding="utf-8"))}
    assert set(blocks) == {
        "examples/openai/quickstart.py",
        "examples/openai/session_stream.py",
        "examples/openai/resume.sh",
    }
    for file, body in blocks.items():
        assert (ROOT / file).read_text(encoding="utf-8") == body, f"{file} differs from README"
    quickstart = blocks["examples/openai/quickstart.py"].strip().splitlines()
    assert len(quickstart) == 5  # the README promises five lines


def as_run(file: str, url: str, tmp_path: Path) -> Path:
    """The example with the server's real address in place of localhost:8000."""
    source = (ROOT / file).read_text(encoding="utf-8")
    assert LOCAL in source
    copy = tmp_path / Path(file).name
    copy.write_text(source.replace(LOCAL, url), encoding="utf-8")
    return copy


def test_the_examples_run_as_written(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server({"SLUICE_API_TOKENS": "secret123:alice"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}

    def run(argv: list[str], **extra: str) -> str:
        done = subprocess.run(
            argv, env={**env, **extra}, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    quick = run(
        [sys.executable, str(as_run("examples/openai/quickstart.py", server.url, tmp_path))]
    )
    assert "You said: Hi" in quick  # the demo responder echoes the message

    streamed = run(
        [sys.executable, str(as_run("examples/openai/session_stream.py", server.url, tmp_path))]
    )
    first, _, text = streamed.partition("\n")
    stream_id = first.removeprefix("stream id: ")
    assert stream_id.startswith("st_") and "Tokyo" in text

    resumed = run(
        ["sh", str(as_run("examples/openai/resume.sh", server.url, tmp_path))], STREAM_ID=stream_id
    )
    assert "event: complete" in resumed and '"session_id":"tokyo-trip"' in resumed
