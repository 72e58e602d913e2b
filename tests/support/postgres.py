"""A real PostgreSQL server for the tests: ``initdb`` into a temporary directory, then
``postgres`` on a free loopback port (through ``pg_ctl``, which waits until it accepts
connections), with SSL on so that ``sslmode=require`` URLs are tested as platforms give them.

Debian's ``postgresql`` package puts the programs in ``/usr/lib/postgresql/<version>/bin``,
off the PATH; ``SLUICE_TEST_PG_BINDIR`` names another directory. PostgreSQL refuses to run
as root, so under root (CI) the server runs as the ``postgres`` user the package creates
(or ``nobody``), which owns the temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.server import free_port

__all__ = ["PostgresServer", "find_bindir", "running_postgres"]

SUPERUSER = "sluice"


def find_bindir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``: the newest Debian
    version, else whatever is on the PATH. A missing PostgreSQL fails the test (CI installs
    it through scripts/test): it is not a reason to skip."""
    explicit = os.environ.get("SLUICE_TEST_PG_BINDIR")
    candidates: list[Path] = [Path(explicit)] if explicit else []

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for directory in candidates:
        if all((directory / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    raise AssertionError(
        "PostgreSQL is not installed: ./scripts/test installs Debian's postgresql package"
        " (or set SLUICE_TEST_PG_BINDIR to the directory holding initdb and pg_ctl)"
    )


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise AssertionError("running as root, and there is no unprivileged user to run PostgreSQL")


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    port: int = 0
    # False: throwaway data, no waiting for the disk (tests). True: PostgreSQL's defaults,
    # every commit flushed (the bench, to measure what a real deployment pays).
    durable: bool = False
    user: pwd.struct_passwd | None = None
    _databases: int = field(default=0)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres", **query: str) -> str:
        tail = "&".join(f"{key}={value}" for key, value in query.items())
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}" + (
            f"?{tail}" if tail else ""
        )

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        extra: dict[str, Any] = {}
        if self.user is not None:
            extra = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        return subprocess.run(
            argv,
            check=check,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.root,
            env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
            **extra,
        )

    def init(self) -> None:
        self.user = _run_as()
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        self._make_certificate()
        (self.root / "sock").mkdir()
        if self.user is not None:
            os.chown(self.root / "sock", self.user.pw_uid, self.user.pw_gid)

    def _make_certificate(self) -> None:
        """A self-signed certificate, so that the server speaks TLS like a platform's."""
        self._run(
            "openssl",
            "req",
            "-new",
            "-x509",
            "-days",
            "2",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-newkey",
            "rsa:2048",
            "-keyout",
            str(self.data_dir / "server.key"),
            "-out",
            str(self.data_dir / "server.crt"),
        )
        (self.data_dir / "server.key").chmod(0o600)

    def start(self) -> None:
        """Start (or restart) the server on its port; returns once it accepts connections."""
        if not self.port:
            self.port = free_port()
        options = " ".join(
            [
                f"-p {self.port}",
                "-h 127.0.0.1",
                f"-k {self.root / 'sock'}",
                "-c ssl=on",
                "-c max_connections=200",
            ]
            + (
                []
                if self.durable
                else ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
            )
        )
        result = self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.root / "postgres.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
            check=False,
        )
        assert result.returncode == 0, f"postgres did not start:\n{result.stdout}{self.log()}"

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are cut, as in an outage)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        status = self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "status", check=False
        )
        return status.returncode == 0

    def log(self) -> str:
        path = self.root / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` through psql; its output, unaligned and without headers."""
        result = self._run(
            str(self.bindir / "psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            self.url(database),
            "-c",
            sql,
        )
        return result.stdout.strip()

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        self._databases += 1
        name = f"t{os.getpid()}_{self._databases}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        if self.running():
            with contextlib.suppress(subprocess.SubprocessError):
                self._run(
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                )
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_postgres(*, durable: bool = False) -> Iterator[PostgresServer]:
    """A started PostgreSQL in a new temporary directory, removed afterwards."""
    # Not under pytest's tmp_path: that sits in a directory only root may enter.
    root = Path(tempfile.mkdtemp(prefix="sluice-pg-"))
    server = PostgresServer(find_bindir(), root, durable=durable)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()
