"""An MCP server with one tool, written with the official ``mcp`` SDK: the README connects it
to sluice with three lines of config. Runs over stdio: ``python units_server.py``."""

from mcp.server.mcpserver import MCPServer

server = MCPServer("units")


@server.tool()
def celsius_to_fahrenheit(celsius: float) -> float:
    """A temperature in degrees Celsius, in degrees Fahrenheit."""
    return celsius * 9 / 5 + 32


if __name__ == "__main__":
    server.run("stdio")
