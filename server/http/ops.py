"""``GET /metrics`` (Prometheus text format) and ``GET /openapi.json`` (the HTTP API).

Neither needs an identity: a deployment that must hide ``/metrics`` from the internet blocks
it at the proxy (see docs/operations.md); nothing in it names a user or a stream.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from server.http.base import ApiCode, ApiError, BaseHandler

__all__ = ["OPENAPI_FILE", "MetricsHandler", "OpenAPIHandler", "openapi_spec"]

OPENAPI_FILE = Path(__file__).resolve().parent.parent / "openapi.json"


@cache
def openapi_spec() -> dict[str, Any]:
    """The description of the HTTP API; ``tests/test_openapi.py`` keeps it true."""
    spec: dict[str, Any] = json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))
    return spec


class MetricsHandler(BaseHandler):
    def get(self) -> None:
        registry = getattr(self.state.telemetry, "registry", None)
        if registry is None:
            raise ApiError(404, ApiCode.NOT_FOUND, "Metrics are not enabled.")
        # generate_latest writes the classic text format (0.0.4), which every scraper reads.
        self.set_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
        self.finish(generate_latest(registry))


class OpenAPIHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Cache-Control", "no-cache")
        self.write_json(openapi_spec())
