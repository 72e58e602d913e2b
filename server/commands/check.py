"""``python -m server check URL``: is a deployment streaming?

It reads ``GET {URL}/api/check-stream`` (``server/http/check.py``) through whatever sits
between this terminal and the server, notes when each timed event arrives, and says in plain
words whether events arrive at once, late in bursts (something buffers; the delay measured)
or compressed, and whether heartbeat comments pass. The page's menu runs the same check in
the browser (``web/js/check.js``, same thresholds). docs/deploy.md says what to change for
each verdict.

Only the standard library: an operator can run it from any checkout, and it reads the raw
bytes (``http.client`` neither decompresses nor buffers a chunked body when read with
``read1``), so compression and burst timing are seen as they are on the wire.
"""

from __future__ import annotations

import http.client
import itertools
import json
import time
import zlib
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

__all__ = ["Arrival", "Report", "analyse", "check_command", "run_check"]

# An event is "late" when it arrives this much later than the earliest one did, relative to
# when each was sent (the network's own latency cancels out). Bursts are arrivals closer
# together than a quarter of the sending interval.
LATE_MS = 400.0
DOCS = 'docs/deploy.md, "Connection check"'


@dataclass(frozen=True, slots=True)
class Arrival:
    seq: int
    sent_ms: float  # server time since the stream began
    arrived_ms: float  # client time since the request was sent


@dataclass(slots=True)
class Report:
    verdict: str  # streaming | buffered | compressed | cut | failed
    lines: list[str] = field(default_factory=list)
    max_delay_ms: float = 0.0
    bursts: int = 0
    pings_sent: int | None = None
    pings_received: int = 0

    @property
    def ok(self) -> bool:
        return self.verdict == "streaming"


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"


def analyse(
    arrivals: list[Arrival],
    *,
    expected: int,
    interval_ms: float,
    encoding: str | None,
    finished: bool,
    pings_sent: int | None,
    pings_received: int,
    first_byte_ms: float | None = None,
) -> Report:
    """The verdict, from what arrived when. Pure: the tests feed it made-up timings."""
    report = Report("streaming", pings_sent=pings_sent, pings_received=pings_received)
    if arrivals:
        lags = [a.arrived_ms - a.sent_ms for a in arrivals]
        base = min(lags)
        report.max_delay_ms = max(lag - base for lag in lags)
        report.bursts = 1 + sum(
            1
            for a, b in itertools.pairwise(arrivals)
            if b.arrived_ms - a.arrived_ms >= interval_ms / 4
        )
    late = report.max_delay_ms > max(LATE_MS, interval_ms)
    compressed = (encoding or "identity").lower() != "identity"
    got = f"{len(arrivals)} of {expected} events"
    if not finished:
        report.verdict = "cut"
        report.lines.append(
            f"The stream was cut off: {got} arrived before the connection ended. Something in"
            " front of the server ends long responses (an idle or total timeout)."
        )
    elif compressed:
        report.verdict = "compressed"
        report.lines.append(
            f"The stream arrives compressed (Content-Encoding: {encoding}): something in front"
            " of the server compresses text/event-stream, which holds events back until a"
            " compressed block fills."
        )
    elif late:
        report.verdict = "buffered"
        bursts = "one burst" if report.bursts == 1 else f"{report.bursts} bursts"
        report.lines.append(
            f"Events arrive late, in {bursts}: something in front of the server buffers the"
            f" stream. The latest event was {_seconds(report.max_delay_ms)} behind."
        )
    else:
        report.lines.append(
            f"Events arrive at once: {got} came as they were sent (none more than"
            f" {_seconds(report.max_delay_ms)} behind)."
        )
    if compressed and finished and late:
        report.lines.append(f"They were also late: the latest by {_seconds(report.max_delay_ms)}.")
    if pings_sent is None:
        if pings_received:
            report.lines.append(f"Heartbeats pass ({pings_received} arrived).")
    elif pings_sent == 0:
        pass
    elif pings_received >= pings_sent:
        report.lines.append(f"Heartbeats pass: {pings_received} of {pings_sent} arrived.")
    elif pings_received == 0:
        report.lines.append(
            f"Heartbeats do not pass: none of {pings_sent} ': ping' comments arrived, so a"
            " quiet stream may be cut by an idle timeout."
        )
    else:
        report.lines.append(f"Some heartbeats were lost: {pings_received} of {pings_sent}.")
    if first_byte_ms is not None and first_byte_ms > 2000:
        report.lines.append(f"The first byte took {_seconds(first_byte_ms)}.")
    if report.verdict != "streaming":
        report.lines.append(f"What to change: {DOCS}.")
    return report


class _Frames:
    """Just enough of the event-stream format: frames and comment lines."""

    def __init__(self) -> None:
        self._buffer = ""
        self._decoder = zlib.decompressobj(wbits=47)  # gzip or zlib, detected
        self.pings = 0

    def feed(self, raw: bytes, compressed: bool) -> list[dict[str, object]]:
        text = (self._decoder.decompress(raw) if compressed else raw).decode("utf-8", "replace")
        self._buffer += text.replace("\r\n", "\n")
        events: list[dict[str, object]] = []
        while "\n\n" in self._buffer:
            block, self._buffer = self._buffer.split("\n\n", 1)
            for line in block.split("\n"):
                if line.startswith(":") and line[1:].strip() == "ping":
                    self.pings += 1
                elif line.startswith("data:"):
                    data = json.loads(line[5:].strip())
                    if isinstance(data, dict):
                        events.append(data)
        return events


def run_check(url: str, *, events: int = 10, interval_ms: int = 500) -> Report:
    """Stream the check through ``url`` (the server's base URL) and analyse it."""
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Report("failed", [f"Not an http(s) URL: {url!r}."])
    path = parts.path.rstrip("/") + "/api/check-stream?"
    path += urlencode({"events": events, "interval_ms": interval_ms})
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    timeout = events * interval_ms / 1000 + 20
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    arrivals: list[Arrival] = []
    frames = _Frames()
    finished = False
    pings_sent: int | None = None
    encoding: str | None = None
    first_byte_ms: float | None = None
    try:
        started = time.monotonic()
        # Ask for gzip as a browser would: a proxy that compresses only does so when asked.
        connection.request(
            "GET",
            path,
            headers={"Accept": "text/event-stream", "Accept-Encoding": "gzip, deflate"},
        )
        response = connection.getresponse()
        first_byte_ms = (time.monotonic() - started) * 1000
        if response.status != 200:
            return Report(
                "failed",
                [
                    f"{url} answered {response.status} {response.reason} to"
                    " /api/check-stream: is it a sluice server (and this version or newer)?"
                ],
            )
        encoding = response.getheader("Content-Encoding")
        compressed = (encoding or "identity").lower() != "identity"
        while not finished:
            raw = response.read1(65536)
            if not raw:
                break
            now = (time.monotonic() - started) * 1000
            for data in frames.feed(raw, compressed):
                if data.get("type") == "tick":
                    arrivals.append(
                        Arrival(int(str(data["seq"])), float(str(data["elapsed_ms"])), now)
                    )
                elif data.get("type") == "done":
                    finished = True
                    pings_sent = int(str(data.get("pings", 0)))
    except (OSError, http.client.HTTPException, ValueError) as error:
        if not arrivals:
            return Report("failed", [f"Could not stream from {url}: {error}."])
    finally:
        connection.close()
    return analyse(
        arrivals,
        expected=events,
        interval_ms=interval_ms,
        encoding=encoding,
        finished=finished,
        pings_sent=pings_sent,
        pings_received=frames.pings,
        first_byte_ms=first_byte_ms,
    )


def check_command(url: str, *, events: int = 10, interval_ms: int = 500) -> int:
    """``python -m server check URL``: print the verdict; 0 when the deployment streams."""
    print(f"Checking {url}: {events} events, {interval_ms} ms apart…")
    report = run_check(url, events=events, interval_ms=interval_ms)
    print(f"Verdict: {report.verdict}")
    for line in report.lines:
        print(line)
    return 0 if report.ok else 1
