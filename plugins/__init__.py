"""sluice's built-in stages and providers, written as ordinary plugins.

They are registered in ``pyproject.toml`` under the ``sluice.stages`` and
``sluice.providers`` entry point groups, and use only the public API in ``server``.
"""
