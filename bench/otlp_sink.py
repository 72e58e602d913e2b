"""A collector stand-in for the traced systems: accepts OTLP/HTTP ``POST /v1/traces``, decodes
each export (as a collector would) and counts its spans; ``GET /spans`` answers the count.

Runs on the runner's cores, never the server's: only the exporting costs the server CPU.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_REPLY = ExportTraceServiceResponse().SerializeToString()


class _Counts:
    def __init__(self) -> None:
        self.spans = 0
        self.exports = 0
        self.lock = threading.Lock()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    counts = _Counts()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a collector allows

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            spans = sum(
                len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans
            )
            with counts.lock:
                counts.spans += spans
                counts.exports += 1
            self._reply(_REPLY, "application/x-protobuf")

        def do_GET(self) -> None:
            with counts.lock:
                data = {"spans": counts.spans, "exports": counts.exports}
            self._reply(json.dumps(data).encode(), "application/json")

        def _reply(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
