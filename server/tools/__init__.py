"""The machinery of tools: running a call (:mod:`.runner`), the set of tools a turn may use
(:class:`server.ToolSet`, in the contract), and MCP servers as a source of tools (:mod:`.mcp`).

What a tool author uses — :class:`server.Tool`, :func:`server.tool`, :class:`server.ToolContext`,
:class:`server.ToolError` — is in the plugin contract, :mod:`server.contract.tools`.
"""
