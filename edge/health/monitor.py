"""`HealthMonitor`: the observer that keeps the status file and the metrics of a running loop.

Every ``health.interval_s`` (on a frame, or on an idle tick while no frame comes, so a box showing NO SIGNAL
still reports) it takes a snapshot of the loop on the processing thread: `Pipeline.snapshot` (counters,
state, the source's `SourceStatus`), `Pipeline.stats` (inference and latency percentiles) and each other
observer's declared ``name`` / ``health()``. It hands the snapshot to a writer thread, which adds the disk
figures and replaces the status file atomically (`edge.health.status.write_json_atomic`). Writing happens
off the processing thread because an fsync on an SD card can take hundreds of milliseconds while the
recorder is writing video to it. The metrics server (`edge.health.metrics`) serves the writer's latest
snapshot.

Snapshots are taken on the processing thread, so a hung loop stops them: the file stops changing and the
metrics keep their last values. ``nerveseg status --max-age`` and ``nerveseg_status_age_seconds`` show it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import __version__
from edge.config import HealthConfig
from edge.health.metrics import MetricsServer
from edge.health.status import SCHEMA_VERSION, STATUS_FIELDS, disk_usage, write_json_atomic
from edge.pipeline import FrameEvent, PipelineObserver
from edge.types import SourceStatus

if TYPE_CHECKING:
    from edge.pipeline import Pipeline
    from edge.types import Stats

logger = logging.getLogger(__name__)

#: The ``source`` entry of a source with nothing to say (files, the phantom): every counter unknown.
_NO_SOURCE_STATUS = asdict(SourceStatus())



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
        self._server: MetricsServer | None = None
        self._server_thread: threading.Thread | None = None
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
        self._rate_t = now
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
            self._server = MetricsServer(port, self._writer.latest if self._writer else lambda: None)
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
        ps = pipeline.snapshot()
        dt = now - self._rate_t
        fps = (ps.frames - self._rate_frames) / dt if dt > 0 else 0.0
        self._rate_t, self._rate_frames = now, ps.frames
        # Percentiles of the two figures the file reports, once per interval, not per frame.
        stats = pipeline.stats(stages=("infer",))
        infer = stats.stages.get("infer")
        lat = stats.latency
        source = asdict(ps.source) if ps.source is not None else dict(_NO_SOURCE_STATUS)
        snap: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "version": __version__,
            "pid": os.getpid(),
            "state": ps.state,
            "uptime_s": round(ps.elapsed_s, 1),
            "fps": round(fps, 2),
            "fps_mean": round(ps.fps, 2),
            "frames": ps.frames,
            "captured": ps.captured,
            "dropped": ps.dropped,
            "nerve_frames": ps.nerve_frames,
            "stale_frames": ps.stale_frames,
            "inference_ms_p50": round(infer.p50, 3) if infer else None,
            "latency_ms_p50": round(lat.p50, 2) if lat else None,
            "latency_ms_p95": round(lat.p95, 2) if lat else None,
            "p_nerve": None if self._p_nerve is None else round(float(self._p_nerve), 4),
            "nerve": self._nerve,
            "last_frame_age_s": None if self._last_frame_t is None else round(now - self._last_frame_t, 2),
            "source": {"describe": pipeline.source.describe(), **source},
            "model": self._model,
            "recorder": None,
            "notices": list(pipeline.notices.values()),
            "last_error": ps.last_error,
        }
        self._add_observer_health(pipeline, snap)
        return snap

    def _add_observer_health(self, pipeline: Pipeline, snap: dict[str, Any]) -> None:
        """``{obs.name: obs.health()}`` for every observer that declares a name (the recorder, the notifier)."""
        reserved = (set(snap) | set(STATUS_FIELDS)) - {"recorder", "systemd"}
        for obs in pipeline.observers:
            name = obs.name
            if obs is self or name is None:
                continue
            if name in reserved:
                if name not in self._warned_names:
                    self._warned_names.add(name)
                    logger.warning("health: observer name %r clashes with a status field; not reported", name)
                continue
            try:
                snap[name] = obs.health()
            except Exception as e:  # noqa: BLE001 - a broken observer must not cost the status of the rest
                snap[name] = {"error": f"{type(e).__name__}: {e}"}
