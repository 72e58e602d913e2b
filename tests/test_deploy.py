"""The Procfile, run the way a PaaS runs it: honcho sets PORT, the server binds it on all
interfaces, answers, and drains on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.server import ROOT, STARTUP_SECONDS, base_env, free_port, wait_until_answering
from tests.support.sse import json_request, request


def test_procfile_under_honcho(tmp_path: Path) -> None:
    procfile = (ROOT / "Procfile").read_text(encoding="utf-8")
    assert procfile.startswith("web: ") and "--host 0.0.0.0" in procfile
    port = free_port()
    env = base_env(tmp_path)
    env.pop("PORT")  # the platform (here honcho) provides it
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    honcho = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "honcho",
            "start",
            "-f",
            str(ROOT / "Procfile"),
            "-p",
            str(port),
            "web",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(url, honcho, timeout=STARTUP_SECONDS, what="the Procfile's process")
        page = request(url, "GET", "/")
        assert page.status == 200 and b"<html" in page.body().lower()
        status, data, _ = json_request(
            url,
            "POST",
            "/api/conversation/alice",
            body={"message": "hi"},
            headers={"Authorization": "Bearer tok-alice"},
        )
        assert status == 200 and data is not None and data["provider"] == "demo"
    finally:
        os.killpg(honcho.pid, signal.SIGTERM)
        try:
            output, _ = honcho.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            # Bounded: kill what did not drain, and fail with what it said.
            os.killpg(honcho.pid, signal.SIGKILL)
            output, _ = honcho.communicate()
            raise AssertionError(f"still running 40 s after SIGTERM:\n{output}") from None
    assert f'"url": "http://0.0.0.0:{port}"' in output  # bound on all interfaces
    assert '"event": "stopped"' in output  # drained and exited on SIGTERM
