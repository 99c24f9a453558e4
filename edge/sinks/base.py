"""The `Sink` interface: where annotated frames go (screen, framebuffer, file, nowhere), and `RetryingSink`,
which keeps trying an output that is not there yet (a framebuffer late at boot) instead of failing the run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from edge.errors import SinkError

logger = logging.getLogger(__name__)


@runtime_checkable
class Sink(Protocol):
    """Shows or stores annotated frames. Used from the processing thread only.

    show(image): ``image`` is HxWx3 uint8 BGR at full video-out size. The sink does
        not keep a reference after returning (the caller may reuse the buffer).
    take_commands(): operator commands typed into this sink since the last call (names from
        `edge.control`, e.g. the window's 'q' -> "quit", 'r' -> "record_toggle"); the loop forwards them
        to its `edge.control.CommandChannel` after each frame. Sinks without input return ().
    """

    def show(self, image: np.ndarray) -> None: ...

    def take_commands(self) -> tuple[str, ...]: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


class SinkBase:
    def take_commands(self) -> tuple[str, ...]:
        return ()

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return type(self).__name__

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SinkNotReady(SinkError):
    """The output is configured right but not usable yet: a /dev/fbN that the kernel has not registered,
    a device node udev has not given its group yet. Late at boot these come by themselves, so
    `RetryingSink` retries them in the loop; a restart would not help more than waiting does."""


class RetryingSink(SinkBase):
    """Opens a sink whose output may not be ready yet, and retries it from the loop instead of failing.

    open_sink: makes the real sink. It raises `SinkNotReady` while the output is not there yet, and any
        other `SinkError` for a fault no retry fixes: on the first attempt (here, before the loop runs)
        that error is raised from this constructor (exit code 5); on a later attempt, from `show`.
    name: for the log, e.g. "display fbdev:/dev/fb0". what: `describe` while not open, e.g. "fbdev:/dev/fb0".

    Until it opens, every frame is dropped (``frames_dropped``) and attempts follow the capture source's
    schedule (`edge.sources.base.Reconnector`: at once, then 0.25 s doubling up to ``max_s``), checked in
    `show` without sleeping: the loop, the watchdog and the recorder run on meanwhile. The log gets one
    warning naming the fault when the outage starts and one line when the output is back. Once open, the
    wrapper answers for its sink (``frames_written``, ``picture_rect``...); ``sink`` is the sink itself.
    """

    def __init__(self, open_sink: Callable[[], SinkBase], name: str, what: str, max_s: float = 5.0) -> None:
        from edge.sources.base import Reconnector  # the same schedule as the capture devices

        self._open_sink = open_sink
        self.name = name
        self.what = what
        self._retry = Reconnector(name, max_s=max_s)
        self.sink: SinkBase | None = None
        #: why the output is not usable yet (None once open)
        self.not_ready: str | None = None
        self.frames_dropped = 0
        self._closed = False
        self._attempt()

    def _attempt(self) -> bool:
        try:
            self.sink = self._open_sink()
        except SinkNotReady as e:
            self.not_ready = str(e)
            self._retry.failed(f"not ready: {e}")
            return False
        self.not_ready = None
        self._retry.opened()
        return True

    def __getattr__(self, name: str):
        # Only for attributes this wrapper lacks: once open it stands for its sink (frames_written, picture_rect...)
        sink = self.__dict__.get("sink")
        if sink is None or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__} ({self.__dict__.get('what', '?')}, not open) has no {name!r}")
        return getattr(sink, name)

    @property
    def attempts(self) -> int:
        """Failed attempts to open so far."""
        return self._retry.open_failures

    def show(self, image: np.ndarray) -> None:
        if self._closed:
            raise SinkError(f"{self.name} is closed")
        if self.sink is None and not (self._retry.due(0.0) and self._attempt()):
            self.frames_dropped += 1
            return
        self.sink.show(image)  # type: ignore[union-attr] - opened just above

    def take_commands(self) -> tuple[str, ...]:
        return () if self.sink is None else self.sink.take_commands()

    def describe(self) -> str:
        if self.sink is not None:
            return self.sink.describe()
        return f"{self.what} (not ready, retrying: {self.not_ready})"

    def close(self) -> None:
        self._closed = True
        if self.sink is not None:
            self.sink.close()
            self.sink = None
        elif self.frames_dropped:
            logger.warning("%s: never became ready; %d frames were not shown", self.name, self.frames_dropped)
