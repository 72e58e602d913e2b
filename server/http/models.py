"""Which configured provider a client's ``model`` names: the one rule for every API that
lets the caller choose (OpenAI's ``model``, the page's model picker)."""

from __future__ import annotations

from collections.abc import Sequence

from server.contract import Provider
from server.http.base import ApiCode, ApiError

__all__ = ["CHAIN_MODEL", "provider_for"]

# The configured fallback chain, as a model name: ``GET /v1/models`` lists it first.
CHAIN_MODEL = "sluice"


def provider_for(providers: Sequence[Provider], model: str) -> str | None:
    """The configured provider that ``model`` names (by instance name, then by model), or
    None for the whole chain; 404 when nothing configured is called that."""
    if model == CHAIN_MODEL:
        return None
    for provider in providers:
        if provider.name == model:
            return provider.name
    for provider in providers:
        if provider.model == model:
            return provider.name
    raise ApiError(
        404,
        ApiCode.MODEL_NOT_FOUND,
        f"The model '{model}' does not exist here: GET /v1/models lists the ones that do.",
        extra={"param": "model"},
    )
