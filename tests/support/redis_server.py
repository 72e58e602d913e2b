"""A real ``redis-server`` (Debian's) on a free loopback port, in a temporary directory.

No persistence: a restart comes back empty, as a Redis without persistence does after a
crash, which is the harder case for the server to recover from. Readiness is a PING that
answers, never a sleep.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from tests.support.server import STARTUP_SECONDS, free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """``tls_password``: speak only TLS (a self-signed certificate made with ``openssl``) and
    require that password, as Heroku Redis and Upstash do."""

    def __init__(
        self, directory: Path, port: int | None = None, *, tls_password: str | None = None
    ) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.tls_password = tls_password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.tls_password is None:
            return f"redis://127.0.0.1:{self.port}/0"
        # The certificate is self-signed: the URL says not to verify it, as Heroku's docs do.
        return f"rediss://:{self.tls_password}@127.0.0.1:{self.port}/0?ssl_cert_reqs=none"

    def client(self) -> redis.Redis:
        if self.tls_password is None:
            return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=5,
            password=self.tls_password,
            ssl=True,
            ssl_cert_reqs="none",
        )

    def _listen_arguments(self) -> list[str]:
        if self.tls_password is None:
            return ["--port", str(self.port)]
        cert, key = self.directory / "redis.crt", self.directory / "redis.key"
        if not cert.exists():
            subprocess.run(
                ["openssl", "req", "-new", "-x509", "-days", "2", "-nodes", "-subj",
                 "/CN=127.0.0.1", "-newkey", "rsa:2048", "-keyout", str(key), "-out", str(cert)],
                check=True,
                capture_output=True,
            )  # fmt: skip
        return [
            "--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
            "--tls-key-file", str(key), "--tls-auth-clients", "no",
            "--requirepass", self.tls_password,
        ]  # fmt: skip

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                *self._listen_arguments(),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                if self.client().ping():
                    return self
            except redis.exceptions.ConnectionError:
                pass
            assert self.process.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not answer in time"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None
