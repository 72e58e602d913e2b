"""``python -m server`` / ``sluice``: the command line.

With no subcommand it serves (``serve``). Every subcommand reads the same configuration;
a bad value stops it with one line on stderr and exit status 2. ``migrate``, ``export`` and
``import`` work on the history that configuration points at (``DATABASE_URL``, else the
SQLite file in the data directory).
"""

from __future__ import annotations

import argparse
import sys

from server.config import ConfigError, Settings, load_settings

__all__ = ["main"]


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from server.commands.serve import run

    if args.host:
        settings.server.host = args.host
    if args.port is not None:
        settings.server.port = args.port
    return run(settings)


def _plugins(settings: Settings, args: argparse.Namespace) -> int:
    from server.commands.plugins import plugins_listing

    print(plugins_listing(settings))
    return 0


def _check(settings: Settings | None, args: argparse.Namespace) -> int:
    from server.commands.check import check_command

    return check_command(args.url, events=args.events, interval_ms=args.interval_ms)


def _history(settings: Settings, args: argparse.Namespace) -> int:
    from server.commands.history import run_history_command
    from server.observability.logging import configure_logging

    # The command's own lines say what happened; the server's info lines would be noise.
    quiet = "warning" if settings.log.level == "info" else settings.log.level
    configure_logging(settings.log.model_copy(update={"level": quiet}))
    return run_history_command(settings, args)


def _usage(settings: Settings, args: argparse.Namespace) -> int:
    from server.commands.usage import run_usage_command
    from server.observability.logging import configure_logging

    quiet = "warning" if settings.log.level == "info" else settings.log.level
    configure_logging(settings.log.model_copy(update={"level": quiet}))
    return run_usage_command(settings, args)


def _moment(text: str) -> float:
    from server.commands.usage import moment

    return moment(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sluice",
        description="A chat server that streams LLM answers as Server-Sent Events.",
    )
    parser.set_defaults(run=_serve, host=None, port=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the server (what no command does)")
    for target in (parser, serve):
        target.add_argument("--host", help="interface to bind (default: server.host)")
        target.add_argument("--port", type=int, help="port to bind (default: $PORT or server.port)")
    serve.set_defaults(run=_serve)
    plugins = commands.add_parser(
        "plugins", help="list installed stages and providers, what is enabled, their options"
    )
    plugins.set_defaults(run=_plugins)
    check = commands.add_parser(
        "check",
        help="is a deployment streaming? events at once, not buffered or compressed, heartbeats",
    )
    check.add_argument("url", help="the server's address, e.g. https://chat.example.com")
    check.add_argument("--events", type=int, default=10, help="timed events (default 10)")
    check.add_argument(
        "--interval-ms", type=int, default=500, help="between two events (default 500)"
    )
    # It talks to a server elsewhere: this machine's configuration plays no part.
    check.set_defaults(run=_check, local_settings=False)
    migrate = commands.add_parser(
        "migrate", help="create or upgrade the history schema, then exit (start-up does too)"
    )
    migrate.set_defaults(run=_history, command="migrate")
    export = commands.add_parser("export", help="write history as JSON Lines")
    export.add_argument("--user", help="only this user's sessions (default: everyone's)")
    export.add_argument(
        "-o", "--output", default="-", help="file to write (default: standard output)"
    )
    export.set_defaults(run=_history, command="export")
    load = commands.add_parser("import", help="read history written by export")
    load.add_argument("file", help="the export file, or - for standard input")
    load.add_argument(
        "--replace",
        action="store_true",
        help="overwrite sessions that exist already (default: refuse, change nothing)",
    )
    load.set_defaults(run=_history, command="import")
    usage = commands.add_parser(
        "usage", help="what every user spent in a period (the usage ledger), as a table or CSV"
    )
    usage.add_argument(
        "--since", type=_moment, help="epoch seconds or a UTC date (default: the budget period)"
    )
    usage.add_argument("--until", type=_moment, help="epoch seconds or a UTC date, exclusive")
    usage.add_argument("--user", help="only this user (default: everyone)")
    usage.add_argument("--format", choices=("table", "csv"), default="table")
    usage.set_defaults(run=_usage)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings() if getattr(args, "local_settings", True) else None
        code = args.run(settings, args)
    except ConfigError as error:
        print(f"sluice: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code)


if __name__ == "__main__":
    main()
