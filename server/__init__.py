"""sluice: a Tornado chat server that streams LLM answers as Server-Sent Events.

Plugin authors import from here (``from server import Stage, chunk``): this package
re-exports the plugin contract, :mod:`server.contract`, and the provider kit,
:mod:`server.provider_kit`. See ``docs/plugins.md`` and ``docs/providers.md``.
"""

from server.contract import *  # noqa: F403
from server.contract import __all__ as _contract
from server.provider_kit import *  # noqa: F403
from server.provider_kit import __all__ as _kit

__all__ = [*_contract, *_kit]
