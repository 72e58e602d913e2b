"""What an answer cost, from ``[pricing."<model>"]`` (USD per million tokens).

cost = (input - cached) x input price + cached x cached price + output x output price, where
``input`` counts every prompt token, cached ones included, and ``output`` the reasoning
tokens too (providers bill them as output). A model without a price costs None: unknown,
never 0.

A provider may answer with a longer name than the one configured (OpenAI's
``gpt-4o-mini-2024-07-18`` for ``gpt-4o-mini``): a model with no price of its own takes the
price of the longest priced name it starts with.
"""

from __future__ import annotations

from collections.abc import Mapping

from server.config import PriceSettings

__all__ = ["Prices"]


class Prices:
    def __init__(self, pricing: Mapping[str, PriceSettings]) -> None:
        self._prices = dict(pricing)
        # Longest first: the most specific prefix wins.
        self._prefixes = sorted(self._prices, key=len, reverse=True)
        self._found: dict[str, PriceSettings | None] = {}

    def price(self, model: str | None) -> PriceSettings | None:
        if model is None:
            return None
        try:
            return self._found[model]
        except KeyError:
            pass
        found = self._prices.get(model)
        if found is None:
            found = next(
                (self._prices[name] for name in self._prefixes if model.startswith(name)), None
            )
        if len(self._found) < 1000:  # model names come from upstream: keep the cache bounded
            self._found[model] = found
        return found

    def cost(
        self, model: str | None, input_tokens: int, output_tokens: int, cached: int
    ) -> float | None:
        price = self.price(model)
        if price is None:
            return None
        cached = min(cached, input_tokens)
        cached_price = price.cached_input_per_million
        if cached_price is None:
            cached_price = price.input_per_million
        return (
            (input_tokens - cached) * price.input_per_million
            + cached * cached_price
            + output_tokens * price.output_per_million
        ) / 1_000_000
