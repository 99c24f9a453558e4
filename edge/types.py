"""Values that cross stage boundaries. All frozen; arrays inside are owned by the value.

Times are ``time.monotonic_ns()`` integers unless a name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One captured video frame.

    image: HxWx3 uint8 BGR (OpenCV order) or HxW uint8 gray, full video-out size.
        The source hands ownership to the consumer: it never writes into an
        array it has already returned.
    seq: source frame counter, starting at 0, strictly increasing (gaps = frames the
        source itself skipped).
    t_capture_ns: monotonic time the frame was obtained from the device/decoder.
    """

    image: np.ndarray
    seq: int
    t_capture_ns: int


@dataclass(frozen=True)
class Roi:
    """Rectangle of the ultrasound image inside the video-out frame, in pixels."""

    x: int
    y: int
    w: int
    h: int

    def clip_to(self, width: int, height: int) -> bool:
        """True when the ROI lies fully inside a ``width`` x ``height`` frame."""
        return self.x >= 0 and self.y >= 0 and self.x + self.w <= width and self.y + self.h <= height


@dataclass(frozen=True)
class Result:
    """What the network said about one frame.

    mask: HxW float32 in [0, 1], probability of nerve per pixel, at the *model's*
        input size (not the ROI size); the overlay scales it.
    p_nerve: probability that a nerve is in view, from the presence head.
    t_infer_ns: wall time of the interpreter call alone.
    """

    mask: np.ndarray
    p_nerve: float
    t_infer_ns: int


@dataclass(frozen=True)
class Decision:
    """Smoothed, displayable verdict for one frame (see `edge.presence`)."""

    nerve: bool
    p_nerve: float
    mask: np.ndarray | None  # stabilised probability map at model size; None when no nerve is shown
    # the P(nerve) the thresholds compared: the running average of p_nerve (None: p_nerve itself)
    p_vote: float | None = None

    @property
    def p_shown(self) -> float:
        """The P(nerve) that decided this frame's state (what the screen should quote)."""
        return self.p_nerve if self.p_vote is None else self.p_vote


@dataclass(frozen=True)
class StageStats:
    """Distribution of one stage's duration over a window, in milliseconds."""

    p50: float
    p95: float
    p99: float
    mean: float


@dataclass(frozen=True)
class SourceStatus:
    """What a live source says about its device (see `FrameSource.status`); every field may be unknown (None).

    connected: the device is open and delivering. reconnects: outages recovered from.
    open_failures: failed attempts to open the device. failed_reads: reads that returned no frame.
    """

    connected: bool | None = None
    reconnects: int | None = None
    open_failures: int | None = None
    failed_reads: int | None = None


@dataclass(frozen=True)
class PipelineSnapshot:
    """The loop's counters at one moment: what observers (health file, watchdog, bench) may read.

    frames: processed and shown with an analysis; not_analysed_frames: shown without one (ROI does not fit);
    stale_frames: shown marked STALE; nerve_frames: decision "nerve"; captured / dropped: frames the capture
    thread obtained / overwrote in the hand-off slot; elapsed_s: since the loop started; fps: processed frames
    per second since then; state: "starting" | "live" | "stale" | "not_analysed" | "no_signal" | "stopped";
    source: the source's own status (None when it has nothing to say).
    """

    state: str
    frames: int
    nerve_frames: int
    stale_frames: int
    not_analysed_frames: int
    captured: int
    dropped: int
    elapsed_s: float
    fps: float
    source: SourceStatus | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class Stats:
    """Snapshot of the loop's counters, for the stats log line and the summary."""

    frames: int  # frames processed end to end
    captured: int  # frames the capture thread obtained
    dropped: int  # frames overwritten in the hand-off slot before processing
    nerve_frames: int  # processed frames whose decision was "nerve"
    elapsed_s: float
    fps: float  # processed frames per second over the whole run
    stages: dict[str, StageStats] = field(default_factory=dict)
    latency: StageStats | None = None  # capture -> sink, ms
