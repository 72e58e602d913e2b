"""Real nginx in front of a sluice server, from the shipped deploy/nginx.conf.

The file is used as it is, with only ports and file paths rewritten for a test sandbox (and
the ``changes`` a test asks for, to play a misconfigured proxy), so a change to a directive
that matters (buffering, HTTP/1.1, timeouts) shows in the tests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.support.server import (
    ROOT,
    STARTUP_SECONDS,
    RunningServer,
    free_port,
    wait_until_answering,
)

__all__ = ["BUFFERING", "BUFFERING_HTTP11", "COMPRESSING", "nginx_in_front", "sandboxed_config"]

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def sandboxed_config(upstream_port: int, listen_port: int, workdir: Path) -> str:
    text = (ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")
    replacements = [
        (r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{upstream_port};"),
        (r"listen 8080;", f"listen 127.0.0.1:{listen_port};"),
        (r"pid [^;]+;", f"pid {workdir}/nginx.pid;"),
        (r"error_log [^;]+;", f"error_log {workdir}/error.log warn;"),
        (r"access_log [^;]+;", f"access_log {workdir}/access.log;"),
        (r"(\w+_temp_path) /var/lib/nginx/(\w+);", rf"\1 {workdir}/\2;"),
    ]
    for pattern, replacement in replacements:
        text, count = re.subn(pattern, replacement, text)
        assert count, f"deploy/nginx.conf no longer has {pattern!r}"
    return text


# A buffering proxy: nginx told to buffer and to ignore the X-Accel-Buffering header with
# which sluice asks every proxy not to, speaking nginx's default HTTP/1.0 to the upstream.
# (Over HTTP/1.1 nginx reads the upstream's chunks and passes each whole one on even with
# buffering on; over HTTP/1.0 there are no chunks, and it holds the body until its buffers
# fill or the response ends.)
BUFFERING = [
    (
        "proxy_buffering off;",
        "proxy_buffering on;\n            proxy_ignore_headers X-Accel-Buffering;",
    ),
    ("proxy_http_version 1.1;", "proxy_http_version 1.0;"),
]
# Buffering on, but HTTP/1.1 as the shipped file has it.
BUFFERING_HTTP11 = BUFFERING[:1]
# What a compressing proxy does: gzip on event streams too.
COMPRESSING = [("gzip_types application/json", "gzip_types text/event-stream application/json")]


@contextmanager
def nginx_in_front(
    start_server: Callable[..., RunningServer],
    tmp_path: Path,
    changes: Sequence[tuple[str, str]] = (),
) -> Iterator[tuple[RunningServer, str]]:
    """A sluice server (slow demo answers, quick heartbeats) with real nginx in front, run
    from deploy/nginx.conf with ``changes`` made to it; yields the server and nginx's URL."""
    server = start_server(
        {
            "SLUICE_LLM__DEMO__WORDS_PER_SECOND": "4",
            "SLUICE_STREAM__HEARTBEAT_SECONDS": "0.1",
            "SLUICE_SERVER__TRUST_PROXY": "true",
        }
    )
    port = free_port()
    config = tmp_path / "nginx.conf"
    text = sandboxed_config(server.port, port, tmp_path)
    for old, new in changes:
        assert old in text, f"deploy/nginx.conf no longer has {old!r}"
        text = text.replace(old, new)
    config.write_text(text, encoding="utf-8")
    check = subprocess.run(
        [NGINX, "-t", "-c", str(config), "-p", str(tmp_path)], capture_output=True
    )
    assert check.returncode == 0, check.stderr.decode()
    nginx = subprocess.Popen(
        [NGINX, "-c", str(config), "-p", str(tmp_path), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    # Answers through to sluice.
    wait_until_answering(url, nginx, timeout=STARTUP_SECONDS, what="nginx")
    try:
        yield server, url
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        assert nginx.stderr is not None
        nginx.stderr.close()
