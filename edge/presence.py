"""Temporal smoothing: presence hysteresis and mask stabilisation.

A raw per-frame P(nerve) near the threshold would make the outline flicker on
and off, which at the bedside is worse than a short delay. The decision
switches to "nerve" only after ``min_frames_on`` consecutive frames with
P >= ``enter``, and back to "no nerve" only after ``min_frames_off``
consecutive frames with P < ``exit`` (``exit <= enter``). Frames with P
between the two thresholds keep the current state and reset both counters.

P here is a running average of the per-frame P(nerve) (weight ``p_alpha``
on the newest frame; 1 = the frame's own P). Speckle and probe motion make
a frame's P wander by a few hundredths; where it wanders around a threshold,
counting frames alone lets the outline blink on and off every second or so,
while the average over the last few frames stays on one side. The average
is reset with the rest of the state after a gap in the video.

The first frame after a (re)start has no state to keep: by default the
screen starts at "no nerve" and needs ``min_frames_on`` frames to show an
outline, so a probe placed on the plexus gives "No nerve found" and then
the outline, one change more than the view. With ``first_frame_decides``
that first frame's own vote sets the state (P >= ``enter``: outline at
once), and the hysteresis takes over from the next frame.

While "nerve", the mask shown is an exponential moving average of the
per-frame probability maps (weight ``alpha`` on the newest), which steadies
the outline against speckle without lagging much at 20-30 fps.
"""

from __future__ import annotations

import numpy as np

from edge.types import Decision, Result


class PresenceTracker:
    """Stateful; one per video stream. Not thread-safe (used by the processing thread)."""

    def __init__(self, enter: float, exit: float, min_frames_on: int = 3, min_frames_off: int = 5, alpha: float = 0.5,
                 p_alpha: float = 1.0, first_frame_decides: bool = False):
        if not 0.0 < exit <= enter < 1.0:
            raise ValueError(f"need 0 < exit <= enter < 1, got enter={enter} exit={exit}")
        if min_frames_on < 1 or min_frames_off < 1:
            raise ValueError("min_frames_on and min_frames_off must be >= 1")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if not 0.0 < p_alpha <= 1.0:
            raise ValueError(f"p_alpha must be in (0, 1], got {p_alpha}")
        self.enter = enter
        self.exit = exit
        self.min_on = min_frames_on
        self.min_off = min_frames_off
        self.alpha = alpha
        self.p_alpha = p_alpha
        self.first_frame_decides = bool(first_frame_decides)
        self.reset()

    def reset(self) -> None:
        """Forget the past: after a gap in the video (no signal) the old state means nothing."""
        self.nerve = False
        self._on_run = 0
        self._off_run = 0
        self._avg: np.ndarray | None = None
        self._p_avg: float | None = None

    def update(self, result: Result) -> Decision:
        p_frame = result.p_nerve
        first = self._p_avg is None
        if first or self.p_alpha >= 1.0:
            self._p_avg = p_frame
        else:
            self._p_avg += self.p_alpha * (p_frame - self._p_avg)
        p = self._p_avg
        if p >= self.enter:
            self._on_run += 1
            self._off_run = 0
        elif p < self.exit:
            self._off_run += 1
            self._on_run = 0
        else:
            self._on_run = self._off_run = 0

        if first and self.first_frame_decides:
            self.nerve = p >= self.enter
        elif not self.nerve and self._on_run >= self.min_on:
            self.nerve = True
        elif self.nerve and self._off_run >= self.min_off:
            self.nerve = False

        # The average runs in both states, so the first outline after switching on
        # already reflects the last few frames rather than one noisy one.
        if self._avg is None or self._avg.shape != result.mask.shape:
            self._avg = result.mask.astype(np.float32, copy=True)
        else:
            self._avg *= 1.0 - self.alpha
            self._avg += self.alpha * result.mask
        return Decision(nerve=self.nerve, p_nerve=p_frame, mask=self._avg.copy() if self.nerve else None, p_vote=p)
