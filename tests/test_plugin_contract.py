"""The plugin contract: one door, the same for the built-ins as for everyone else.

The built-in stages and providers import nothing of sluice but the contract and the provider
kit, neither imports anything of the machinery, and start-up refuses a broken or misplaced
plugin in one line that names it.
"""

from __future__ import annotations

import ast
import json
import signal
from pathlib import Path

import pytest

import server
import server.contract
import server.provider_kit
from tests.conftest import StartServer
from tests.support.server import ROOT, base_env, run_command
from tests.support.sse import json_request

PUBLIC = {"server", "server.contract", "server.provider_kit"}


def sluice_imports(path: Path) -> set[str]:
    """The modules of this project (server…, plugins…) that ``path`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in ("server", "plugins"))
    return found


@pytest.mark.parametrize(
    "path", sorted((ROOT / "plugins").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_built_in_plugins_import_only_the_contract(path: Path) -> None:
    assert sluice_imports(path) <= PUBLIC


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "server" / "contract").glob("*.py")),
    ids=lambda p: p.name,
)
def test_the_contract_depends_on_no_machinery(path: Path) -> None:
    assert all(name.startswith("server.contract") for name in sluice_imports(path))


def test_the_provider_kit_depends_on_the_contract_alone() -> None:
    assert sluice_imports(ROOT / "server" / "provider_kit.py") == {"server.contract"}


def test_the_contract_holds_no_provider_machinery() -> None:
    assert not set(server.provider_kit.__all__) & set(server.contract.__all__)


def test_server_exports_the_contract_and_the_kit() -> None:
    assert set(server.__all__) == {*server.contract.__all__, *server.provider_kit.__all__}
    assert all(hasattr(server, name) for name in server.__all__)


def test_every_contract_name_is_documented() -> None:
    guide = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    missing = [name for name in server.contract.__all__ if f"`{name}" not in guide]
    assert missing == []


def test_every_provider_kit_name_is_documented() -> None:
    guide = (ROOT / "docs" / "providers.md").read_text(encoding="utf-8")
    missing = [name for name in server.provider_kit.__all__ if f"`{name}" not in guide]
    assert missing == []


def run_server(tmp_path: Path, config: str, extra_path: Path | None = None) -> str:
    """Start ``python -m server`` with ``config`` and return what it said on stderr when it
    refused to start (it must exit with status 2)."""
    (tmp_path / "config.toml").write_text(config, encoding="utf-8")
    env = base_env(tmp_path / "data")
    env["SLUICE_CONFIG"] = str(tmp_path / "config.toml")
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path)
    result = run_command([], env, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def make_plugin_package(
    root: Path,
    name: str,
    source: str,
    entry_points: dict[str, str],
    group: str = "sluice.stages",
) -> Path:
    """A package with entry points in ``group``, as an installed distribution would leave
    it on ``sys.path`` (a module and its ``.dist-info``)."""
    site = root / "site"
    site.mkdir(exist_ok=True)
    (site / f"{name}.py").write_text(source, encoding="utf-8")
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "\n".join(f"{key} = {value}" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{lines}\n", encoding="utf-8")
    return site


PIPELINE = 'stages = ["rate_limit", "usage", "session", "intent", "context", "llm"]'


def config_with(stages: list[str]) -> str:
    original = (ROOT / "config.toml").read_text(encoding="utf-8")
    assert original.count(PIPELINE) == 1
    return original.replace(PIPELINE, "stages = " + json.dumps(stages))


def test_a_stage_after_the_one_that_ends_the_turn_is_refused(tmp_path: Path) -> None:
    line = run_server(tmp_path, config_with(["rate_limit", "session", "intent", "llm", "context"]))
    assert line == (
        "sluice: config error: pipeline.stages: 'context' comes after 'llm', which always"
        " ends the turn, so it would never run; move 'context' before 'llm'"
    )


def test_a_plain_coroutine_run_is_refused_at_start_up(tmp_path: Path) -> None:
    source = (
        "from server import Stage\n"
        "class Flat(Stage):\n"
        "    async def run(self, turn):\n"
        "        return None\n"
    )
    site = make_plugin_package(tmp_path, "flat_stage", source, {"flat": "flat_stage:Flat"})
    line = run_server(tmp_path, config_with(["flat", "llm"]), site)
    assert line.startswith("sluice: plugin error: stage 'flat' from flat_stage 1.0")
    assert "run(self, turn) must be an async generator" in line


def test_a_wrapper_without_rest_is_refused_at_start_up(tmp_path: Path) -> None:
    source = (
        "from server import WrapperStage\n"
        "class Around(WrapperStage):\n"
        "    async def wrap(self, turn):\n"
        "        yield None\n"
    )
    site = make_plugin_package(tmp_path, "around_stage", source, {"around": "around_stage:Around"})
    line = run_server(tmp_path, config_with(["around", "llm"]), site)
    assert "stage 'around' from around_stage 1.0" in line
    assert "wrap must take (self, turn, rest), not (self, turn)" in line


def test_a_provider_that_cannot_take_sampling_parameters_is_refused_at_start_up(
    tmp_path: Path,
) -> None:
    """Every provider is called with ``params``: one whose ``stream`` lacks it is named at
    start-up, not found out by the first client that sets a temperature."""
    source = (
        "from server import Completion, ProviderOptions\n"
        "class Old:\n"
        "    Options = ProviderOptions\n"
        "    def __init__(self, options, context):\n"
        "        self.model = 'old-1'\n"
        "    def missing_configuration(self):\n"
        "        return None\n"
        "    def stream(self, messages, *, max_output_tokens, timeout):\n"
        "        raise NotImplementedError\n"
        "    async def complete(self, messages, **options):\n"
        "        return Completion('old')\n"
        "    async def aclose(self):\n"
        "        pass\n"
    )
    site = make_plugin_package(
        tmp_path, "old_provider", source, {"old": "old_provider:Old"}, group="sluice.providers"
    )
    config = config_with(["rate_limit", "session", "llm"]).replace(
        "providers = []", 'providers = ["old"]', 1
    )
    line = run_server(tmp_path, config, site)
    assert line == (
        "sluice: plugin error: provider 'old' from old_provider 1.0 (old_provider:Old): stream"
        " must take (self, messages, *, max_output_tokens, timeout, params=None), as"
        " server.Provider says"
    )


def test_a_broken_package_that_is_not_enabled_cannot_stop_the_server(
    tmp_path: Path, start_server: StartServer
) -> None:
    site = make_plugin_package(
        tmp_path,
        "broken_stage",
        "raise ImportError('half installed')\n",
        {"broken": "broken_stage:X"},
    )
    # Enabled, it stops start-up with one line naming the package.
    line = run_server(tmp_path, config_with(["broken", "llm"]), site)
    assert line.startswith("sluice: plugin error: sluice.stages 'broken' from broken_stage 1.0")
    assert "ImportError: half installed" in line
    # Installed but not enabled, it is never imported and the server serves.
    server = start_server({"PYTHONPATH": str(site)})
    status, body, _ = json_request(server.url, "GET", "/readyz")
    assert status == 200 and body is not None and body["status"] == "ready"


def test_plugins_command_lists_stages_providers_and_instances(tmp_path: Path) -> None:
    config = config_with(["rate_limit", "session", "intent", "context", "llm"]) + (
        '\n[llm.local]\ntype = "openai"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "llama3.2"\n'
    )
    (tmp_path / "config.toml").write_text(config, encoding="utf-8")
    env = base_env(tmp_path / "data")
    env["SLUICE_CONFIG"] = str(tmp_path / "config.toml")
    env["SLUICE_LLM__PROVIDERS"] = "local,demo"
    result = run_command(["plugins"], env, timeout=60)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    by_key = {(item["group"], item["name"]): item for item in listing}
    llm = by_key[("stage", "llm")]
    assert llm["enabled"] is True and llm["package"].startswith("sluice ")
    assert by_key[("stage", "intent")]["options"]["threshold"] == 0.6
    assert by_key[("provider", "openai")]["enabled"] is True  # as the type of "local"
    assert by_key[("provider", "gemini")]["enabled"] is False
    local = by_key[("provider instance", "local")]
    assert local["value"] == "openai" and local["options"]["model"] == "llama3.2"
    assert [i["name"] for i in listing if i["group"] == "provider instance"] == ["local", "demo"]


def test_every_contract_name_has_a_docstring() -> None:
    import inspect

    undocumented = []
    for name in server.contract.__all__:
        value = getattr(server.contract, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            doc = inspect.getdoc(value) or ""
            # dataclasses make one from the signature ("Name(field, …)"): not a description.
            if not doc or doc.startswith(f"{name}("):
                undocumented.append(name)
    assert undocumented == []


def test_a_stage_whose_shutdown_never_returns_does_not_keep_the_server_running(
    tmp_path: Path, start_server: StartServer
) -> None:
    """SIGTERM drains and exits 0 even when a plugin's ``shutdown`` hangs: the step is
    given up after a bound and named in the log."""
    source = (
        "import asyncio\n"
        "from server import Stage\n"
        "class Stuck(Stage):\n"
        "    async def run(self, turn):\n"
        "        return\n"
        "        yield\n"
        "    async def shutdown(self):\n"
        "        await asyncio.Event().wait()\n"
    )
    site = make_plugin_package(tmp_path, "stuck_stage", source, {"stuck": "stuck_stage:Stuck"})
    server = start_server(
        {"PYTHONPATH": str(site), "SLUICE_PIPELINE__STAGES": "stuck,rate_limit,session,llm"}
    )
    status, _, _ = json_request(server.url, "GET", "/readyz")
    assert status == 200
    assert server.stop(signal.SIGTERM, timeout=30) == 0
    output = server.output()
    assert '"step": "stage stuck"' in output and '"event": "stopped"' in output
