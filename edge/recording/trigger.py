"""When to record: the trigger rules as a pure state machine (no threads, no files, no model).

`Trigger.step` takes one frame at a time (its capture time, the loop's verdict,
whether it was analysed, manual toggles and dropped frames since the previous one)
and answers with actions for whoever writes the files: `Open` a session, `Write`
a frame (pre-roll or not), count frames `Dropped` inside the session, `Close` it.

Rules, per ``record.mode``:

- ``always``: record from the first analysed frame.
- ``on-detection``: start when the verdict becomes "nerve"; stop once it has been
  "no nerve" for ``post_roll_s`` (measured in capture time, from the first such frame).
- ``manual``: each toggle flips on/off; "off" also waits ``post_roll_s``.

A start includes the pre-roll (`PreRoll`): the analysed frames captured within
``pre_roll_s`` before the triggering frame, never frames already written. Frames the
loop could not analyse are never written, and in ``always`` and ``manual`` do not
end a session either. A session longer than ``max_session_s`` (from its first
frame) or holding more than ``split_bytes`` is closed and a "continued" one opened
with the same frame; the post-roll deadline carries over.

A full disk (`Trigger.disk_full`) stops recording until, in manual mode, the next
toggle (a retry); `Trigger.fail` stops it for good.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from edge.config import RecordConfig

logger = logging.getLogger(__name__)

QUOTA_SHARE = 0.25  # a session is split at this share of record.max_gb: retention then deletes it in pieces

IDLE = "idle"
RECORDING = "recording"
DISK_FULL = "stopped_disk_full"
ERROR = "error"

_OPEN_REASON = {"always": "always", "on-detection": "nerve detected", "manual": "manual"}


class TriggerFrame(Protocol):
    """What the rules look at in a frame (the recorder's queued item, or a test's record)."""

    t_ns: int  # capture time, monotonic ns
    nerve: bool  # the loop's verdict; False when not analysed
    analysed: bool  # False: nothing to write (the loop could not analyse it)
    toggles: int  # manual toggles requested just before this frame
    drops: int  # frames lost (queue full) between the previous frame offered and this one
    nbytes: int  # memory it holds in the pre-roll ring


@dataclass(frozen=True)
class Open:
    """Open a session triggered by ``trigger``; ``pre_roll`` `Write`s of earlier frames follow."""

    reason: str  # "always" | "nerve detected" | "manual" | "continued"
    trigger: Any
    pre_roll: int


@dataclass(frozen=True)
class Write:
    frame: Any
    pre_roll: bool = False


@dataclass(frozen=True)
class Dropped:
    """``n`` frames lost within the open session's span."""

    n: int


@dataclass(frozen=True)
class Close:
    reason: str


Action = Open | Write | Dropped | Close


class PreRoll:
    """The frames of the last ``seconds`` before the newest, oldest first, holding at most ``max_bytes``
    (but always the newest frame). Like a camera's circular output: kept while nothing is recorded,
    handed to the session when one starts."""

    def __init__(self, seconds: float, max_bytes: float = float("inf")):
        self.window_ns = int(seconds * 1e9)
        self.max_bytes = max_bytes
        self._ring: deque[Any] = deque()
        self._bytes = 0
        self._truncated_logged = False

    def __len__(self) -> int:
        return len(self._ring)

    def add(self, frame: TriggerFrame) -> None:
        if self.window_ns <= 0:
            return
        ring = self._ring
        while ring and ring[0].t_ns < frame.t_ns - self.window_ns:
            self._bytes -= ring.popleft().nbytes
        ring.append(frame)
        self._bytes += frame.nbytes
        while len(ring) > 1 and self._bytes > self.max_bytes:
            self._bytes -= ring.popleft().nbytes
            if not self._truncated_logged:
                logger.warning("recorder: pre-roll shortened to %d frames to stay within record.buffer_mb = %g",
                               len(ring), self.max_bytes / 1e6)
                self._truncated_logged = True

    def take(self, t_ns: int) -> list[Any]:
        """The frames captured within the window before ``t_ns``, oldest first; the ring is emptied."""
        out = [f for f in self._ring if f.t_ns >= t_ns - self.window_ns]
        self.clear()
        return out

    def clear(self) -> None:
        self._ring.clear()
        self._bytes = 0


class Trigger:
    """The recording rules of one recorder (see the module doc). Used from one thread.

    state: ``idle`` | ``recording`` (a session is open) | ``stopped_disk_full`` | ``error``.
    Times are capture times in monotonic ns; sizes in bytes.
    """

    def __init__(
        self,
        mode: str,
        pre_roll_s: float = 0.0,
        post_roll_s: float = 0.0,
        max_session_s: float = float("inf"),
        split_bytes: float = float("inf"),
        buffer_bytes: float = float("inf"),
    ):
        if mode not in _OPEN_REASON:
            raise ValueError(f"trigger mode {mode!r}: expected one of {', '.join(_OPEN_REASON)}")
        self.mode = mode
        self.state = IDLE
        self.manual_on = False
        self.pre_roll = PreRoll(pre_roll_s, buffer_bytes)
        self._post_ns = int(post_roll_s * 1e9)
        self._max_session_ns = max_session_s * 1e9
        self._split_bytes = split_bytes
        self._off_since_ns: int | None = None  # first frame the trigger was off while recording
        self._t0_ns = 0  # capture time of the open session's first frame
        self._frames = 0  # frames the open session was told to write
        self._ignored_toggle_logged = False

    @classmethod
    def from_config(cls, cfg: RecordConfig) -> Trigger:
        return cls(cfg.mode, pre_roll_s=cfg.pre_roll_s, post_roll_s=cfg.post_roll_s,
                   max_session_s=cfg.max_session_s, split_bytes=cfg.max_gb * 1e9 * QUOTA_SHARE,
                   buffer_bytes=cfg.buffer_mb * 1e6)

    @property
    def recording(self) -> bool:
        return self.state == RECORDING

    def toggle(self, n: int = 1) -> None:
        """``n`` manual toggles (ignored, and said once, unless the mode is manual). Turning on after a
        full disk is a retry: recording may start again."""
        for _ in range(n):
            if self.mode != "manual":
                if not self._ignored_toggle_logged:
                    logger.info("recorder: toggle ignored: record.mode is %s, not manual", self.mode)
                    self._ignored_toggle_logged = True
                return
            self.manual_on = not self.manual_on
            logger.info("recorder: manual recording %s", "on" if self.manual_on else "off (after post-roll)")
            if self.manual_on and self.state == DISK_FULL:
                logger.info("recorder: retrying after the full disk")
                self.state = IDLE

    def step(self, frame: TriggerFrame, session_bytes: float = 0) -> list[Action]:
        """The actions for the next frame. session_bytes: what the open session holds so far (its split rule)."""
        self.toggle(frame.toggles)
        if self.state not in (IDLE, RECORDING):
            return []  # stopped: the frame is not kept
        want = self._want(frame)
        out: list[Action] = []
        if self.state == RECORDING:
            if want:
                self._off_since_ns = None
            elif self._off_since_ns is None:
                self._off_since_ns = frame.t_ns
            if self._off_since_ns is not None and frame.t_ns - self._off_since_ns >= self._post_ns:
                out = self._close("trigger ended (post-roll done)")  # this frame may be the next pre-roll
            elif not frame.analysed:
                return self._dropped(frame.drops)  # nothing to write; the session goes on
            else:
                split = None
                if frame.t_ns - self._t0_ns >= self._max_session_ns:
                    split = "record.max_session_s reached"
                elif session_bytes >= self._split_bytes and self._frames > 0:
                    split = f"session size reached {QUOTA_SHARE:g} of record.max_gb"
                if split is None:
                    return [*self._dropped(frame.drops), self._write(frame)]
                off_since = self._off_since_ns  # the continued session keeps the post-roll deadline
                out = [*self._close(split), *self._open(frame, "continued", first_drops=frame.drops)]
                self._off_since_ns = off_since
                return [*out, self._write(frame)]
        if want and frame.analysed:
            return [*out, *self._open(frame, _OPEN_REASON[self.mode]), self._write(frame)]
        if frame.analysed:
            self.pre_roll.add(frame)
        return out

    def disk_full(self) -> list[Action]:
        """The disk is full: close the session, forget the pre-roll, stop until a manual retry."""
        self.pre_roll.clear()
        self.manual_on = False  # manual mode: the next toggle is a retry, not a "stop"
        out = self._close("disk full") if self.recording else []
        self.state = DISK_FULL
        return out

    def fail(self, reason: str) -> list[Action]:
        """Recording cannot go on (``reason`` becomes the session's stop reason): stop for good."""
        self.pre_roll.clear()
        out = self._close(reason) if self.recording else []
        self.state = ERROR
        return out

    def discard(self, frame: TriggerFrame) -> list[Action]:
        """``frame`` will never be handled (the writer ran out of time at stop): it and the drops before it
        are lost within the open session, if any."""
        return [Dropped(1 + frame.drops)] if self.recording else []

    def finish(self, reason: str, late_drops: int = 0) -> list[Action]:
        """The loop ended; ``late_drops`` frames were lost after the last one offered."""
        if not self.recording:
            return []
        return [*self._dropped(late_drops), *self._close(reason)]

    # -- helpers ----------------------------------------------------------------------------------

    def _want(self, frame: TriggerFrame) -> bool:
        """Whether the trigger is on at this frame (whether or not the frame itself can be written)."""
        if self.mode == "always":
            return True
        if self.mode == "on-detection":
            return frame.nerve  # a frame that was not analysed has no detection
        return self.manual_on

    def _open(self, trigger: TriggerFrame, reason: str, first_drops: int = 0) -> list[Action]:
        # Drops between frames of the session are its own; those before its first frame are not
        # (unless it continues a split session: first_drops).
        pre = self.pre_roll.take(trigger.t_ns)
        dropped = first_drops + sum(f.drops for f in [*pre, trigger][1:])
        self.state = RECORDING
        self._off_since_ns = None
        self._t0_ns = pre[0].t_ns if pre else trigger.t_ns
        self._frames = 0
        return [Open(reason, trigger, len(pre)), *self._dropped(dropped), *(self._write(f, True) for f in pre)]

    def _write(self, frame: TriggerFrame, pre_roll: bool = False) -> Write:
        self._frames += 1
        return Write(frame, pre_roll)

    def _close(self, reason: str) -> list[Action]:
        self.state = IDLE
        self._off_since_ns = None
        return [Close(reason)]

    @staticmethod
    def _dropped(n: int) -> list[Action]:
        return [Dropped(n)] if n else []
