"""The recorder's writer-thread side: the trigger's actions carried out as session files, within the quota.

`SessionWorker` gets each queued frame (`FrameItem`) from `edge.recording.writer`,
asks `edge.recording.trigger` what to do with it, and writes sessions with
`edge.recording.files`, asking `edge.recording.storage` before each frame whether it
fits. A full disk or an error stops recording (the trigger's state says which); the
live loop never sees an exception from here.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.config import RecordConfig
from edge.overlay import Overlay
from edge.profile import apply_blank, blank_in_roi
from edge.recording.files import SessionFiles
from edge.recording.session import (
    encode_mask,
    encode_raw,
    frame_line,
    make_private_dir,
    open_private,
    render_annotated,
    start_manifest,
)
from edge.recording.storage import RESERVE_BYTES, BelowMinFree, Storage, is_disk_full, remove_stale_reserves
from edge.recording.trigger import Action, Close, Dropped, Open, Trigger, Write
from edge.spec import sha256_file
from edge.types import Roi

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class FrameItem:
    """One frame on its way from the processing thread to the writer (arrays owned by the item).
    A `edge.recording.trigger.TriggerFrame`."""

    seq: int
    source_seq: int
    t_ns: int  # capture time, monotonic ns
    raw: np.ndarray | None  # ROI crop as captured (private copy from the pipeline); None = not analysed
    full: np.ndarray | None  # the whole annotated frame as shown (only with full_frame)
    model_input: np.ndarray | None  # copy of the normalised input
    mask: np.ndarray | None  # network output at model size (owned by the Result)
    shown_mask: np.ndarray | None  # smoothed mask the overlay drew (owned by the Decision)
    p_nerve: float | None
    nerve: bool
    state: str
    stages_ms: dict[str, float]
    latency_ms: float
    toggles: int  # manual toggle requests that arrived before this frame
    frame_size: tuple[int, int]  # (w, h) of the video-out frame
    drops: int = 0  # frames dropped (queue full) between the previous queued frame and this one
    retry: int = 0  # > 0: carries a manual retry after a full disk (its number)
    p_vote: float | None = None  # the running average of P(nerve) the presence thresholds compared

    @property
    def analysed(self) -> bool:
        return self.raw is not None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.raw, self.full, self.model_input) if a is not None)


@dataclass(slots=True)
class ToggleItem:
    """Manual toggles taken while no frame arrived (no signal), on their way to the writer."""

    toggles: int
    retry: int = 0


def disk_full_hint(e: BaseException, cfg: RecordConfig) -> str:
    """What the operator can do about a full disk ``e``: the setting that stopped recording is named."""
    if isinstance(e, BelowMinFree):
        # Our own floor, not the kernel's: the disk still has room, the config asks to keep it free.
        return (f"Free space on that disk (record.min_free_mb = {cfg.min_free_mb:g} MB must stay free) or lower "
                "record.min_free_mb")
    # The disk itself is full: the recordings' quota (record.max_gb) decides how much of it they may use.
    return f"Free space on that disk, or lower record.max_gb (now {cfg.max_gb:g} GB) so fewer sessions are kept"


class SessionWorker:
    """Writes the sessions of one recorder; every method but `begin` runs on the writer thread.

    cfg, storage, blank, profile_path, open_file: as `edge.recording.recorder.Recorder` takes them.
    aborting(): True once the stop ran out of time (the rest of a pre-roll is then dropped).

    Read from other threads (one writer each): ``trigger.state``, ``session``, ``running``,
    the counters, ``last_error``, ``retries_done``.
    """

    def __init__(self, cfg: RecordConfig, storage: Storage, blank: Sequence[Roi], profile_path: Path | None,
                 aborting: Callable[[], bool], open_file: Callable[..., int] = open_private):
        self.cfg = cfg
        self.storage = storage
        self.root = storage.root
        self.blank = tuple(blank)
        self.profile_path = profile_path
        self._aborting = aborting
        self._open_file = open_file
        self.trigger = Trigger.from_config(cfg)
        self.session: SessionFiles | None = None
        self.running = False  # between begin and finish
        self.retries_done = 0
        self.frames_written = 0
        self.bytes_written = 0
        self.sessions_started = 0
        self.dropped_at_stop = 0  # never written: still queued (or pre-roll) when the stop ran out of time
        self.last_error: str | None = None
        self._discarded = 0  # frames left in the queue at an aborted stop
        self._last_t_ns: int | None = None
        self._fps_est: float | None = None
        self._profile_sha256: str | None = None
        # the run's context, from begin
        self._roi: Roi | None = None
        self._blank_roi: list[tuple[int, int, int, int]] = []
        self._blank_full = [(b.x, b.y, b.x + b.w, b.y + b.h) for b in self.blank]
        self._wall_offset_ns = 0
        self._info: dict[str, Any] = {}
        self._overlay: Overlay | None = None
        self._nominal_fps: float | None = None

    def begin(self, roi: Roi | None, info: dict[str, Any], overlay: Overlay, nominal_fps: float | None) -> None:
        """The run's context (processing thread, before the writer thread starts). overlay: made with
        ``roi=None``, the live overlay's settings. info: `edge.recording.session.run_info`."""
        self._roi = roi
        self._blank_roi = blank_in_roi(self.blank, roi)
        self._wall_offset_ns = time.time_ns() - time.monotonic_ns()
        self._info = info
        self._overlay = overlay
        self._nominal_fps = nominal_fps
        self.running = True

    def refuse(self, reason: str) -> None:
        """Recording cannot start at all (processing thread, instead of `begin`)."""
        self.last_error = reason
        self.trigger.fail(reason)
        logger.error("recording off: %s", reason)

    # -- WriterThread callbacks -----------------------------------------------------------------

    def setup(self) -> None:
        try:
            make_private_dir(self.root)
            if self.profile_path is not None:
                try:
                    self._profile_sha256 = sha256_file(self.profile_path)
                except OSError as e:
                    logger.warning("recorder: cannot hash calibration profile %s: %s", self.profile_path, e)
            remove_stale_reserves(self.root)
            self.storage.retention(None)
            logger.info("recorder: mode %s into %s (pre-roll %.1f s, post-roll %.1f s, quota %.3g GB, %g days)",
                        self.cfg.mode, self.root, self.cfg.pre_roll_s, self.cfg.post_roll_s, self.cfg.max_gb,
                        self.cfg.max_days)
        except Exception as e:  # noqa: BLE001 - an unusable folder is an error, full disk or not
            self.fail(e)

    def handle(self, entry: FrameItem | ToggleItem) -> None:
        try:
            if isinstance(entry, ToggleItem):
                self.trigger.toggle(entry.toggles)
                return
            self._track_fps(entry.t_ns)
            s = self.session
            self._apply(self.trigger.step(entry, session_bytes=s.data_bytes if s is not None else 0))
        finally:
            if entry.retry:
                self.retries_done = entry.retry

    def tick(self) -> None:
        st = self.storage
        if self.trigger.state in ("idle", "recording") and st.retention_due():
            self._retention()
        if self.session is not None and st.free_check_due():
            st.check_min_free()  # raises ENOSPC: the writer thread reports it as a full disk

    def on_error(self, e: BaseException) -> None:
        if is_disk_full(e):
            self.disk_full(e)
        else:
            self.fail(e)

    def discard(self, entry: FrameItem | ToggleItem) -> None:
        if isinstance(entry, FrameItem):
            self.dropped_at_stop += 1
            self._discarded += 1
            self._apply(self.trigger.discard(entry))

    def finish(self, late_drops: int) -> None:
        reason = "loop ended"
        if self._aborting():
            reason = f"loop ended; {self._discarded} queued frames dropped (writer too slow at stop)"
        try:
            self._apply(self.trigger.finish(reason, late_drops))
        finally:
            self.running = False

    # -- stopping -------------------------------------------------------------------------------

    def disk_full(self, e: BaseException) -> None:
        self.last_error = f"disk full: {e}"
        logger.error("recording stopped: disk full under %s (%s); the live overlay runs on. %s, then restart "
                     "(manual mode: toggle to retry)", self.root, e, disk_full_hint(e, self.cfg))
        self._stop_actions(self.trigger.disk_full())

    def fail(self, e: BaseException) -> None:
        self.last_error = f"{type(e).__name__}: {e}"
        logger.error("recording stopped: %s; the live overlay runs on", self.last_error,
                     exc_info=not isinstance(e, OSError))
        self._stop_actions(self.trigger.fail(f"error: {e}"))

    def _stop_actions(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Close):
                try:
                    self._close(a.reason)
                except Exception as e:  # noqa: BLE001 - closing after a failure is best effort
                    logger.error("recorder: closing the session failed: %s", e)

    # -- carrying out the trigger's actions -----------------------------------------------------

    def _apply(self, actions: list[Action]) -> None:
        """In order; stop as soon as recording stopped (over quota, full disk)."""
        for a in actions:
            if self.trigger.state not in ("idle", "recording"):
                return
            if isinstance(a, Open):
                self._open(a)
            elif isinstance(a, Write):
                s = self.session
                if s is None:
                    return
                if a.pre_roll and self._aborting():
                    s.dropped += 1  # the rest of the pre-roll is never written
                    self.dropped_at_stop += 1
                    continue
                self._write(a.frame, a.pre_roll)
            elif isinstance(a, Dropped):
                if self.session is not None:
                    self.session.dropped += a.n
            elif isinstance(a, Close):
                self._close(a.reason)

    def _track_fps(self, t_ns: int) -> None:
        if self._last_t_ns is not None and t_ns > self._last_t_ns:
            inst = 1e9 / (t_ns - self._last_t_ns)
            self._fps_est = inst if self._fps_est is None else 0.9 * self._fps_est + 0.1 * inst
        self._last_t_ns = t_ns

    def _retention(self) -> None:
        s = self.session
        self.storage.retention(s.path if s is not None else None)

    def _open(self, a: Open) -> None:
        """Open a session for ``a`` (its pre-roll and trigger frame follow as writes)."""
        self._retention()
        self.storage.check_min_free()
        started_ns = time.time_ns()
        manifest = start_manifest(
            started_ns,
            trigger={"mode": self.cfg.mode, "reason": a.reason, "seq": a.trigger.seq, "pre_roll_frames": a.pre_roll},
            fps=self._fps_est or self._nominal_fps or 30.0,
            roi=self._roi, blank=self.blank, full_frame=self.cfg.full_frame,
            profile=None if self.profile_path is None else {"path": str(self.profile_path),
                                                            "sha256": self._profile_sha256},
            info=self._info,
            serial=self.storage.next_serial(),
        )
        self.session = SessionFiles.create(self.root, started_ns, manifest, RESERVE_BYTES, self._open_file)
        self.sessions_started += 1
        self.storage.session_opened()
        logger.info("recording started: %s (%s; %d pre-roll frames)", self.session.path, a.reason, a.pre_roll)

    def _close(self, reason: str) -> None:
        s = self.session
        if s is None:
            return
        self.session = None
        s.close(reason, time.time_ns())
        self.storage.session_closed(s.path.name, s.bytes)
        logger.info("recording stopped: %s (%s): %d frames (%d pre-roll), %d dropped", s.path, reason, s.frames,
                    s.pre_roll, s.dropped)

    def _write(self, item: FrameItem, pre_roll: bool) -> None:
        s = self.session
        assert s is not None and item.raw is not None and self._overlay is not None
        # Other observers got the same arrays in their FrameEvent: blank and draw on our own copies.
        raw = item.raw.copy()
        apply_blank(raw, self._blank_roi)
        png, channels = encode_raw(raw)
        mask_png = encode_mask(item.mask) if item.mask is not None else None
        model = self._info["model"]
        line = frame_line(
            s.frames, seq=item.seq, source_seq=item.source_seq, t_capture_ns=item.t_ns,
            wall_offset_ns=self._wall_offset_ns, p_nerve=item.p_nerve, nerve=item.nerve, state=item.state,
            latency_ms=item.latency_ms, stages_ms=item.stages_ms, model_id=model["id"], raw_channels=channels,
            has_mask=mask_png is not None,
            input_crc32=zlib.crc32(item.model_input) if item.model_input is not None else None, pre_roll=pre_roll,
            p_vote=item.p_vote,
        )
        videos = 2 if item.full is not None else 1
        n = s.write_frame(line, png, mask_png, check_room=lambda nbytes: self.storage.check_room(nbytes, videos))
        # Recorded. The videos come after the JSONL line: a frame in a video is always a recorded frame.
        if s.manifest["frame_size"] is None:
            s.manifest["frame_size"] = list(item.frame_size)
        self.frames_written += 1
        self.bytes_written += n
        # The video frame is drawn on the copy once its PNG is encoded.
        annotated = render_annotated(
            self._overlay, raw, item.nerve, (item.p_nerve if item.p_vote is None else item.p_vote) or 0.0,
            item.shown_mask, item.state,
            self._fps_est or 0.0, item.latency_ms, model["untrained"], model["name"],
        )
        s.video_frame(annotated, full=False)
        if item.full is not None:
            full = item.full.copy()
            apply_blank(full, self._blank_full)
            s.video_frame(full, full=True)
        s.stat_videos()  # two stat calls: the quota counts the mp4s as FFmpeg flushes them
        if self.storage.over_quota(s.bytes):
            self._over_quota()

    def _over_quota(self) -> None:
        """Over record.max_gb: delete the oldest finished sessions.

        The open session never reaches the quota alone (the trigger splits it at a share of
        it), so deleting finished sessions is enough unless they cannot be deleted; then
        recording stops rather than overrun the quota.
        """
        s = self.session
        assert s is not None
        self._retention()
        if self.storage.over_quota(s.bytes):
            self.fail(self.storage.quota_error(s.bytes))
