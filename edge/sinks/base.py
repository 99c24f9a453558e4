"""The `Sink` interface: where annotated frames go (screen, framebuffer, file, nowhere)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Sink(Protocol):
    """Shows or stores annotated frames. Used from the processing thread only.

    show(image): ``image`` is HxWx3 uint8 BGR at full video-out size. The sink does
        not keep a reference after returning (the caller may reuse the buffer).
    stop_requested: True once the operator asked to quit through this sink
        (window: 'q' or Esc); the loop checks it after each frame.
    """

    stop_requested: bool

    def show(self, image: np.ndarray) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


class SinkBase:
    stop_requested: bool = False

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return type(self).__name__

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
