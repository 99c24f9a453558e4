"""Health an engineer can read without a screen: a JSON status file and optional Prometheus metrics.

`HealthMonitor` is a `PipelineObserver`. Every ``health.interval_s`` (on a frame,
or on an idle tick while no frame comes, so a box showing NO SIGNAL still
reports) it takes a snapshot of the loop on the processing thread, which costs
a few dict assignments and two percentiles, and hands it to a writer thread.
The writer adds the disk figures and replaces the status file atomically
(temporary file in the same folder, fsync, ``os.replace``): a reader sees the
old file or the new one, never a half-written one. Writing happens off the
processing thread because an fsync on an SD card can take hundreds of
milliseconds while the recorder is writing video to it.

The appliance keeps the file in ``/run/nerveseg`` (tmpfs: rewriting it every two
seconds wears no flash, and it is gone after a reboot, when it would be stale
anyway); the unit keeps that folder after a stop so the last state and error
stay readable. The file is world-readable: it holds counters and states, no
image data.

Metrics (``health.metrics_port``) are served from the latest snapshot by a small
``http.server`` thread bound to 127.0.0.1 only: the box has no business
exposing itself on the network; scrape through an SSH tunnel or a local agent.
Each connection gets a handler thread with a socket timeout
(`METRICS_CLIENT_TIMEOUT_S`), and at most `METRICS_MAX_HANDLERS` run at once
(a connection beyond that is closed at once): a client that connects and says
nothing costs one thread for a couple of seconds, never a thread for ever.

Snapshots are taken on the processing thread, so a hung loop stops them: the
file then stops changing, and the metrics keep the last values with
``nerveseg_up`` still 1. What shows the hang is the age of the snapshot,
``nerveseg_status_age_seconds`` (computed at scrape time from ``time_unix``),
and for the file ``nerveseg status --max-age``: alert on those, not on ``up``.

Fields of the status file (``schema_version`` 1) are listed in `STATUS_FIELDS`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import __version__
from edge.config import HealthConfig
from edge.fileio import replace_atomic
from edge.pipeline import FrameEvent, PipelineObserver

if TYPE_CHECKING:
    from edge.pipeline import Pipeline
    from edge.types import Stats

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: Where the appliance writes it (systemd/config.yaml) and where `nerveseg status` looks by default.
DEFAULT_STATUS_FILE = "/run/nerveseg/status.json"
#: Seconds a metrics client may stay silent (per receive or send) before its connection is dropped. A local
#: scraper sends its request within milliseconds of connecting.
METRICS_CLIENT_TIMEOUT_S = 2.0
#: Metrics connections served at once; one more is closed without an answer (the scraper tries again at its
#: next interval). A box has one scraper: this only bounds the threads that stuck clients can hold.
METRICS_MAX_HANDLERS = 4
#: Every value `edge.pipeline.Pipeline.state` takes.
STATES = ("starting", "live", "stale", "not_analysed", "no_signal", "stopped")

STATUS_FIELDS: dict[str, str] = {
    "schema_version": "1",
    "time": "when this snapshot was taken (on the processing thread), UTC ISO 8601",
    "time_unix": "the same, seconds since the epoch",
    "version": "nerveseg version",
    "pid": "process id of the loop",
    "state": "starting | live | stale | not_analysed | no_signal | stopped",
    "uptime_s": "seconds since the loop started",
    "fps": "frames processed per second over the last interval",
    "fps_mean": "frames processed per second since start",
    "frames": "frames processed",
    "captured": "frames captured",
    "dropped": "frames replaced in the hand-off before processing (box slower than the video)",
    "nerve_frames": "processed frames with the decision 'nerve'",
    "stale_frames": "processed frames marked STALE",
    "inference_ms_p50": "median interpreter time over the last (up to) 4096 frames, ms",
    "latency_ms_p50": "median capture-to-display latency, same window, ms",
    "latency_ms_p95": "95th percentile of it, ms",
    "p_nerve": "P(nerve) of the last analysed frame (null before the first or when not analysed)",
    "nerve": "the smoothed decision on the last frame: outline shown",
    "last_frame_age_s": "seconds since the last processed frame (null before the first)",
    "source": "{describe, connected, reconnects, open_failures, failed_reads} (null where the source has none)",
    "model": "{name, path, sha256, quantization, untrained, backend, threads}",
    "disk": "{path, free_bytes, total_bytes, free_fraction} of the recordings folder, null if unreadable",
    "recorder": "the recorder's own health (null when recording is not configured)",
    "systemd": "{notify_socket, ready, watchdog_s, heartbeats, last_heartbeat_age_s}, when run by systemd",
    "notices": "operator lines shown on screen by observers",
    "last_error": "last error the loop or an observer met (null if none)",
}


# -- the file ------------------------------------------------------------------------------------


def _finite(obj: Any) -> Any:
    """JSON has no NaN or infinity: such floats become null (recursively)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json_atomic(path: str | Path, obj: Any, mode: int = 0o644) -> None:
    """Replace ``path`` with ``obj`` as JSON so that a reader only ever sees a complete file
    (`edge.fileio.replace_atomic`); NaN and infinity become null."""
    data = json.dumps(_finite(obj), indent=1, default=str).encode("utf-8") + b"\n"
    replace_atomic(path, data, mode)


def read_status(path: str | Path) -> dict[str, Any]:
    """The status file as a dict. Raises OSError or ValueError (not JSON, not an object)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def disk_usage(path: str | Path) -> dict[str, Any] | None:
    """Free and total bytes of the file system holding ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        du = shutil.disk_usage(p)
    except OSError:
        return None
    return {
        "path": str(Path(path)),
        "free_bytes": du.free,
        "total_bytes": du.total,
        "free_fraction": round(du.free / du.total, 4) if du.total else None,
    }


# -- metrics -------------------------------------------------------------------------------------


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
    server: _MetricsServer
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


class _MetricsServer(HTTPServer):
    """One handler thread per connection, at most ``max_handlers`` at once, each with a socket timeout.

    http.server's ThreadingHTTPServer starts a thread for every connection and waits for its request
    for ever: idle connections would pile up threads in the process that draws the overlay.
    """

    # Accept a burst of connections at once (and close those over the limit at once) rather than leave them
    # to the kernel, where a client's connect() hangs for seconds of SYN retries.
    request_queue_size = 32

    def __init__(self, port: int, snapshot: Callable[[], dict[str, Any] | None],
                 client_timeout_s: float = METRICS_CLIENT_TIMEOUT_S, max_handlers: int = METRICS_MAX_HANDLERS):
        # Loopback only, on purpose: there is no setting to bind anything else.
        super().__init__(("127.0.0.1", port), _MetricsHandler)
        self.snapshot = snapshot
        self.client_timeout_s = client_timeout_s
        self.max_handlers = max_handlers
        self._slots = threading.BoundedSemaphore(max_handlers)
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


# -- the writer thread ---------------------------------------------------------------------------


class _StatusWriter(threading.Thread):
    """Takes snapshots from the processing thread (newest wins), adds disk figures, writes the file."""

    def __init__(self, path: Path | None, disk_path: Path):
        super().__init__(name="nerveseg-health", daemon=True)
        self.path = path
        self.disk_path = disk_path
        self._cond = threading.Condition()
        self._pending: dict[str, Any] | None = None
        self._closing = False
        self._latest: dict[str, Any] | None = None
        self.writes = 0
        self.errors = 0
        self._last_error: str | None = None

    def submit(self, snap: dict[str, Any]) -> None:
        with self._cond:
            self._pending = snap
            self._cond.notify()

    def latest(self) -> dict[str, Any] | None:
        with self._cond:
            return self._latest

    def close(self, timeout: float = 2.0) -> None:
        """Write what is pending, then end the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closing:
                    self._cond.wait()
                snap, self._pending = self._pending, None
                closing = self._closing
            if snap is not None:
                self._complete_and_write(snap)
            if closing:
                with self._cond:
                    if self._pending is None:
                        return

    def _complete_and_write(self, snap: dict[str, Any]) -> None:
        t = snap.get("time_unix")
        if not isinstance(t, (int, float)):
            t = snap["time_unix"] = round(time.time(), 3)
        snap["time"] = datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")
        snap["disk"] = disk_usage(self.disk_path)
        ordered = {k: snap[k] for k in STATUS_FIELDS if k in snap}
        ordered.update((k, v) for k, v in snap.items() if k not in ordered)
        with self._cond:
            self._latest = ordered
        if self.path is None:
            return
        try:
            write_json_atomic(self.path, ordered)
            self.writes += 1
            self._last_error = None
        except (OSError, TypeError, ValueError) as e:
            self.errors += 1
            msg = f"cannot write status file {self.path}: {e}"
            if msg != self._last_error:  # once per distinct fault, not every interval
                logger.warning("%s", msg)
                self._last_error = msg


# -- the observer --------------------------------------------------------------------------------


class HealthMonitor(PipelineObserver):
    """Status file and metrics for one run of the loop (see the module docstring).

    ``metrics_port`` is the port actually bound once the loop has started (useful with port 0).
    Nothing here may stop the overlay: a status file that cannot be written or a port that is
    taken is logged, and the loop goes on.
    """

    def __init__(self, cfg: HealthConfig, disk_path: str | Path | None = None,
                 clock: Callable[[], float] = time.monotonic):
        """``disk_path``: folder whose file system's free space is reported (the recordings folder);
        None = the working directory (the unit runs in /var/lib/nerveseg)."""
        self.cfg = cfg
        self.status_file = Path(cfg.status_file) if cfg.status_file else None
        self.interval_s = cfg.interval_s
        self.disk_path = Path(disk_path) if disk_path else Path.cwd()
        self.metrics_port: int | None = None
        self._clock = clock
        self._writer: _StatusWriter | None = None
        self._server: _MetricsServer | None = None
        self._server_thread: threading.Thread | None = None
        self._t0 = 0.0
        self._next = 0.0
        self._rate_t = 0.0
        self._rate_frames = 0
        self._p_nerve: float | None = None
        self._nerve = False
        self._last_frame_t: float | None = None
        self._model: dict[str, Any] = {}
        self._warned_names: set[str] = set()

    # -- lifecycle --------------------------------------------------------------------------------

    def on_start(self, pipeline: Pipeline) -> None:
        now = self._clock()
        self._t0 = self._rate_t = now
        r = pipeline.runner
        self._model = {
            "name": r.spec.name, "path": str(r.model_path), "sha256": r.sha256,
            "quantization": r.spec.quantization, "untrained": r.spec.untrained,
            "backend": r.backend, "threads": r.threads,
        }
        self._writer = _StatusWriter(self.status_file, self.disk_path)
        self._writer.start()
        if self.status_file is not None:
            logger.info("health: status file %s every %.3g s", self.status_file, self.interval_s)
        if self.cfg.metrics_port is not None:
            self._start_metrics(pipeline, self.cfg.metrics_port)
        self._submit(pipeline, now)

    def _start_metrics(self, pipeline: Pipeline, port: int) -> None:
        try:
            self._server = _MetricsServer(port, self._writer.latest if self._writer else lambda: None,
                                          METRICS_CLIENT_TIMEOUT_S, METRICS_MAX_HANDLERS)
        except OSError as e:
            pipeline.last_error = f"metrics: cannot listen on 127.0.0.1:{port}: {e}"
            logger.error("health: %s; running without metrics", pipeline.last_error)
            return
        self.metrics_port = int(self._server.server_address[1])
        self._server_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="nerveseg-metrics", daemon=True
        )
        self._server_thread.start()
        logger.info("health: metrics on http://127.0.0.1:%d/metrics", self.metrics_port)

    def on_frame(self, pipeline: Pipeline, event: FrameEvent) -> None:
        now = self._clock()
        self._last_frame_t = now
        if event.result is not None:
            self._p_nerve = event.result.p_nerve
            self._nerve = bool(event.decision.nerve) if event.decision is not None else False
        else:
            self._p_nerve, self._nerve = None, False
        if now >= self._next:
            self._submit(pipeline, now)

    def on_idle(self, pipeline: Pipeline, no_signal: bool) -> None:
        now = self._clock()
        if no_signal:
            self._nerve = False
        if now >= self._next:
            self._submit(pipeline, now)

    def on_stop(self, pipeline: Pipeline, stats: Stats | None) -> None:
        self._nerve = False  # nothing is shown any more
        if self._writer is not None:
            self._submit(pipeline, self._clock())
            self._writer.close(timeout=2.0)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- the snapshot -----------------------------------------------------------------------------

    def _submit(self, pipeline: Pipeline, now: float) -> None:
        self._next = now + self.interval_s
        if self._writer is not None:
            snap = self.snapshot(pipeline, now)
            # Stamped here, on the processing thread, not when the writer gets to it: the age of a
            # snapshot is the age of the loop's last sign of life.
            snap["time_unix"] = round(time.time(), 3)
            self._writer.submit(snap)

    def snapshot(self, pipeline: Pipeline, now: float | None = None) -> dict[str, Any]:
        """The status of ``pipeline`` now, without the time fields (`_submit` stamps them) and the disk
        figures (the writer adds those)."""
        now = self._clock() if now is None else now
        c = pipeline.counters
        dt = now - self._rate_t
        fps = (c.frames - self._rate_frames) / dt if dt > 0 else 0.0
        self._rate_t, self._rate_frames = now, c.frames
        infer = pipeline.timer.stats("infer")
        lat = pipeline.timer.stats("latency")
        src = pipeline.source
        uptime = now - self._t0
        snap: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "version": __version__,
            "pid": os.getpid(),
            "state": pipeline.state,
            "uptime_s": round(uptime, 1),
            "fps": round(fps, 2),
            "fps_mean": round(c.frames / uptime, 2) if uptime > 0 else 0.0,
            "frames": c.frames,
            "captured": pipeline.capture.captured,
            "dropped": pipeline.slot.dropped,
            "nerve_frames": c.nerve_frames,
            "stale_frames": c.stale_frames,
            "inference_ms_p50": round(infer.p50, 3) if infer else None,
            "latency_ms_p50": round(lat.p50, 2) if lat else None,
            "latency_ms_p95": round(lat.p95, 2) if lat else None,
            "p_nerve": None if self._p_nerve is None else round(float(self._p_nerve), 4),
            "nerve": self._nerve,
            "last_frame_age_s": None if self._last_frame_t is None else round(now - self._last_frame_t, 2),
            "source": {
                "describe": src.describe(),
                "connected": getattr(src, "connected", None),
                "reconnects": getattr(src, "reconnects", None),
                "open_failures": getattr(src, "open_failures", None),
                "failed_reads": getattr(src, "failed_reads", None),
            },
            "model": self._model,
            "recorder": None,
            "notices": list(pipeline.notices.values()),
            "last_error": pipeline.last_error,
        }
        self._add_observer_health(pipeline, snap)
        return snap

    def _add_observer_health(self, pipeline: Pipeline, snap: dict[str, Any]) -> None:
        """``{obs.name: obs.health()}`` for every observer that offers it (the recorder, the notifier)."""
        reserved = (set(snap) | set(STATUS_FIELDS)) - {"recorder", "systemd"}
        for obs in pipeline.observers:
            name = getattr(obs, "name", None)
            health = getattr(obs, "health", None)
            if obs is self or not isinstance(name, str) or not callable(health):
                continue
            if name in reserved:
                if name not in self._warned_names:
                    self._warned_names.add(name)
                    logger.warning("health: observer name %r clashes with a status field; not reported", name)
                continue
            try:
                snap[name] = health()
            except Exception as e:  # noqa: BLE001 - a broken observer must not cost the status of the rest
                snap[name] = {"error": f"{type(e).__name__}: {e}"}


# -- reading it back (nerveseg status) -----------------------------------------------------------


def _fmt_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000.0
    return f"{n:.1f} TB"  # pragma: no cover


def _fmt_duration(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(s)
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    return (f"{d}d " if d else "") + (f"{h}h{m:02d}m" if d or h else f"{m}m{sec:02d}s")


def status_age_s(status: dict[str, Any], now_unix: float | None = None) -> float | None:
    t = status.get("time_unix")
    if not isinstance(t, (int, float)):
        return None
    return (time.time() if now_unix is None else now_unix) - float(t)


def format_status(status: dict[str, Any], now_unix: float | None = None) -> str:
    """A few human lines from a status dict, for `nerveseg status` over SSH."""
    s = status
    age = status_age_s(s, now_unix)
    model = s.get("model") or {}
    src = s.get("source") or {}
    disk = s.get("disk") or {}
    p = s.get("p_nerve")

    def ms(v: object) -> str:
        return f"{v:.2f}" if isinstance(v, (int, float)) else "-"

    conn = src.get("connected")
    lines = [
        f"nerveseg {s.get('version', '?')} (pid {s.get('pid', '?')}): {s.get('state', '?')}, "
        f"up {_fmt_duration(s.get('uptime_s'))}, written {'?' if age is None else f'{age:.1f} s'} ago",
        f"  fps {s.get('fps', 0):.1f} (mean {s.get('fps_mean', 0):.1f}) | frames {s.get('frames', 0)} | "
        f"dropped {s.get('dropped', 0)} | inference p50 {ms(s.get('inference_ms_p50'))} ms | "
        f"latency p50 {ms(s.get('latency_ms_p50'))} p95 {ms(s.get('latency_ms_p95'))} ms",
        f"  nerve {'shown' if s.get('nerve') else 'not shown'}"
        + (f" (P {p:.2f})" if isinstance(p, (int, float)) else ""),
        f"  source {src.get('describe', '?')}"
        + ("" if conn is None else (" connected" if conn else " NOT CONNECTED"))
        + (f", {src['reconnects']} reconnects" if src.get("reconnects") else ""),
        f"  model {model.get('name', '?')} {str(model.get('sha256') or '')[:12]} "
        f"({model.get('quantization', '?')}, {model.get('backend', '?')}"
        + (", UNTRAINED" if model.get("untrained") else "") + ")",
        f"  disk {_fmt_bytes(disk.get('free_bytes'))} free of {_fmt_bytes(disk.get('total_bytes'))}"
        f" ({disk.get('path', '?')})" if disk else "  disk ?",
    ]
    for key in ("recorder", "systemd"):
        if s.get(key) is not None:
            lines.append(f"  {key} {json.dumps(s[key], default=str)}")
    for n in s.get("notices") or []:
        lines.append(f"  notice: {n}")
    lines.append(f"  last error: {s.get('last_error') or 'none'}")
    return "\n".join(lines)
