"""Answers from language models: the fallback chain, provider circuits, and the upstream HTTP
transport lent to providers."""
