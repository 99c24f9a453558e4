"""The `FrameSource` interface every source implements, and helpers they share.

A source is used from one thread only (the capture thread). ``read`` never
blocks longer than ``timeout`` seconds, so the stop event is honoured promptly.

`Reconnector` holds the retry policy of the live sources (v4l2, picamera2):
exponential backoff that never gives up, waited for in slices inside ``read``,
logged once per outage rather than once per attempt.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol, runtime_checkable

from edge.types import Frame, Roi, SourceStatus

logger = logging.getLogger(__name__)


@runtime_checkable
class FrameSource(Protocol):
    """Something that yields `Frame`s.

    read(timeout): the next frame, or None when none arrived within ``timeout``
        seconds (a live device that is reconnecting also returns None).
        Raises `edge.errors.SourceExhausted` once a finite source has ended.
    nominal_fps: the rate the source delivers at, if known (None otherwise).
    image_roi: where the ultrasound image lies in each frame when the source knows it (the phantom's
        synthetic machine screen), else None. Used when neither the config nor a site profile sets an ROI.
    describe(): one line for logs and recordings, e.g. "file:clip.mp4 234x234 @19fps".
    status(): the device's state and counters for the health file and the watchdog (`SourceStatus`),
        or None for sources with nothing to say (files, folders, the phantom).
    """

    nominal_fps: float | None
    image_roi: Roi | None

    def read(self, timeout: float = 0.5) -> Frame | None: ...

    def status(self) -> SourceStatus | None: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...

    def __enter__(self) -> FrameSource: ...

    def __exit__(self, *exc: object) -> None: ...


class SourceBase:
    """Shared plumbing: context manager, frame numbering, pacing helper."""

    nominal_fps: float | None = None
    image_roi: Roi | None = None

    def __init__(self) -> None:
        self._seq = 0
        self._next_due_ns: int | None = None

    def _make_frame(self, image) -> Frame:
        f = Frame(image=image, seq=self._seq, t_capture_ns=time.monotonic_ns())
        self._seq += 1
        return f

    def _wait_due(self, fps: float | None, timeout: float) -> bool:
        """Pace delivery at ``fps`` without drift. False if the next frame is not due within ``timeout``."""
        if not fps:
            return True
        now = time.monotonic_ns()
        if self._next_due_ns is None:
            self._next_due_ns = now
        wait_ns = self._next_due_ns - now
        if wait_ns > timeout * 1e9:
            time.sleep(timeout)
            return False
        if wait_ns > 0:
            time.sleep(wait_ns / 1e9)
        period = int(1e9 / fps)
        # If we fell far behind (consumer paused us), restart the clock instead of bursting.
        self._next_due_ns = max(self._next_due_ns + period, time.monotonic_ns() - period)
        return True

    def status(self) -> SourceStatus | None:
        """Nothing to say: files, folders and the phantom have no device."""
        return None

    def close(self) -> None:  # pragma: no cover - overridden where there is something to release
        pass

    def describe(self) -> str:
        return type(self).__name__

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Reconnector:
    """Retry schedule and outage bookkeeping for a live source that must never give up.

    Non-blocking by design: the source asks `due` inside ``read(timeout)``, which
    sleeps at most ``timeout`` towards the next attempt, so a capture thread
    waiting out a 5 s backoff still sees its stop event within one ``read``.

    Delays: the first retry after a loss is immediate (a glitch recovers fastest);
    after each failed attempt the next waits ``first_s`` (0.25 s), then doubles up to
    ``max_s``. A successful open resets the schedule.

    Logging: one WARNING when an outage starts, DEBUG for the attempts within it,
    one INFO when it ends (with its length and attempt count).

    Counters (read-only for callers): ``reconnects`` (outages that ended in a
    successful open, including a device that was absent at start and appeared
    later), ``open_failures`` (failed attempts in total).
    """

    def __init__(self, name: str, max_s: float, first_s: float = 0.25) -> None:
        self.name = name
        self.max_s = float(max_s)
        self.first_s = min(float(first_s), self.max_s)
        self.next_delay_s = self.first_s
        self.delay_s = 0.0  # the delay before the currently scheduled attempt (0 = none pending)
        self.next_at = 0.0  # monotonic seconds of the next attempt; 0 = now
        self.outage_since: float | None = None
        self.attempts_in_outage = 0
        self.reconnects = 0
        self.open_failures = 0

    @property
    def in_outage(self) -> bool:
        return self.outage_since is not None

    def _start_outage(self, why: str) -> None:
        if self.outage_since is None:
            self.outage_since = time.monotonic()
            self.attempts_in_outage = 0
            logger.warning(
                "%s: %s; retrying every %.2g..%.3g s until it is back", self.name, why, self.first_s, self.max_s
            )

    def lost(self, why: str) -> None:
        """The open device stopped delivering. The next attempt is due at once."""
        self._start_outage(why)
        self.next_at = 0.0
        self.delay_s = 0.0

    def due(self, timeout: float) -> bool:
        """Sleep towards the next attempt for at most ``timeout`` s; True when it is due now."""
        remaining = self.next_at - time.monotonic()
        if remaining <= 0:
            return True
        time.sleep(min(remaining, max(0.0, timeout)))
        return time.monotonic() >= self.next_at

    def failed(self, why: str) -> float:
        """An attempt to open failed: schedule the next one. Returns the delay (s) until then."""
        self.open_failures += 1
        self._start_outage(why)
        self.attempts_in_outage += 1
        if self.attempts_in_outage > 1:
            logger.debug("%s: attempt %d failed: %s", self.name, self.attempts_in_outage, why)
        self.delay_s = self.next_delay_s
        self.next_at = time.monotonic() + self.delay_s
        self.next_delay_s = min(self.next_delay_s * 2.0, self.max_s)
        return self.delay_s

    def opened(self) -> bool:
        """An attempt succeeded. Returns True when it ended an outage (a reconnect)."""
        ended = self.outage_since is not None
        if ended:
            self.reconnects += 1
            logger.info(
                "%s: connected after %.1f s outage (%d failed attempts)",
                self.name,
                time.monotonic() - self.outage_since,
                self.attempts_in_outage,
            )
        self.outage_since = None
        self.attempts_in_outage = 0
        self.next_delay_s = self.first_s
        self.delay_s = 0.0
        self.next_at = 0.0
        return ended


class ReconnectingSource(SourceBase):
    """A live device source that reconnects forever: the counters both live sources expose.

    Subclasses set ``self._retry`` (a `Reconnector`) and define `connected`.
    """

    _retry: Reconnector

    @property
    def connected(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def reconnects(self) -> int:
        """Outages recovered from (a device absent at start that appears later counts too)."""
        return self._retry.reconnects

    @property
    def open_failures(self) -> int:
        """Failed attempts to open the device."""
        return self._retry.open_failures

    #: reads that returned no frame; subclasses count them
    failed_reads: int = 0

    def status(self) -> SourceStatus:
        return SourceStatus(connected=self.connected, reconnects=self.reconnects,
                            open_failures=self.open_failures, failed_reads=self.failed_reads)
