"""Prometheus metrics of the loop: the text rendering of a status snapshot, and the loopback HTTP server.

Metrics (``health.metrics_port``) are served from the latest snapshot by a small ``http.server`` thread
bound to 127.0.0.1 only: the box has no business exposing itself on the network; scrape through an SSH
tunnel or a local agent. Each connection gets a handler thread with a socket timeout
(`METRICS_CLIENT_TIMEOUT_S`), and at most `METRICS_MAX_HANDLERS` run at once (a connection beyond that is
closed at once): a client that connects and says nothing costs one thread for a couple of seconds, never a
thread for ever.

Snapshots are taken on the processing thread, so a hung loop stops them: the metrics then keep the last
values with ``nerveseg_up`` still 1. What shows the hang is the age of the snapshot,
``nerveseg_status_age_seconds`` (computed at scrape time from ``time_unix``): alert on that, not on ``up``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from edge.health.status import STATES, status_age_s

logger = logging.getLogger(__name__)

#: Seconds a metrics client may stay silent (per receive or send) before its connection is dropped. A local
#: scraper sends its request within milliseconds of connecting.
METRICS_CLIENT_TIMEOUT_S = 2.0
#: Metrics connections served at once; one more is closed without an answer (the scraper tries again at its
#: next interval). A box has one scraper: this only bounds the threads that stuck clients can hold.
METRICS_MAX_HANDLERS = 4


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(status: dict[str, Any] | None, now_unix: float | None = None) -> str:
    """Prometheus text exposition format (0.0.4) of a status snapshot, as of ``now_unix`` (None = now).

    Times are in seconds and sizes in bytes, as Prometheus names them; ``nerveseg_state`` has one
    series per state, 1 for the current one. The ages (``nerveseg_status_age_seconds``,
    ``nerveseg_last_frame_age_seconds``) are computed at ``now_unix``, so they keep growing while the
    loop is hung and the snapshot does not change.
    """
    out: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[dict[str, object], object]]) -> None:
        rows = [(labels, float(v)) for labels, v in samples
                if isinstance(v, (int, float)) and math.isfinite(float(v))]  # bool is an int: 0/1
        if not rows:
            return
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        for labels, v in rows:
            lab = ",".join(f'{k}="{_label(x)}"' for k, x in labels.items())
            num = str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:.10g}"
            out.append(f"{name}{{{lab}}} {num}" if lab else f"{name} {num}")

    metric("nerveseg_up", "gauge", "1 while the process serves metrics (a hung loop too: see "
           "nerveseg_status_age_seconds)", [({}, 1)])
    if not status:
        return "\n".join(out) + "\n"
    s = status
    age = status_age_s(s, now_unix)
    model = s.get("model") or {}
    metric("nerveseg_info", "gauge", "version and model of the running loop",
           [({"version": s.get("version", ""), "model": model.get("name", ""),
              "model_sha256": model.get("sha256", "")}, 1)])
    state = s.get("state")
    metric("nerveseg_state", "gauge", "1 for the loop's current state",
           [({"state": st}, int(st == state)) for st in STATES])
    ms = 1e-3

    def scaled(key: str, f: float) -> float | None:
        v = s.get(key)
        return None if v is None else v * f

    metric("nerveseg_fps", "gauge", "frames processed per second over the last interval", [({}, s.get("fps"))])
    metric("nerveseg_frames_total", "counter", "frames processed", [({}, s.get("frames"))])
    metric("nerveseg_frames_captured_total", "counter", "frames captured", [({}, s.get("captured"))])
    metric("nerveseg_frames_dropped_total", "counter", "frames dropped before processing", [({}, s.get("dropped"))])
    metric("nerveseg_nerve_frames_total", "counter", "processed frames decided 'nerve'", [({}, s.get("nerve_frames"))])
    metric("nerveseg_inference_p50_seconds", "gauge", "median interpreter time, recent frames",
           [({}, scaled("inference_ms_p50", ms))])
    metric("nerveseg_latency_p50_seconds", "gauge", "median capture-to-display latency, recent frames",
           [({}, scaled("latency_ms_p50", ms))])
    metric("nerveseg_latency_p95_seconds", "gauge", "95th percentile capture-to-display latency, recent frames",
           [({}, scaled("latency_ms_p95", ms))])
    metric("nerveseg_p_nerve", "gauge", "P(nerve) of the last analysed frame", [({}, s.get("p_nerve"))])
    metric("nerveseg_nerve_in_view", "gauge", "1 while the outline is shown", [({}, s.get("nerve"))])
    frame_age = s.get("last_frame_age_s")
    if isinstance(frame_age, (int, float)) and age is not None:
        frame_age = frame_age + max(age, 0.0)
    metric("nerveseg_last_frame_age_seconds", "gauge", "seconds since the last processed frame, at scrape time",
           [({}, frame_age)])
    metric("nerveseg_uptime_seconds", "gauge", "seconds since the loop started", [({}, s.get("uptime_s"))])
    src = s.get("source") or {}
    metric("nerveseg_source_connected", "gauge", "1 while the capture device is open (live sources)",
           [({}, src.get("connected"))])
    metric("nerveseg_source_reconnects_total", "counter", "capture outages recovered from",
           [({}, src.get("reconnects"))])
    disk = s.get("disk") or {}
    metric("nerveseg_disk_free_bytes", "gauge", "free bytes on the recordings file system",
           [({"path": disk.get("path", "")}, disk.get("free_bytes"))])
    metric("nerveseg_disk_total_bytes", "gauge", "size of the recordings file system",
           [({"path": disk.get("path", "")}, disk.get("total_bytes"))])
    metric("nerveseg_last_error", "gauge", "1 when the loop has met an error since it started",
           [({}, int(s.get("last_error") is not None))])
    metric("nerveseg_status_timestamp_seconds", "gauge", "when these values were taken, unix time",
           [({}, s.get("time_unix"))])
    metric("nerveseg_status_age_seconds", "gauge", "seconds since these values were taken, at scrape time; "
           "grows while the loop is hung", [({}, None if age is None else round(age, 3))])
    return "\n".join(out) + "\n"


class _MetricsHandler(BaseHTTPRequestHandler):
    server: MetricsServer
    server_version = "nerveseg"

    def do_GET(self) -> None:  # the name http.server dispatches GET to
        if self.path.split("?", 1)[0] not in ("/metrics", "/"):
            self.send_error(404, "only /metrics is here")
            return
        body = render_metrics(self.server.snapshot(), time.time()).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # same signature as the base class
        logger.debug("metrics: " + format, *args)


class MetricsServer(HTTPServer):
    """One handler thread per connection, at most ``max_handlers`` at once, each with a socket timeout.

    http.server's ThreadingHTTPServer starts a thread for every connection and waits for its request
    for ever: idle connections would pile up threads in the process that draws the overlay.
    """

    # Accept a burst of connections at once (and close those over the limit at once) rather than leave them
    # to the kernel, where a client's connect() hangs for seconds of SYN retries.
    request_queue_size = 32

    def __init__(self, port: int, snapshot: Callable[[], dict[str, Any] | None],
                 client_timeout_s: float | None = None, max_handlers: int | None = None):
        """``snapshot``: returns the latest status dict (None before the first); called per scrape, on a
        handler thread. Timeout and handler limit default to `METRICS_CLIENT_TIMEOUT_S` and
        `METRICS_MAX_HANDLERS`. Raises OSError when the port cannot be bound."""
        # Loopback only, on purpose: there is no setting to bind anything else.
        super().__init__(("127.0.0.1", port), _MetricsHandler)
        self.snapshot = snapshot
        self.client_timeout_s = METRICS_CLIENT_TIMEOUT_S if client_timeout_s is None else client_timeout_s
        self.max_handlers = METRICS_MAX_HANDLERS if max_handlers is None else max_handlers
        self._slots = threading.BoundedSemaphore(self.max_handlers)
        self.refused = 0

    def get_request(self) -> tuple[Any, Any]:
        conn, addr = super().get_request()
        conn.settimeout(self.client_timeout_s)  # every recv and send of the handler; None would wait for ever
        return conn, addr

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            logger.debug("metrics: %d connections already being served; closing one from %s",
                         self.max_handlers, client_address)
            self.shutdown_request(request)
            return
        try:
            threading.Thread(target=self._serve_one, args=(request, client_address),
                             name="nerveseg-metrics-client", daemon=True).start()
        except BaseException:
            self._slots.release()
            self.shutdown_request(request)
            raise

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - a client that went away must not end the server thread
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver's default prints a traceback to stderr; a scraper hanging up is not worth more.
        logger.debug("metrics: connection from %s failed", client_address, exc_info=True)
