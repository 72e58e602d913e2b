"""Simon Willison's ``llm`` command-line tool talking to sluice as an OpenAI-compatible model
(an ``extra-openai-models.yaml`` entry, as its documentation describes for such servers),
against the real server and the fake upstream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.llm_upstreams import Reply
from tests.fakes.threaded import ThreadedFakes, threaded_fakes
from tests.support.server import RunningServer, launch

LLM = Path(sys.executable).parent / "llm"


@pytest.fixture
def fakes() -> Iterator[ThreadedFakes]:
    with threaded_fakes() as running:
        yield running


@pytest.fixture
def server(
    fakes: ThreadedFakes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    env = {
        "SLUICE_LLM__PROVIDERS": "openai",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": fakes.openai.base_url,
    }
    running = launch(tmp_path_factory.mktemp("data"), env)
    yield running
    running.stop()


@pytest.fixture
def llm_home(server: RunningServer, tmp_path: Path) -> Path:
    """An LLM_USER_PATH where model ``sluice`` is this server, with its key."""
    (tmp_path / "extra-openai-models.yaml").write_text(
        "- model_id: sluice\n"
        "  model_name: sluice\n"
        f"  api_base: {server.url}/v1\n"
        "  api_key_name: sluice\n"
    )
    (tmp_path / "keys.json").write_text(json.dumps({"sluice": "tok-alice"}))
    return tmp_path


def llm(home: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_"))}
    env["LLM_USER_PATH"] = str(home)
    done = subprocess.run([str(LLM), *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_llm_streams_and_continues_a_conversation(llm_home: Path, fakes: ThreadedFakes) -> None:
    fakes.openai.script(Reply(text=["Try ", "Ginza."]), Reply(text=["Sushi ", "too."]))
    first = llm(
        llm_home,
        "-m",
        "sluice",
        "-s",
        "Be brief.",
        "-o",
        "temperature",
        "0.2",
        "Find me a restaurant in Tokyo",
    )
    assert first.strip() == "Try Ginza."
    sent = fakes.openai.requests[-1].body
    assert sent["temperature"] == 0.2
    assert [m["content"] for m in sent["messages"][1:]] == [
        "Be brief.",
        "Find me a restaurant in Tokyo",
    ]
    # -c: llm sends the earlier exchange with the new message; it reaches the model as history.
    second = llm(llm_home, "-c", "--no-stream", "What about sushi?")
    assert second.strip() == "Sushi too."
    sent = fakes.openai.requests[-1].body
    assert [m["role"] for m in sent["messages"]][-3:] == ["user", "assistant", "user"]
    assert [m["content"] for m in sent["messages"]][-3:] == [
        "Find me a restaurant in Tokyo",
        "Try Ginza.",
        "What about sushi?",
    ]


def test_llm_reports_an_unknown_model(llm_home: Path, server: RunningServer) -> None:
    (llm_home / "extra-openai-models.yaml").write_text(
        "- model_id: nowhere\n"
        "  model_name: gpt-17\n"
        f"  api_base: {server.url}/v1\n"
        "  api_key_name: sluice\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_"))}
    env["LLM_USER_PATH"] = str(llm_home)
    done = subprocess.run(
        [str(LLM), "-m", "nowhere", "hello"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "gpt-17" in done.stderr and "does not exist" in done.stderr
