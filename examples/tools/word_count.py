from server import tool


@tool
async def word_count(text: str) -> int:
    """How many words a text has."""
    return len(text.split())
