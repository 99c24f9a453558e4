"""The `Sink` interface: where annotated frames go (screen, framebuffer, file, nowhere)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


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
