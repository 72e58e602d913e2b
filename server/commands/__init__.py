"""The command line's subcommands, one module each; ``server.cli`` dispatches to them."""
