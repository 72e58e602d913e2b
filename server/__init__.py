"""sluice: a Tornado chat server that streams LLM answers as Server-Sent Events.

Plugin authors import from here (``from server import Stage, chunk``): this package
re-exports the plugin contract, :mod:`server.contract`. See ``docs/plugins.md``.
"""

from server.contract import *  # noqa: F403
from server.contract import __all__ as __all__
