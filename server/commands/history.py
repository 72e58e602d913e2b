"""``python -m server migrate | export | import``: the history's own commands.

Each prints one line of counts to standard error (standard output may be the export), and
exits 1 with one line saying what went wrong: a database that cannot be reached, a file
that is not an export, sessions that exist already, or an import that did not arrive whole.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import TextIO

from server.config import Settings
from server.contract import SessionExists, StoreUnavailable
from server.stores.archive import (
    ArchiveError,
    export_history,
    export_usage,
    import_history,
    read_archive_with_usage,
)
from server.stores.history import session_store
from server.usage.ledgers import ledger_for

__all__ = ["run_history_command"]


def _say(line: str) -> None:
    print(f"sluice: {line}", file=sys.stderr)


async def _run(settings: Settings, args: argparse.Namespace, file: TextIO) -> int:
    store = session_store(settings)
    where = "PostgreSQL (DATABASE_URL)" if settings.store.database_url else "SQLite"
    try:
        await store.open()
        await store.ping()  # open() leaves an unreachable database for later: not here
        if args.command == "migrate":
            _say(f"the history schema in {where} is up to date")
        elif args.command == "export":
            counts = await export_history(store, file, args.user)
            entries = await export_usage(ledger_for(store), file, args.user)
            whose = f"user {args.user!r}" if args.user else "everyone"
            _say(f"exported {counts} ({whose}) from {where}")
            if entries:
                _say(f"exported {entries} usage entries")
        else:
            sessions, usage = read_archive_with_usage(file)
            _say(f"read {len(sessions)} sessions from {args.file}")
            counts = await import_history(store, sessions, replace=args.replace)
            _say(f"imported {counts} into {where}; every one checked")
            if usage:
                new = await ledger_for(store).import_entries(usage)
                _say(f"imported {new} usage entries ({len(usage) - new} were there already)")
        return 0
    except StoreUnavailable as error:
        _say(f"history unavailable: {error.reason}")
    except ArchiveError as error:
        _say(f"import failed: {error}")
    except SessionExists as error:
        first = ", ".join(f"{user}/{session}" for user, session in error.keys[:3])
        _say(
            f"import refused: {len(error.keys)} sessions exist already ({first}...);"
            " nothing was written. Pass --replace to overwrite them."
        )
    finally:
        await store.close()
    return 1


def run_history_command(settings: Settings, args: argparse.Namespace) -> int:
    path = {"export": getattr(args, "output", "-"), "import": getattr(args, "file", "-")}.get(
        args.command, "-"
    )
    try:
        with contextlib.ExitStack() as files:
            file: TextIO = sys.stdout if args.command == "export" else sys.stdin
            if path != "-":
                if args.command == "export":
                    file = files.enter_context(open(path, "w", encoding="utf-8"))
                else:
                    file = files.enter_context(open(path, encoding="utf-8"))
            return asyncio.run(_run(settings, args, file))
    except OSError as error:
        _say(f"{error.strerror or error}: {path}")
        return 1
