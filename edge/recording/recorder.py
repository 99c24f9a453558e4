"""`Recorder`: the observer of the live loop that records sessions for review, off the hot path.

Its ``on_frame`` runs on the processing thread and only *offers* a small record to
the writer thread (`edge.recording.writer`): references to arrays the loop hands over
for good (the private ROI copy, the model's mask, the full frame when opted in) plus
a copy of the 96x128 model input. On the writer thread `edge.recording.worker` does
the rest: the rules (`edge.recording.trigger`) decide what to write, in the session
format (`edge.recording.session`), within the quota and free space
(`edge.recording.storage`). When the writer falls behind (slow SD card, big ROI)
the queue is full and frames are dropped and counted; the overlay never waits for
the disk.

The full video-out frame carries the machine's user interface, often with patient
details: it is written only when the config opts in. Blanking regions from the
calibration profile (full-frame pixels) are zeroed in every image written.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.config import RecordConfig
from edge.control import RECORD_TOGGLE, CommandChannel
from edge.overlay import Overlay
from edge.pipeline import FrameEvent, PipelineObserver
from edge.recording.session import open_private, run_info
from edge.recording.storage import Storage
from edge.recording.worker import FrameItem, SessionWorker, ToggleItem
from edge.recording.writer import WriterThread
from edge.types import Roi

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from edge.pipeline import Pipeline
    from edge.types import Stats

logger = logging.getLogger(__name__)

NOTICE_KEY = "record"
CLOSE_TIMEOUT_S = 10.0  # on_stop waits this long for the queue to drain...
ABORT_TIMEOUT_S = 5.0  # ...then this long for the writer to drop the rest and close the session
_NOTICES = {"recording": "REC", "stopped_disk_full": "RECORDING STOPPED: DISK FULL", "error": "RECORDING ERROR"}


class Recorder(PipelineObserver):
    """Records sessions of the live loop for review (layout: `edge.recording.session`).

    cfg: the ``record`` section (mode, dir, pre/post roll, quota, retention, full_frame).
    blank: regions to zero in everything written, in full video-out frame pixels
        (from the calibration profile's ``blank_rois``).
    profile_path: the calibration profile in use, recorded in the manifest with its sha256.
    storage: quota and free space of ``cfg.dir`` (default: `Storage` of ``cfg`` on the real disk).
    open_file: makes every new file of a session (default 0600, O_EXCL).
    close_timeout_s: how long ``on_stop`` waits for the queue to drain before dropping the rest.

    Rules: `edge.recording.trigger`. Manual mode is toggled by the command channel's
    ``record_toggle`` (SIGUSR1 in `nerveseg run`, the window sink's ``r`` key), counted
    from ``on_start``. The loop must know where the ultrasound image is
    (``pipeline.roi``) unless ``full_frame`` opts in: without one the "ROI" would be the
    machine's whole interface, and the recorder refuses to start (state ``error``).

    state: off | idle | recording | stopped_disk_full | error. Thread use: ``on_*`` run
    on the processing thread; `health` may be called from any thread.
    """

    name = "recorder"

    def __init__(self, cfg: RecordConfig, blank: Sequence[Roi] = (), profile_path: str | Path | None = None, *,
                 storage: Storage | None = None, open_file: Callable[..., int] = open_private,
                 close_timeout_s: float = CLOSE_TIMEOUT_S):
        if cfg.mode == "off":
            raise ValueError("Recorder needs record.mode always, on-detection or manual, not off")
        self.cfg = cfg
        storage = storage or Storage(cfg)
        self.root = storage.root
        self._close_timeout_s = close_timeout_s
        self._worker = SessionWorker(cfg, storage, blank, Path(profile_path) if profile_path else None,
                                     aborting=lambda: self._writer.aborting, open_file=open_file)
        w = self._worker
        self._writer = WriterThread(cfg.queue_frames, w.handle, max_bytes=cfg.queue_mb * 1e6, tick=w.tick,
                                    setup=w.setup, on_error=w.on_error, discard=w.discard, finish=w.finish,
                                    name="nerveseg-recorder")
        self._commands: CommandChannel | None = None
        self._toggles_seen = 0
        self._carry_toggles = 0  # toggles of frames the full queue dropped: they must not be lost
        # Manual retry after a full disk: sent here, marked done by the writer. While one is in flight,
        # frames are still copied and queued, so the session starts with the toggle's frame.
        self._retries_sent = 0
        self._offer_ns_total = 0
        self._offer_ns_max = 0
        self._offers = 0
        self._notice_shown: str | None = None

    # -- state (any thread) ---------------------------------------------------------------------

    @property
    def state(self) -> str:
        st = self._worker.trigger.state
        return "off" if st in ("idle", "recording") and not self._worker.running else st

    @property
    def last_error(self) -> str | None:
        return self._worker.last_error

    @property
    def frames_written(self) -> int:
        return self._worker.frames_written

    @property
    def sessions_started(self) -> int:
        return self._worker.sessions_started

    @property
    def frames_dropped(self) -> int:
        """Frames lost because the writer was behind (queue full, in frames or ``record.queue_mb``)."""
        return self._writer.dropped

    @property
    def needs_raw(self) -> bool:  # type: ignore[override]
        # No ROI copy per frame while recording is stopped (full disk, error) or not running, except
        # for the frame that carries a manual toggle: a retry after a full disk starts with it.
        state = self.state
        if state in ("idle", "recording"):
            return True
        return state == "stopped_disk_full" and (self._toggle_pending() or self._retry_in_flight())

    def health(self) -> dict[str, Any]:
        """JSON-able status for the health file: state, session, counts, last error, hot-path cost."""
        w = self._worker
        s = w.session
        return {
            "name": self.name,
            "mode": self.cfg.mode,
            "state": self.state,
            "dir": str(self.root),
            "session": str(s.path) if s is not None else None,
            "session_frames": s.frames if s is not None else 0,
            "sessions_started": w.sessions_started,
            "frames_written": w.frames_written,
            "frames_dropped": self.frames_dropped + w.dropped_at_stop,
            "bytes_written": w.bytes_written,
            "queue": self._writer.qsize(),
            "queue_mb": round(self._writer.queued_bytes / 1e6, 1),
            "queue_mb_max": round(self._writer.queued_bytes_max / 1e6, 1),
            "frames_dropped_queue_mb": self._writer.dropped_over_bytes,
            "offer_ms_mean": round(self._offer_ns_total / self._offers / 1e6, 4) if self._offers else None,
            "offer_ms_max": round(self._offer_ns_max / 1e6, 3) if self._offers else None,
            "last_error": w.last_error,
        }

    # -- PipelineObserver -----------------------------------------------------------------------

    def on_start(self, pipeline: Pipeline) -> None:
        self._commands = pipeline.commands
        self._toggles_seen = pipeline.commands.count(RECORD_TOGGLE)
        if pipeline.roi is None and not self.cfg.full_frame:
            # The "ROI" would be the whole video-out frame: the machine's interface with patient details.
            self._worker.refuse("no ROI: the loop would record the whole video-out frame; set roi or profile "
                                "(nerveseg calibrate), or record.full_frame: true to record whole frames")
            return
        # The writer's own overlay: same settings as the live one, drawing on ROI-sized images.
        overlay = Overlay(pipeline.cfg.overlay, None, pipeline.plan.rules.mask_threshold)
        self._worker.begin(pipeline.roi, run_info(pipeline), overlay, pipeline.source.nominal_fps)
        self._writer.start()

    def on_frame(self, pipeline: Pipeline, event: FrameEvent) -> None:
        t0 = time.perf_counter_ns()
        self._show_notice(pipeline)
        if not self._writer.started:
            return  # never started (no ROI)
        toggles = self._take_toggles()
        retry = 0
        if self.state not in ("idle", "recording"):
            retry = self._retry_for(toggles)
            if not toggles and not self._retry_in_flight():
                return  # stopped: only a manual toggle (a retry) still has to reach the writer
        d = event.decision
        r = event.result
        item = FrameItem(
            seq=event.seq,
            source_seq=event.frame.seq,
            t_ns=event.frame.t_capture_ns,
            raw=event.roi_raw,
            # The loop hands the frame over for good after showing it (sources never reuse an array
            # they returned), so a reference is enough: no 1080p copy on the hot path.
            full=event.frame.image if self.cfg.full_frame and event.roi_raw is not None else None,
            model_input=event.model_input.copy() if event.model_input is not None else None,
            mask=r.mask if r is not None else None,
            shown_mask=d.mask if d is not None else None,
            p_nerve=r.p_nerve if r is not None else None,
            p_vote=d.p_vote if d is not None else None,
            nerve=bool(d.nerve) if d is not None else False,
            state=event.state,
            stages_ms=event.stages_ms,
            latency_ms=event.latency_ms,
            toggles=toggles,
            frame_size=(event.frame.image.shape[1], event.frame.image.shape[0]),
            retry=retry,
        )
        # The offer stamps item.drops here, not on the writer (up to a queue behind): a drop belongs to
        # the session that holds the frames around it.
        if not self._writer.offer(item):
            self._carry_toggles += toggles
        dt = time.perf_counter_ns() - t0
        self._offers += 1
        self._offer_ns_total += dt
        self._offer_ns_max = max(self._offer_ns_max, dt)

    def on_idle(self, pipeline: Pipeline, no_signal: bool) -> None:
        self._show_notice(pipeline)
        if not self._writer.started:
            return
        # A toggle while no frame arrives acts now (and is logged now), not at the next frame.
        toggles = self._take_toggles()
        if toggles and not self._writer.offer(ToggleItem(toggles, self._retry_for(toggles)), frame=False):
            self._carry_toggles += toggles

    def on_stop(self, pipeline: Pipeline, stats: Stats | None) -> None:
        w = self._writer
        w.stop()
        if not w.join(self._close_timeout_s):
            # The writer is a daemon thread: left alone it would die with the process, mid-session,
            # leaving no final manifest and unreadable videos. Drop the backlog and close instead.
            logger.warning("recorder: writer still busy after %.0f s (slow disk?); dropping the %d frames "
                           "still queued and closing the session", self._close_timeout_s, w.qsize())
            w.abort()
            if not w.join(ABORT_TIMEOUT_S):
                s = self._worker.session  # read once: the writer may close it meanwhile
                logger.error("recorder: writer did not finish within %.0f s more; the session %s may lack "
                             "its final manifest and videos (its PNGs and frames.jsonl are complete)",
                             ABORT_TIMEOUT_S, s.path if s is not None else "-")
        pipeline.notices.pop(NOTICE_KEY, None)
        self._notice_shown = None

    # -- processing-thread helpers --------------------------------------------------------------

    def _retry_in_flight(self) -> bool:
        return self._retries_sent != self._worker.retries_done

    def _retry_for(self, toggles: int) -> int:
        """The retry number ``toggles`` carry while stopped on a full disk in manual mode (0: none)."""
        if toggles and self.cfg.mode == "manual" and self.state == "stopped_disk_full":
            self._retries_sent += 1
            return self._retries_sent
        return 0

    def _toggle_pending(self) -> bool:
        """A toggle request not yet taken (read only: safe before the frame is processed)."""
        c = self._commands
        return bool(self._carry_toggles) or (c is not None and c.count(RECORD_TOGGLE) != self._toggles_seen)

    def _take_toggles(self) -> int:
        n, self._carry_toggles = self._carry_toggles, 0
        if self._commands is not None:
            count = self._commands.count(RECORD_TOGGLE)
            n += count - self._toggles_seen
            self._toggles_seen = count
        return n

    def _show_notice(self, pipeline: Pipeline) -> None:
        # notices is read by the processing thread: only that thread changes it (here).
        text = _NOTICES.get(self.state)
        if text != self._notice_shown:
            if text:
                pipeline.notices[NOTICE_KEY] = text
            else:
                pipeline.notices.pop(NOTICE_KEY, None)
            self._notice_shown = text
