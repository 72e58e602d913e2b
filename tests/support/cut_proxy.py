"""A TCP proxy on loopback whose connections a test can cut, to drop a stream for real."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to ``target_port``; ``cut()`` resets every open connection,
    ``freeze()`` stops passing bytes on every open one while keeping it open (a stalled
    link: nothing fails, nothing arrives); connections made after either work normally.

    ``requests`` keeps the first packet of each request seen, so a test can check what a client sent
    when it reconnected (a ``Last-Event-ID`` header, say).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.requests: list[bytes] = []
        self._open: list[socket.socket] = []
        self._flows: list[threading.Event] = []  # one per connection: set while it flows
        self._frozen: list[threading.Event] = []
        self._last_request: dict[threading.Event, bytes] = {}  # per connection
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()  # the server is gone: the client sees its connection end
                continue
            flow = threading.Event()
            flow.set()
            with self._lock:
                if self._closed:
                    # Accepted while close() ran (a browser reconnecting as a test ends):
                    # not among the sockets close() cut, so closed here, or the pair is left
                    # to the garbage collector, whose ResourceWarning fails a later test.
                    client.close()
                    upstream.close()
                    return
                self._open += [client, upstream]
                self._flows.append(flow)
            for args in ((client, upstream, True, flow), (upstream, client, False, flow)):
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, record: bool, flow: threading.Event
    ) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            if record and data.split(b" ", 1)[0] in (b"GET", b"POST", b"DELETE", b"HEAD"):
                with self._lock:  # a request head (keep-alive connections carry several)
                    self.requests.append(data)
                    self._last_request[flow] = data
            # Held while frozen; close() releases it. Data read but not yet passed on is
            # passed only on thaw, which does not happen: a frozen link stays silent.
            flow.wait()
            if self._closed:
                break
            try:
                sink.sendall(data)
            except OSError:
                break
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def freeze(self, path: bytes = b"") -> None:
        """Freeze the open connections whose latest request's head contains ``path``."""
        with self._lock:
            flows = [f for f in self._flows if path in self._last_request.get(f, b"")]
            self._flows = [f for f in self._flows if f not in flows]
            self._frozen += flows
        for flow in flows:
            flow.clear()

    def close(self) -> None:
        with self._lock:  # after this, _accept keeps no connection
            self._closed = True
        self._listener.close()
        with self._lock:
            flows, self._flows = self._flows + self._frozen, []
        self.cut()
        for flow in flows:
            flow.set()

    def __enter__(self) -> CuttableProxy:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
