"""The `FrameSource` interface every source implements.

A source is used from one thread only (the capture thread). ``read`` never
blocks longer than ``timeout`` seconds, so the stop event is honoured promptly.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

from edge.types import Frame


@runtime_checkable
class FrameSource(Protocol):
    """Something that yields `Frame`s.

    read(timeout): the next frame, or None when none arrived within ``timeout``
        seconds (a live device that is reconnecting also returns None).
        Raises `edge.errors.SourceExhausted` once a finite source has ended.
    nominal_fps: the rate the source delivers at, if known (None otherwise).
    describe(): one line for logs and recordings, e.g. "file:clip.mp4 234x234 @19fps".
    """

    nominal_fps: float | None

    def read(self, timeout: float = 0.5) -> Frame | None: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...

    def __enter__(self) -> FrameSource: ...

    def __exit__(self, *exc: object) -> None: ...


class SourceBase:
    """Shared plumbing: context manager, frame numbering, pacing helper."""

    nominal_fps: float | None = None

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

    def close(self) -> None:  # pragma: no cover - overridden where there is something to release
        pass

    def describe(self) -> str:
        return type(self).__name__

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
