"""The live loop: capture thread -> latest-wins slot -> process -> overlay -> sink.

Capture runs in its own thread and never waits for the consumer: frames are
handed over through a one-frame slot in which the newest frame replaces an
unconsumed older one (counted as dropped). So when inference is slower than
the video, the picture skips frames instead of falling behind: the
capture-to-display latency stays bounded by about one frame interval plus the
processing time.

Offline runs (the demo over a file) can ask for ``drop_frames=False``: then the
capture thread waits for the consumer instead, every frame is processed, and
the run measures throughput. The live `nerveseg run` never does this.

Processing happens on the thread that calls `Pipeline.run` (the main thread in
the CLI): preprocess, infer, smooth, draw on the frame it was computed from,
show. A result is never painted on another frame; when it is older than
``overlay.stale_after_ms`` (capture to draw) the frame is marked STALE and no
outline is drawn.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from edge.analyze import Analyzer
from edge.control import QUIT, CommandChannel
from edge.errors import SourceExhausted
from edge.overlay import Overlay, OverlayStatus
from edge.plan import RunPlan
from edge.preprocess import crop_roi
from edge.runner import ModelRunner
from edge.sinks.base import Sink
from edge.sources.base import FrameSource
from edge.types import Decision, Frame, PipelineSnapshot, Result, StageStats, Stats

logger = logging.getLogger(__name__)

# Stage names in hot-path order; the benchmark and the stats line use them.
STAGES = ("capture", "roi_gray", "denoise", "resize", "normalise", "infer", "smooth", "overlay", "sink")


class LatestSlot:
    """One-frame hand-off between the capture thread and the processing thread.

    ``put`` never blocks in latest-wins mode: a frame not yet taken is replaced
    and counted in ``dropped``. With ``lossless=True`` ``put`` waits (in short
    slices, watching ``stop``) until the consumer has taken the previous frame.
    """

    def __init__(self, lossless: bool = False, stop: threading.Event | None = None):
        self._cond = threading.Condition()
        self._item: Frame | None = None
        self._closed = False
        self._lossless = lossless
        self._stop = stop or threading.Event()
        self.dropped = 0
        self.put_count = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._lossless:
                while self._item is not None and not self._stop.is_set():
                    self._cond.wait(0.1)
                if self._stop.is_set():
                    return  # shutting down: nobody will take it, and it was not dropped by overload
            if self._item is not None:
                self.dropped += 1
            self._item = frame
            self.put_count += 1
            self._cond.notify()

    def get(self, timeout: float) -> Frame | None:
        """The newest frame, or None after ``timeout`` s (or at once when closed and empty)."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            self._cond.notify()
            return item

    def close(self) -> None:
        """No more frames will come; ``get`` still returns a frame already in the slot."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


class CaptureThread(threading.Thread):
    """Reads the source until ``stop`` is set or the source ends; never blocks on the consumer."""

    def __init__(self, source: FrameSource, slot: LatestSlot, stop: threading.Event, timer: StageTimer):
        super().__init__(name="nerveseg-capture", daemon=True)
        self.source = source
        self._slot = slot
        self.stop = stop
        self._timer = timer
        self.captured = 0
        self.exhausted = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                t0 = time.perf_counter_ns()
                try:
                    frame = self.source.read(timeout=0.2)
                except SourceExhausted:
                    self.exhausted = True
                    return
                if frame is None:
                    continue
                # Time of the read that produced a frame: grab + decode, plus pacing
                # sleep for sources paced at their own fps.
                self._timer.record_one("capture", time.perf_counter_ns() - t0)
                self.captured += 1
                self._slot.put(frame)
        except Exception as e:  # noqa: BLE001 - reported by the pipeline, which decides the exit
            self.error = e
            logger.exception("capture thread failed")
        finally:
            self._slot.close()


@dataclass
class FrameEvent:
    """What observers get after a frame has been shown.

    seq: processed-frame counter of this run, from 0 (``frame.seq`` is the source's).
    frame: the captured frame; ``frame.image`` now carries the overlay as it was shown.
    roi_raw: the ROI crop as captured, before anything was drawn on it (a private copy),
        when some observer sets ``needs_raw``; else None.
    model_input: the normalised (H, W) float32 model input, as the network saw it (mirrored
        when the site profile flips) (a view the loop reuses: copy it to keep it).
    result / decision: the network's output and the smoothed verdict; None when the
        frame was not analysed (``state == "not_analysed"``).
    state: "live" | "stale" | "not_analysed".
    stages_ms: this frame's time per stage (names from `STAGES`), ms.
    total_ms: the processing thread's time for this frame, start to sink, ms (capture runs beside it).
    latency_ms: capture to sink, ms.
    """

    seq: int
    frame: Frame
    roi_raw: np.ndarray | None
    model_input: np.ndarray | None
    result: Result | None
    decision: Decision | None
    state: str
    stages_ms: dict[str, float] = field(default_factory=dict)
    total_ms: float = 0.0
    latency_ms: float = 0.0


class PipelineObserver:
    """Something that watches the loop from the side: recorder, health file, watchdog, profile check.

    Every method runs on the processing thread, so it must be quick (hand heavy work to
    a thread of its own). An exception in an observer is logged (rate-limited) and
    otherwise ignored: nothing an observer does may stop the live overlay.
    Observers may put one operator-facing line on screen through
    ``pipeline.notices[key] = text`` (remove the key to clear it).
    """

    #: set True to get ``FrameEvent.roi_raw`` (costs one copy of the ROI per frame)
    needs_raw: bool = False
    #: the key under which `health` appears in the health file (None: not reported)
    name: str | None = None

    def health(self) -> dict | None:
        """This observer's part of the health file (JSON-able), or None. Called every few seconds."""
        return None

    def on_start(self, pipeline: Pipeline) -> None:
        """Before the first frame, after the capture thread started."""

    def on_frame(self, pipeline: Pipeline, event: FrameEvent) -> None:
        """After each processed frame has been shown."""

    def on_idle(self, pipeline: Pipeline, no_signal: bool) -> None:
        """About every 0.1 s while no frame arrives; ``no_signal`` once NO SIGNAL is showing."""

    def on_stop(self, pipeline: Pipeline, stats: Stats | None) -> None:
        """Once, when the loop ends (``stats`` is None when it ended with an error)."""


class StageTimer:
    """Per-stage durations in fixed ring buffers (ns), plus capture-to-sink latency.

    ``lap(name)`` records the time since the previous lap (or ``start``). No
    allocation per frame; percentiles are computed only when stats are read.
    ``record_one`` is safe to call from the capture thread (one writer per stage).
    """

    def __init__(self, capacity: int = 4096):
        self.capacity = capacity
        self._buf = {name: np.zeros(capacity, np.int64) for name in (*STAGES, "latency", "total")}
        self._n = dict.fromkeys(self._buf, 0)
        self._t = 0
        self._t_start = 0

    def start(self) -> None:
        self._t = self._t_start = time.perf_counter_ns()

    def lap(self, name: str) -> None:
        now = time.perf_counter_ns()
        self.record_one(name, now - self._t)
        self._t = now

    def finish(self) -> None:
        self.record_one("total", time.perf_counter_ns() - self._t_start)

    def record_one(self, name: str, ns: int) -> None:
        i = self._n[name]
        self._buf[name][i % self.capacity] = ns
        self._n[name] = i + 1

    def last_ms(self, name: str) -> float | None:
        """The most recent duration recorded for ``name``, ms (None if none yet)."""
        n = self._n[name]
        return None if n == 0 else float(self._buf[name][(n - 1) % self.capacity]) / 1e6

    def values_ms(self, name: str) -> np.ndarray:
        n = min(self._n[name], self.capacity)
        return self._buf[name][:n] / 1e6

    def stats(self, name: str) -> StageStats | None:
        v = self.values_ms(name)
        if v.size == 0:
            return None
        p50, p95, p99 = np.percentile(v, [50, 95, 99])
        return StageStats(p50=float(p50), p95=float(p95), p99=float(p99), mean=float(v.mean()))


@dataclass
class _Counters:
    frames: int = 0
    nerve_frames: int = 0
    stale_frames: int = 0
    not_analysed_frames: int = 0  # shown without analysis (ROI does not fit): they count toward max_frames


class Pipeline:
    """Wires a source, the analysis, the overlay and a sink into the live loop.

    plan: the settled run (`edge.plan.resolve_run`); runner: its model, loaded (`RunPlan.open_runner`).
    The pipeline owns neither the source nor the sink: the caller opens and
    closes them (context managers), so errors opening them surface before the
    loop starts. ``stop`` is the one event that ends everything; the CLI sets it
    from SIGTERM/SIGINT/SIGHUP. ``commands`` carries the operator's quit and
    record-toggle requests (signal handlers, the sink's keys).

    What observers may read: `snapshot` (counters), `stats` (percentiles), ``plan``,
    ``cfg``, ``roi``, ``flips``, ``runner``, ``source``, ``sink``, ``overlay``,
    ``commands``, ``notices`` (which they may also write), ``state``, ``last_error``.
    The rest is the loop's own.
    """

    def __init__(
        self,
        plan: RunPlan,
        source: FrameSource,
        runner: ModelRunner,
        sink: Sink,
        *,
        stop: threading.Event | None = None,
        drop_frames: bool = True,
        observers: Sequence[PipelineObserver] = (),
        annotate: Callable[[Frame], None] | None = None,
        commands: CommandChannel | None = None,
    ):
        if runner.spec != plan.spec:
            raise ValueError(f"runner {runner.model_path} is not the plan's model {plan.model_path}")
        self.plan = plan
        cfg = self.cfg = plan.config
        self.source = source
        self.runner = runner
        self.sink = sink
        self.stop = stop or threading.Event()
        self.drop_frames = drop_frames
        #: draws on ``frame.image`` after the overlay, before the sink (e.g. the demo's expert boxes); never
        #: seen by the network
        self.annotate = annotate
        self.observers: list[PipelineObserver] = list(observers)
        #: operator commands (quit, record toggle) from signal handlers and the sink's keys
        self.commands = commands or CommandChannel()
        self._quit_seen = self.commands.count(QUIT)
        #: operator-facing lines from observers, shown on the status line (key -> text)
        self.notices: dict[str, str] = {}
        #: "starting" | "live" | "stale" | "not_analysed" | "no_signal" | "stopped"
        self.state = "starting"
        self.last_error: str | None = None
        self._observer_errors: dict[tuple[int, str], float] = {}
        #: where the ultrasound image lies in the frames (None: the whole frame)
        self.roi = plan.roi_for(source)
        #: (horizontal, vertical) mirroring of the network input (site profile)
        self.flips = plan.flips
        self.analyzer = Analyzer(runner, plan.rules, self.roi, plan.flips)
        self.overlay = Overlay(cfg.overlay, self.roi, plan.rules.mask_threshold)
        self._timer = StageTimer()
        self._counters = _Counters()
        self._slot = LatestSlot(lossless=not drop_frames, stop=self.stop)
        self._capture = CaptureThread(source, self._slot, self.stop, self._timer)
        self._t_run0 = 0.0
        self._last_shape: tuple[int, int] | None = None
        self._roi_warned_shape: tuple[int, int] | None = None

    # -- per-frame work -------------------------------------------------------------------------

    def _roi_fits(self, image: np.ndarray) -> bool:
        h, w = image.shape[:2]
        if self.roi is None or self.roi.clip_to(w, h):
            return True
        if self._roi_warned_shape != (h, w):
            logger.error(
                "ROI %s does not fit the %dx%d frame (capture resolution changed?): showing the picture "
                "without analysis until it fits; recalibrate for this resolution",
                self.roi,
                w,
                h,
            )
            self._roi_warned_shape = (h, w)
        return False

    def process(self, frame: Frame) -> Decision | None:
        """Run one frame through the hot path and show it. Returns the decision (None if not analysed)."""
        timer = self._timer
        timer.start()
        self._last_shape = frame.image.shape[:2]
        status_fps = self._current_fps()
        if not self._roi_fits(frame.image):
            self.analyzer.reset()
            h, w = frame.image.shape[:2]
            status = OverlayStatus(
                state="not_analysed", fps=status_fps, latency_ms=(time.monotonic_ns() - frame.t_capture_ns) / 1e6,
                untrained=self.runner.spec.untrained, model_name=self.runner.spec.name,
                message=self._message(f"ROI does not fit {w}x{h}: recalibrate"),
            )
            self.overlay.draw(frame.image, Decision(False, 0.0, None), status)
            if self.annotate is not None:
                self.annotate(frame)
            self.sink.show(frame.image)
            self.state = "not_analysed"
            self._counters.not_analysed_frames += 1
            if self.observers:
                self._notify_frame(FrameEvent(
                    seq=self._counters.frames, frame=frame, roi_raw=None, model_input=None, result=None,
                    decision=None, state="not_analysed",
                    latency_ms=(time.monotonic_ns() - frame.t_capture_ns) / 1e6,
                ))
            return None
        raw = None
        if self._needs_raw:
            raw = crop_roi(frame.image, self.roi).copy()
        analysis = self.analyzer.analyse(frame.image, timer.lap)
        x, result, decision = analysis.model_input, analysis.result, analysis.decision
        age_ms = (time.monotonic_ns() - frame.t_capture_ns) / 1e6
        stale = age_ms > self.cfg.overlay.stale_after_ms
        status = OverlayStatus(
            state="stale" if stale else "live",
            fps=status_fps,
            latency_ms=age_ms,
            untrained=self.runner.spec.untrained,
            model_name=self.runner.spec.name,
            message=self._message(None),
        )
        self.overlay.draw(frame.image, decision, status)
        if self.annotate is not None:
            self.annotate(frame)
        timer.lap("overlay")
        self.sink.show(frame.image)
        timer.lap("sink")
        timer.finish()
        latency_ns = time.monotonic_ns() - frame.t_capture_ns
        timer.record_one("latency", latency_ns)
        c = self._counters
        seq = c.frames
        c.frames += 1
        c.nerve_frames += decision.nerve
        c.stale_frames += stale
        self.state = status.state
        if self.observers:
            stages = {s: v for s in STAGES if (v := timer.last_ms(s)) is not None}
            self._notify_frame(FrameEvent(
                seq=seq, frame=frame, roi_raw=raw, model_input=x, result=result, decision=decision,
                state=status.state, stages_ms=stages, total_ms=timer.last_ms("total"), latency_ms=latency_ns / 1e6,
            ))
        return decision

    # -- observers ------------------------------------------------------------------------------

    @property
    def _needs_raw(self) -> bool:
        return any(o.needs_raw for o in self.observers)

    def _message(self, own: str | None) -> str | None:
        """The status line's operator message: the loop's own first, then observers' notices."""
        parts = [own] if own else []
        parts.extend(self.notices.values())
        return " | ".join(parts) if parts else None

    def _call_observers(self, method: str, *args: object) -> None:
        for obs in self.observers:
            try:
                getattr(obs, method)(self, *args)
            except Exception as e:  # noqa: BLE001 - an observer must never stop the live overlay
                key = (id(obs), method)
                now = time.monotonic()
                if now - self._observer_errors.get(key, -1e9) >= 10.0:
                    self._observer_errors[key] = now
                    logger.exception("observer %s.%s failed (ignored; the overlay runs on)",
                                     type(obs).__name__, method)
                self.last_error = f"{type(obs).__name__}.{method}: {e}"

    def _notify_frame(self, event: FrameEvent) -> None:
        self._call_observers("on_frame", event)

    def _show_no_signal(self) -> None:
        h, w = self._last_shape or (420, 580)
        # Sources that reconnect (v4l2, picamera2) say whether the device itself is gone.
        status = self.source.status()
        message = "capture device not connected: retrying" if status and status.connected is False else None
        self.sink.show(self.overlay.no_signal(h, w, message))
        self.analyzer.reset()
        self.state = "no_signal"

    # -- the loop -------------------------------------------------------------------------------

    def _current_fps(self) -> float:
        el = time.monotonic() - self._t_run0
        return self._counters.frames / el if el > 0 else 0.0

    def run(self, max_frames: int | None = None) -> Stats:
        """Process frames until ``stop`` is set, ``max_frames`` are done, or a finite source ends.

        Returns the final `Stats`. Re-raises an exception from the capture thread
        (the CLI turns it into an exit code) after stopping cleanly.
        """
        max_frames = max_frames or self.cfg.loop.max_frames
        ocfg = self.cfg.overlay
        interval = self.cfg.loop.stats_interval_s
        self._t_run0 = time.monotonic()
        next_stats = self._t_run0 + interval
        last_frame_t = self._t_run0
        next_no_signal = 0.0
        no_signal = False
        logger.info(
            "running: source %s -> model %s (%s, %d threads) -> sink %s; roi %s",
            self.source.describe(), self.runner.spec.name, self.runner.backend, self.runner.threads,
            self.sink.describe(), self.roi,
        )
        self._capture.start()
        self._call_observers("on_start")
        stats: Stats | None = None
        try:
            while not self.stop.is_set():
                frame = self._slot.get(timeout=0.1)
                now = time.monotonic()
                if frame is None:
                    if self._slot.closed:
                        break
                    silent = now - last_frame_t
                    if silent >= ocfg.no_signal_after_s and now >= next_no_signal:
                        if not no_signal:
                            logger.warning("no signal: no frame for %.1f s", silent)
                            no_signal = True
                        self._show_no_signal()
                        next_no_signal = now + 0.5
                    if self.observers:
                        self._call_observers("on_idle", no_signal)
                else:
                    if no_signal:
                        logger.info("signal back after %.1f s", now - last_frame_t)
                        no_signal = False
                    last_frame_t = now
                    self.process(frame)
                    if max_frames and self._counters.frames + self._counters.not_analysed_frames >= max_frames:
                        break
                for command in self.sink.take_commands():
                    self.commands.request(command)
                if self.commands.count(QUIT) != self._quit_seen:
                    logger.info("quit requested by the operator")
                    break
                if now >= next_stats:
                    self._log_stats()
                    next_stats = now + interval
        finally:
            self.stop.set()
            self._capture.join(timeout=2.0)
            if self._capture.is_alive():
                logger.warning("capture thread did not stop within 2 s (blocked in the driver?)")
            if self._capture.error is None:
                stats = self.stats()
            else:
                self.last_error = f"capture: {self._capture.error}"
            self.state = "stopped"
            self._call_observers("on_stop", stats)
        if self._capture.error is not None:
            raise self._capture.error
        self._log_stats(final=True)
        return stats

    def snapshot(self) -> PipelineSnapshot:
        """The loop's counters now (cheap: no percentiles; `stats` has those). Safe from the processing thread."""
        el = time.monotonic() - self._t_run0 if self._t_run0 else 0.0
        c = self._counters
        return PipelineSnapshot(
            state=self.state, frames=c.frames, nerve_frames=c.nerve_frames, stale_frames=c.stale_frames,
            not_analysed_frames=c.not_analysed_frames, captured=self._capture.captured, dropped=self._slot.dropped,
            elapsed_s=el, fps=c.frames / el if el > 0 else 0.0, source=self.source.status(),
            last_error=self.last_error,
        )

    def stats(self, stages: Sequence[str] | None = None) -> Stats:
        """Counters and per-stage percentiles since the start. ``stages``: only these (None: every stage and
        "total"); percentiles cost a sort per stage, so observers that need one or two name them."""
        el = max(time.monotonic() - self._t_run0, 1e-9)
        c = self._counters
        names = (*STAGES, "total") if stages is None else stages
        stages = {s: st for s in names if (st := self._timer.stats(s)) is not None}
        return Stats(
            frames=c.frames,
            captured=self._capture.captured,
            dropped=self._slot.dropped,
            nerve_frames=c.nerve_frames,
            elapsed_s=el,
            fps=c.frames / el,
            stages=stages,
            latency=self._timer.stats("latency"),
        )

    def _log_stats(self, final: bool = False) -> None:
        s = self.stats()
        parts = [f"{s.fps:.1f} fps", f"frames {s.frames}", f"dropped {s.dropped}", f"nerve {s.nerve_frames}"]
        if s.latency:
            parts.append(f"latency p50 {s.latency.p50:.1f} p95 {s.latency.p95:.1f} ms")
        parts.append(" ".join(f"{k} {v.p50:.2f}" for k, v in s.stages.items() if k != "total"))
        logger.info("%s%s", "final: " if final else "", " | ".join(parts))
