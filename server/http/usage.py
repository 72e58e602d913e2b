"""``GET /api/usage/{user_id}`` and ``GET /api/usage``: what users spent, and may still.

A user reads their own; an operator (a bearer token of ``SLUICE_ADMIN_TOKENS``) reads
anyone's, and the list of every user's totals. ``since`` and ``until`` are epoch seconds;
without them the window is the current budget period.
"""

from __future__ import annotations

import math

from server.http.base import ApiCode, ApiError, BaseHandler
from server.http.identity import valid_user_id

__all__ = ["UsageHandler", "UsageListHandler"]


class _UsageBase(BaseHandler):
    def operator(self) -> str | None:
        """The operator's name when the caller sent an operator's token, else None."""
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.state.tokens.operator(token.strip())

    def window(self) -> tuple[float, float]:
        since, until = self.state.usage.default_window()
        return self._bound("since", since), self._bound("until", until)

    def _bound(self, name: str, default: float) -> float:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise ApiError(400, ApiCode.BAD_REQUEST, f"{name} must be epoch seconds (>= 0).")
        return value


class UsageHandler(_UsageBase):
    async def get(self, user_id: str) -> None:
        if self.operator() is not None:
            if not valid_user_id(user_id):
                raise ApiError(404, ApiCode.NOT_FOUND, "No such user.")
            claims = None  # the group this instance last saw the user with
        else:
            claims = self.require_user(user_id).claims
        since, until = self.window()
        self.write_json(await self.state.usage.report(user_id, since, until, claims))


class UsageListHandler(_UsageBase):
    async def get(self) -> None:
        if self.operator() is None:
            if self.identity() is None:
                raise ApiError(401, ApiCode.UNAUTHORIZED, "Send an operator's bearer token.")
            raise ApiError(403, ApiCode.FORBIDDEN, "Only operators may list every user's usage.")
        since, until = self.window()
        self.write_json(await self.state.usage.everyone(since, until))
