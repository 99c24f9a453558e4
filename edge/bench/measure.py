"""Measuring one run: the real live loop, `edge.pipeline.Pipeline`, watched by a `BenchObserver`.

1. The caller opens the source and the sink; `build_pipeline` wires them into the loop exactly as
   `nerveseg run` does (the config's presence, overlay and stale settings). Throughput runs hand over every
   frame (``drop_frames=False``, as the demo does): the capture thread reads/decodes frame N+1 while frame N
   is processed, so the run measures the highest rate the box sustains end to end (capture, ROI+gray,
   denoise, resize, normalise, inference, smoothing, overlay, sink). Overload runs keep the live loop's
   "newest frame wins".
2. A warm-up (default 1 s: interpreter caches, first allocations) is excluded: the observer ignores the
   frames before its end, then snapshots the loop's counters (`Pipeline.snapshot`) and the process CPU time
   and resets the peak RSS.
3. For ``seconds`` after that it keeps each analysed frame's stage times and capture-to-display latency
   (`FrameEvent.stages_ms`, ``latency_ms``) in preallocated rings, and at the end snapshots the counters
   again. Per stage: p50/p95/p99/mean ms; sustained fps, dropped frames, CPU use (process CPU time / wall
   time; 100 % = one core busy), peak RSS.

``total`` is the processing thread's time per frame as the loop's own timer measures it, start to sink
(`FrameEvent.total_ms`); the processing stages (ROI+gray through sink) are laps of the same clock, so they
add up to it. ``capture`` runs on the capture thread, in
parallel; each frame carries the most recent read's time, so in overload runs (more reads than processed
frames) it is a sample of the reads.
"""

from __future__ import annotations

import resource
import sys
import threading
import time
from dataclasses import dataclass, replace

import numpy as np

from edge.bench.models import BenchModel
from edge.bench.results import RunResult
from edge.config import Config
from edge.errors import SourceError
from edge.pipeline import STAGES, FrameEvent, Pipeline, PipelineObserver, StageTimer
from edge.plan import resolve_run
from edge.runner import ModelRunner
from edge.sinks.base import Sink
from edge.sources.base import FrameSource
from edge.types import Roi

DEADLINE_GRACE_S = 15.0  # a run still going this long after its planned end (no frames?) is stopped


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux >= 4.0, /proc/self/clear_refs); True when it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return v / (1024 * 1024) if sys.platform == "darwin" else v / 1024


@dataclass(frozen=True)
class _Snap:
    t_ns: int
    cpu_s: float
    frames: int
    captured: int
    dropped: int


class BenchObserver(PipelineObserver):
    """A warm-up, then one measurement window of ``seconds``, inside one `Pipeline.run`.

    Runs on the processing thread, as every observer. The first analysed frame after the warm-up opens
    the window (`begin`); the first one after ``seconds`` closes it (`end`) and sets ``stop``, which ends the
    run. `close` may also be called from another thread (the deadline watcher). Frames shown without
    analysis (ROI does not fit) are not measured. Per frame of the window it keeps the time since the
    window began (s) and the latency (ms) in preallocated arrays, for the plot.
    """

    def __init__(self, warmup_s: float, seconds: float, capacity: int, stop: threading.Event):
        self.warmup_ns = int(warmup_s * 1e9)
        self.seconds_ns = int(seconds * 1e9)
        self.stop = stop
        #: the window's per-stage, total and latency times: the loop's own kind of ring buffers
        self.timer = StageTimer(capacity)
        self.t_s = np.zeros(capacity, np.float64)
        self.lat_ms = np.zeros(capacity, np.float32)
        self.n = 0
        self.begin: _Snap | None = None
        self.end: _Snap | None = None
        self.rss_reset = False
        self.peak_rss_mb = 0.0
        self.frame_shape: tuple[int, ...] | None = None
        self._pipeline: Pipeline | None = None
        self._t_warm_end = 0
        self._t_end = 0
        self._lock = threading.Lock()  # close() may race between the processing thread and the watcher

    def _snap(self, now: int) -> _Snap:
        s = self._pipeline.snapshot()
        return _Snap(now, time.process_time(), s.frames, s.captured, s.dropped)

    def on_start(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._t_warm_end = time.monotonic_ns() + self.warmup_ns

    def on_frame(self, pipeline: Pipeline, event: FrameEvent) -> None:
        if event.state == "not_analysed":
            return
        now = time.monotonic_ns()
        if self.begin is None:
            if self.frame_shape is None:
                self.frame_shape = event.frame.image.shape
            if now >= self._t_warm_end:
                self.rss_reset = _reset_peak_rss()
                self.begin = self._snap(time.monotonic_ns())
                self._t_end = self.begin.t_ns + self.seconds_ns
            return
        if self.end is not None:
            return
        record = self.timer.record_one
        for name, ms in event.stages_ms.items():
            record(name, int(ms * 1e6))
        record("total", int(event.total_ms * 1e6))
        record("latency", int(event.latency_ms * 1e6))
        i = self.n
        if i < self.t_s.size:
            self.t_s[i] = (now - self.begin.t_ns) / 1e9
            self.lat_ms[i] = event.latency_ms
            self.n = i + 1
        if now >= self._t_end:
            self.close(now)

    def close(self, now: int | None = None) -> None:
        """End the window (idempotent); stops the run."""
        with self._lock:
            if self.begin is not None and self.end is None:
                self.end = self._snap(now or time.monotonic_ns())
                self.peak_rss_mb = _peak_rss_mb()
        self.stop.set()


def build_pipeline(
    cfg: Config,
    source: FrameSource,
    runner: ModelRunner,
    sink: Sink,
    *,
    input_size: tuple[int, int] | None,
    stop: threading.Event,
    drop_frames: bool,
    observers: list[PipelineObserver],
    notes: list[str],
    label: str,
) -> tuple[Pipeline, Roi | None]:
    """The one place the benchmark builds the live loop; returns it with the ROI it analyses.

    The run plan is `edge.plan.resolve_run` of the config with this runner's model, as `nerveseg run`
    makes it (presence rules, site profile's ROI and flips). ROI: the plan's (config ``roi`` or site
    profile) when it fits ``input_size`` (the frames' (w, h); None = not known in advance: used as it
    is), else the source's own ``image_roi`` (the phantom's image inside its machine screen), else None
    (the whole frame): the synthetic inputs are other frame sizes than the site's. A configured ROI that
    does not fit is noted once per ``label``. The loop never stops on a frame count here
    (``loop.max_frames`` is ignored): the observer ends it.
    """
    plan = resolve_run(cfg, runner=runner).with_config(loop={"max_frames": None})
    roi = plan.roi_for(source)
    if plan.roi is not None and input_size is not None and not plan.roi.clip_to(*input_size):
        w, h = input_size
        note = f"{label}: the configured roi {plan.roi} does not fit {w}x{h}: not used for that input"
        if note not in notes:
            notes.append(note)
        roi = source.image_roi
    plan = replace(plan, roi=roi)
    pipe = Pipeline(plan, source, runner, sink, stop=stop, drop_frames=drop_frames, observers=observers)
    return pipe, roi


def measure(
    cfg: Config,
    source: FrameSource,
    runner: ModelRunner,
    sink: Sink,
    *,
    seconds: float,
    warmup_s: float,
    drop_frames: bool,
    input_size: tuple[int, int] | None,
    stop: threading.Event,
    notes: list[str],
    label: str,
) -> tuple[BenchObserver, Roi | None]:
    """Run the live loop on an open source and sink for ``warmup_s`` + ``seconds``; return the observer
    holding the window, and the ROI.

    ``stop`` (the whole benchmark's) ends the run early. Raises what the loop raises (a capture error), and
    `SourceError` when no frame was analysed before the deadline.
    """
    run_stop = threading.Event()
    # Room for every frame of the window up to 2000 fps (the last `capacity` frames beyond that).
    capacity = int(min(max(seconds * 2000 + 1024, 4096), 1 << 17))
    obs = BenchObserver(warmup_s, seconds, capacity, run_stop)
    pipe, roi = build_pipeline(cfg, source, runner, sink, input_size=input_size, stop=run_stop,
                               drop_frames=drop_frames, observers=[obs], notes=notes, label=label)
    deadline = time.monotonic() + warmup_s + seconds + DEADLINE_GRACE_S

    def watch() -> None:
        while not run_stop.is_set():
            if stop.is_set() or time.monotonic() >= deadline:
                obs.close()
                return
            run_stop.wait(0.05)

    watcher = threading.Thread(target=watch, name="nerveseg-bench-watch", daemon=True)
    watcher.start()
    try:
        pipe.run()
    finally:
        run_stop.set()
        watcher.join(timeout=1.0)
    if obs.begin is None and not stop.is_set():
        raise SourceError(
            f"{source.describe()}: no frame was analysed within {warmup_s + seconds + DEADLINE_GRACE_S:.0f} s "
            "(no frames from the source, or the ROI does not fit the frame)"
        )
    obs.close()
    return obs, roi


def to_result(
    obs: BenchObserver, model: BenchModel, runner: ModelRunner, input_name: str, source_name: str,
    source: FrameSource, handoff: str, roi: Roi | None, seconds: float, source_fps: float | None = None,
) -> RunResult | None:
    """The run as `RunResult`, or None when the window holds no frame (stopped before it began)."""
    b, e = obs.begin, obs.end
    latency = obs.timer.values_ms("latency")
    if b is None or e is None or e.frames <= b.frames or latency.size == 0:
        return None
    wall = (e.t_ns - b.t_ns) / 1e9
    stages = {s: st for s in (*STAGES, "total") if (st := obs.timer.stats(s)) is not None}
    shape = obs.frame_shape
    return RunResult(
        model=model,
        threads=runner.threads,
        interpreter=runner.backend,
        sha256=runner.sha256,
        input=input_name,
        source=source_name,
        source_description=source.describe(),
        handoff=handoff,
        frame_size=(int(shape[1]), int(shape[0])) if shape else None,
        roi=roi,
        seconds=wall,
        frames=e.frames - b.frames,
        captured=e.captured - b.captured,
        dropped=e.dropped - b.dropped,
        fps=(e.frames - b.frames) / wall,
        cpu_percent=100.0 * (e.cpu_s - b.cpu_s) / wall,
        peak_rss_mb=obs.peak_rss_mb,
        peak_rss_scope="run" if obs.rss_reset else "process",
        complete=wall >= 0.95 * seconds,
        stages=stages,
        latency=obs.timer.stats("latency"),
        latency_max_ms=float(latency.max()),
        t_s=obs.t_s[: obs.n].copy(),
        latency_series_ms=obs.lat_ms[: obs.n].copy(),
        source_fps=source_fps,
    )
