"""The built-in tool, written as an ordinary plugin through the public API: the current date
and time, which the demo provider calls when asked the time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field

from server import ToolError, tool


@tool
async def current_time(
    timezone: Annotated[
        str, Field(description="An IANA time zone such as 'Europe/Paris'; UTC when omitted.")
    ] = "UTC",
) -> str:
    """The current date and time (ISO 8601) in a time zone."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(
            f"unknown time zone {timezone!r}; use an IANA name such as 'Asia/Tokyo'"
        ) from None
    return datetime.now(zone).isoformat(timespec="seconds")
